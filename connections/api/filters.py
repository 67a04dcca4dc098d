"""Query helpers and filter sets shared by the connections API, admin and commands."""

import django_filters
from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from audiences.api.filters import IdOrNameFilter, UtcDateTimeFilter
from audiences.models import Audience
from connections.models import Connection, Delivery, OutboxMessage
from identities import IdentityType, InvalidIdentity, normalize
from outputs.models import Output
from outputs.partners import registry

WAITING = [OutboxMessage.State.PENDING, OutboxMessage.State.IN_FLIGHT]


def with_pending(queryset):
    """Annotate `pending` (messages waiting or in flight) with one correlated subquery, not a query per row."""
    waiting = (
        OutboxMessage.objects.filter(connection=OuterRef("pk"), state__in=WAITING)
        .order_by()
        .values("connection")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return queryset.annotate(pending=Coalesce(Subquery(waiting, output_field=IntegerField()), Value(0)))


def pending_of(conn: Connection) -> int:
    if hasattr(conn, "pending"):
        return conn.pending
    return OutboxMessage.objects.filter(connection=conn, state__in=WAITING).count()


def candidate_values(raw: str) -> set[str]:
    """`raw` as typed and as each identity type would store it, so 'Jane@Example.com ' finds 'jane@example.com'."""
    candidates = {raw.strip()}
    for identity_type in IdentityType.values:
        try:
            candidates.add(normalize(identity_type, raw))
        except InvalidIdentity:
            pass
    return candidates - {""}


def duplicate_of(audience, output, settings: dict):
    """An existing connection of `audience` to `output` with the same settings, if any."""
    for conn in Connection.objects.filter(audience=audience, output=output).only("pk", "settings"):
        if conn.settings == settings:
            return conn
    return None


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
    state = django_filters.ChoiceFilter(choices=OutboxMessage.State.choices)
    identity = django_filters.CharFilter(
        method="filter_identity", help_text="An identity value as typed (normalized like stored values)."
    )
    identity_type = django_filters.ChoiceFilter(choices=IdentityType.choices)
    action = django_filters.ChoiceFilter(choices=[("add", "Add"), ("remove", "Remove")])

    class Meta:
        model = OutboxMessage
        fields = ["state", "identity", "identity_type", "action"]

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
