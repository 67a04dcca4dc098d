"""Queries about connections shared by the admin, the API, the commands and the services: set-based, one
query for a whole list."""

from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from connections.models import Connection, OutboxMessage
from identities import IdentityType, InvalidIdentity, normalize

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
