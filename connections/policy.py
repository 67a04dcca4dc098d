"""When a message is due, how long a retry waits, and when a connection wants a drain.

"Due" is defined here once, as data, and read two ways: as a Q by the sweep and the `forward` command, and as
SQL by the claim (connections.outbox), whose statements are written by hand for their query plans.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from django.conf import settings
from django.db import connection as db
from django.db.models import Exists, Min, OuterRef, Q
from django.db.models.expressions import RawSQL
from django.utils import timezone

from connections.models import Connection, OutboxLease, OutboxMessage

State = OutboxMessage.State

# Connections whose messages go out; paused and faulted ones keep theirs queued until resumed.
SENDING = (Connection.Status.ACTIVE, Connection.Status.DISCONNECTING)
# A backoff is drawn between these fractions of its exponential step, so retries of one failure spread out.
JITTER = (0.5, 1.0)
# After a drain, a worker waits this long at most for a retry rather than leave it to a schedule.
RETRY_WAIT_SECONDS = 5


@dataclass(frozen=True)
class Due:
    """Messages in `state` whose time in `column` has come: `now` is at or past it (`inclusive`), or past it."""

    state: str
    column: str
    inclusive: bool

    def q(self, now) -> Q:
        return Q(state=self.state, **{f"{self.column}__{'lte' if self.inclusive else 'lt'}": now})

    def sql(self, alias: str) -> str:
        """The same condition on the outbox row `alias`, taking one parameter: now."""
        return f"{alias}.state = '{self.state}' AND {alias}.{self.column} {'<=' if self.inclusive else '<'} %s"


# Waiting, and its next attempt has come (a claim also skips those a live lease covers: `leased_sql`).
PENDING_DUE = Due(State.PENDING, "next_attempt_at", inclusive=True)


def leased_sql(vendor: str, where: str = "") -> str:
    """The ids of the messages live leases cover (in flight), as a subquery; parameters: those of `where`
    (a condition on the lease `l`, ending in AND), then now. A lease that ran out covers nothing."""
    ids, each = ("unnest(l.message_ids)", "") if vendor == "postgresql" else ("j.value", ", json_each(l.message_ids) j")
    return f"SELECT {ids} FROM {OutboxLease._meta.db_table} l{each} WHERE {where}l.expires_at >= %s"


def leased(now) -> RawSQL:
    """The ids of the messages in flight at `now`, for an ORM filter (`pk__in=`)."""
    return RawSQL(leased_sql(db.vendor), [db.ops.adapt_datetimefield_value(now)])


def in_flight(now) -> Q:
    """Messages a worker holds at `now`: pending, and covered by a live lease (connections.outbox.claim)."""
    return Q(state=State.PENDING, pk__in=leased(now))


def due(now) -> Q:
    """Messages a claim at `now` may take: pending, past their next attempt, and in no live lease (a lease
    whose worker died has run out, and its messages are due again)."""
    return PENDING_DUE.q(now) & ~Q(pk__in=leased(now))


def jitter() -> float:
    """One draw per batch: the messages a batch retries wait alike and go out again together, in one claim."""
    return random.uniform(*JITTER)


def backoff_seconds(attempts: int, retry_after: float | None = None, spread: float | None = None) -> float:
    """The wait before a retry: the partner's Retry-After when it gave one, else exponential backoff with jitter.

    Retry-After is the partner saying when it will take the request again (a 429's window resets, a 503's
    maintenance ends): waiting the exponential delay on top would only leave it idle.
    """
    if retry_after is not None:
        return max(0.0, retry_after)
    base = min(settings.RETRY_MAX_SECONDS, settings.RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    return base * (jitter() if spread is None else spread)


def unanswered(attempts) -> bool:
    """A request went out and no answer came back (a timeout, a connection cut): the partner may still apply it."""
    return any(a.status is None and not a.refused for a in attempts)


def settles_at(now):
    """Until when a request that got no answer may still land at the partner (OUTCOME_SETTLE_SECONDS).

    Nothing newer for the identity goes out before then: a remove sent while the partner still holds an
    add would be undone when the add lands. After it, the newest state is sent again, whatever happened.
    """
    return now + dt.timedelta(seconds=settings.OUTCOME_SETTLE_SECONDS)


def retry_window_start(now):
    """A message created before this is closed as failed at its next transient failure."""
    return now - dt.timedelta(hours=settings.RETRY_WINDOW_HOURS)


def gave_up(reason: str) -> str:
    return f"Gave up after {settings.RETRY_WINDOW_HOURS:g} hours: {reason}"


@dataclass(frozen=True)
class Waiting:
    """When the first message not in flight is due: among those backing off, and among those never tried."""

    retry_at: dt.datetime | None = None
    untried_at: dt.datetime | None = None

    @property
    def first(self) -> dt.datetime | None:
        return min((at for at in (self.retry_at, self.untried_at) if at is not None), default=None)


def earliest_retry(conn) -> Waiting:
    """When the first waiting message is due, for an active realtime connection (nothing otherwise); one query."""
    if conn.delivery_mode != Connection.Mode.REALTIME or conn.status != Connection.Status.ACTIVE:
        return Waiting()
    waiting = OutboxMessage.objects.filter(connection=conn, state=State.PENDING).exclude(in_flight(timezone.now()))
    return Waiting(
        **waiting.aggregate(
            retry_at=Min("next_attempt_at", filter=Q(attempts__gt=0)),
            untried_at=Min("next_attempt_at", filter=Q(attempts=0)),
        )
    )


def retry_wait(sent: bool, waiting: Waiting, now=None) -> float | None:
    """Seconds a worker waits, after a drain, for the next message due; None leaves it to a schedule.

    django-q2's scheduler looks at one-off schedules only every 30 seconds, which would turn a backoff of
    0.2-5 s into a stall of up to 30 s, so a message due within RETRY_WAIT_SECONDS is waited for by the worker.
    Before a retry it pauses at least RETRY_BASE_SECONDS (the partner was struggling: no hammering). A message
    never tried is no retry: one that committed after the drain's last claim is due now (0: drain again at
    once; pausing for it held every change behind a busy worker for RETRY_BASE_SECONDS), one whose identity
    is settling waits until then. A drain that sent nothing (messages not due, or waiting behind an older one
    in flight) leaves it to the schedule.
    """
    if not sent:
        return None
    now = now or timezone.now()
    waits = []
    if waiting.retry_at is not None:
        pause = min(settings.RETRY_BASE_SECONDS, RETRY_WAIT_SECONDS)
        waits.append(max((waiting.retry_at - now).total_seconds(), pause))
    if waiting.untried_at is not None:
        waits.append(max((waiting.untried_at - now).total_seconds(), 0.0))
    wait = min(waits, default=None)
    return wait if wait is not None and wait <= RETRY_WAIT_SECONDS else None


def upload_due(conn, now=None) -> bool:
    """Interval connections upload every N minutes, or as soon as N messages are waiting."""
    now = now or timezone.now()
    waiting = OutboxMessage.objects.filter(due(now), connection=conn)
    if conn.interval_messages and waiting.count() >= conn.interval_messages:
        return True
    last = conn.last_upload_at or conn.created_at
    return bool(conn.interval_minutes) and now - last >= dt.timedelta(minutes=conn.interval_minutes)


def ready_to_drain(now=None) -> list[int]:
    """Sending connections with due messages: realtime and disconnecting ones, and interval ones due an upload."""
    now = now or timezone.now()
    # An index lookup (connection, state, time) past the messages in flight.
    has_due = Exists(OutboxMessage.objects.filter(due(now), connection=OuterRef("pk")))
    candidates = Connection.objects.filter(has_due, status__in=SENDING)
    return [
        conn.pk
        for conn in candidates
        if conn.delivery_mode == Connection.Mode.REALTIME
        or conn.status == Connection.Status.DISCONNECTING
        or upload_due(conn, now)
    ]
