"""Queries about connections shared by the admin, the API, the commands and the services: set-based, one
query for a whole list."""

from django.db.models import Case, CharField, Count, F, IntegerField, OuterRef, Subquery, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from connections import policy
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


def states_of(conn: Connection, now=None) -> dict[str, int]:
    """Messages per state, those a worker holds (pending, covered by a live lease) counted as in flight."""
    states = dict(conn.messages.order_by().values_list("state").annotate(n=Count("pk")))
    if states.get(OutboxMessage.State.PENDING):
        flying = conn.messages.filter(policy.in_flight(now or timezone.now())).count()
        if flying:
            states[OutboxMessage.State.PENDING] -= flying
            states[OutboxMessage.State.IN_FLIGHT] = states.get(OutboxMessage.State.IN_FLIGHT, 0) + flying
    return {state: n for state, n in states.items() if n}


def with_state_shown(queryset, now=None):
    """Annotate `state_shown`: the message's state, "in_flight" for a pending one a live lease covers."""
    flying = policy.in_flight(now or timezone.now())
    shown = Case(When(flying, then=Value(OutboxMessage.State.IN_FLIGHT)), default=F("state"), output_field=CharField())
    return queryset.annotate(state_shown=shown)


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
