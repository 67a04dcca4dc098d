"""The filter sets of the connections API (the query helpers they use are in `connections.queries`)."""

import django_filters

from audiences.api.filters import IdOrNameFilter, UtcDateTimeFilter
from audiences.models import Audience
from connections.models import Connection, Delivery, OutboxMessage
from connections.queries import candidate_values
from identities import IdentityType
from outputs.models import Output
from outputs.partners import registry


class ConnectionFilter(django_filters.FilterSet):
    audience = IdOrNameFilter(field_name="audience", of=Audience)
    output = IdOrNameFilter(field_name="output", of=Output)
    status = django_filters.ChoiceFilter(choices=Connection.Status.choices)
    partner = django_filters.ChoiceFilter(
        field_name="output__kind", choices=registry.choices, help_text="Partner slug."
    )
    verification = django_filters.ChoiceFilter(
        field_name="verification_status", choices=Connection.Verification.choices, help_text="The last verification."
    )

    class Meta:
        model = Connection
        fields = ["audience", "output", "status", "partner", "verification"]


class MessageFilter(django_filters.FilterSet):
    state = django_filters.ChoiceFilter(
        choices=OutboxMessage.State.choices,
        method="filter_state",
        help_text="in_flight: pending and held by a worker (queries.with_state_shown).",
    )
    identity = django_filters.CharFilter(
        method="filter_identity", help_text="An identity value as typed (normalized like stored values)."
    )
    identity_type = django_filters.ChoiceFilter(choices=IdentityType.choices)
    action = django_filters.ChoiceFilter(choices=[("add", "Add"), ("remove", "Remove")])

    class Meta:
        model = OutboxMessage
        fields = ["state", "identity", "identity_type", "action"]

    def filter_state(self, queryset, name, value):
        return queryset.filter(state_shown=value)

    def filter_identity(self, queryset, name, value):
        return queryset.filter(value__in=candidate_values(value))


class DeliveryFilter(django_filters.FilterSet):
    since = UtcDateTimeFilter(field_name="started_at", lookup_expr="gte")
    has_error = django_filters.BooleanFilter(method="filter_has_error", help_text="Only batches with an error.")

    class Meta:
        model = Delivery
        fields = ["since", "has_error"]

    def filter_has_error(self, queryset, name, value):
        return queryset.exclude(error="") if value else queryset.filter(error="")
