import datetime

import django_filters
from django import forms
from django.db.models import Q
from django_filters.constants import EMPTY_VALUES
from django_filters.fields import IsoDateTimeField

from audiences.models import Audience, Event, Profile
from audiences.queries import profiles_with_identity
from identities import IdentityType


class UtcIsoDateTimeField(IsoDateTimeField):
    # PostgreSQL refuses a UTC offset beyond ±15:59 (ISO 8601 allows ±23:59): compare in UTC.
    def to_python(self, value):
        value = super().to_python(value)
        if value is None:
            return None
        try:
            return value.astimezone(datetime.UTC)
        except OverflowError:
            raise forms.ValidationError("Enter a date and time between the years 1 and 9999 in UTC.") from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """An ISO 8601 date and time, with any offset, compared in UTC."""

    field_class = UtcIsoDateTimeField


class IdOrNameFilter(django_filters.CharFilter):
    """An audience or output given by its ID or by its name, the same on every endpoint that filters by one
    (`?audience=7` or `?audience=Potential Parisians`). A number is taken as an ID, and as a name too should
    one be named so; nothing matching is an empty list, as with any filter.

    `field_name` is the path from the listed rows to the object (`memberships__audience`, `audience`).
    """

    def __init__(self, *args, of, **kwargs):
        self.of = of  # not `model`: django-filter sets that to the listed rows' model
        kind = of._meta.verbose_name
        kwargs.setdefault("help_text", f"The {kind}'s ID or its name.")
        super().__init__(*args, **kwargs)

    def filter(self, qs, value):
        if value in EMPTY_VALUES:
            return qs
        match = Q(name=value)
        if value.isascii() and value.isdigit() and int(value) <= 2**63 - 1:  # beyond: no ID, only a name
            match |= Q(pk=int(value))
        qs = qs.filter(**{f"{self.field_name}__in": self.of.objects.filter(match)})
        return qs.distinct() if self.distinct else qs


class ProfileFilter(django_filters.FilterSet):
    external_id = django_filters.CharFilter()
    identity = django_filters.CharFilter(method="filter_identity", help_text="Any identity value, as typed.")
    identity_type = django_filters.ChoiceFilter(
        choices=IdentityType.choices,
        field_name="identities__type",
        distinct=True,
        help_text="Profiles that have an identity of this type.",
    )
    audience = IdOrNameFilter(
        field_name="memberships__audience",
        of=Audience,
        distinct=True,  # an ID and a name may name two audiences
        help_text="Members of this audience: its ID or its name.",
    )
    updated_since = UtcDateTimeFilter(field_name="updated_at", lookup_expr="gte")

    class Meta:
        model = Profile
        fields = ["external_id", "identity", "identity_type", "audience", "updated_since"]

    def filter_identity(self, queryset, name, value):
        return queryset.filter(pk__in=profiles_with_identity(value))


class EventFilter(django_filters.FilterSet):
    external_id = django_filters.CharFilter(field_name="profile__external_id")
    name = django_filters.CharFilter()
    since = UtcDateTimeFilter(field_name="occurred_at", lookup_expr="gte")

    class Meta:
        model = Event
        fields = ["external_id", "name", "since"]
