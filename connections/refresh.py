"""Members a partner would expire are added again before they expire.

Xandr drops a user from a segment 180 days after the upload that added them, and we queue an add only when
membership changes: a member who stays in an audience would silently fall out of the segment. So, for every
interval connection whose partner expires members, an hourly run queues an "add" for members whose last add
is older than the connection's refresh age, through the fan-out's outbox insert; they go out in the normal
upload files. Each run queues at most a share of the audience, oldest first, so an audience added in one day
is refreshed over a week of uploads rather than in one spike.

A member's last add is the newest delivered add in the outbox; the prune keeps it for these connections
(outbox.prune). A member with no delivered add on record (older history was pruned) counts as due.
"""

import datetime as dt
import math

from django.db import connection as db
from django.utils import timezone

from connections.fanout import QUEUEING, T_IDENTITY, T_MEMBER, T_OUTBOX, _insert, accepted_types
from connections.models import Connection, OutboxMessage
from connections.outbox import in_list
from connections.variants import member_condition

State = OutboxMessage.State

# Runs happen hourly (connections.schedules): an audience all due at once is refreshed within a week.
SPREAD_RUNS = 7 * 24
# Below this many a run, spreading buys nothing: a small audience is refreshed in one upload.
MIN_PER_RUN = 1000
# An add that went out and was answered or given up on: tried again only once the refresh age has passed.
TRIED = (State.DELIVERED, State.REJECTED, State.FAILED)
# The newest delivered add of the identity `i` to the connection (the first parameter).
LAST_ADD = (
    f"SELECT MAX(o.finished_at) FROM {T_OUTBOX} o WHERE o.connection_id = %s AND o.value = i.value "
    f"AND o.identity_type = i.type AND o.action = 'add' AND o.state = '{State.DELIVERED}'"
)


def refreshing_connections():
    """Interval connections whose partner expires members, with their refresh age in days."""
    conns = Connection.objects.filter(status__in=QUEUEING, delivery_mode=Connection.Mode.INTERVAL)
    for conn in conns.select_related("output", "audience", "variant__audience"):
        days = conn.partner.refresh_days(conn.settings)
        if days:
            yield conn, days


def refresh_all(now=None, spread_runs: int = SPREAD_RUNS, min_per_run: int = MIN_PER_RUN) -> dict[int, int]:
    """The "Refresh expiring members" schedule: {connection id: adds queued}."""
    now = now or timezone.now()
    return {conn.pk: refresh(conn, days, now, spread_runs, min_per_run) for conn, days in refreshing_connections()}


def refresh(conn: Connection, days: int, now, spread_runs: int = SPREAD_RUNS, min_per_run: int = MIN_PER_RUN) -> int:
    types = accepted_types(conn)
    if not types:
        return 0
    limit = max(min_per_run, math.ceil(_members(conn) / spread_runs))
    cutoff = db.ops.adapt_datetimefield_value(now - dt.timedelta(days=days))
    placeholders = ", ".join(["%s"] * len(types))
    # Oldest last add first; members with no add on record before all of them.
    source = (
        f"SELECT m.profile_id AS profile_id, i.type AS type, i.value AS value, 'add' AS action "
        f"FROM {T_MEMBER} m JOIN {T_IDENTITY} i ON i.profile_id = m.profile_id "
        f"WHERE m.audience_id = %s AND i.type IN ({placeholders}){member_condition(conn, 'm.profile_id')} "
        f"AND NOT EXISTS (SELECT 1 FROM {T_OUTBOX} o WHERE o.connection_id = %s AND o.value = i.value "
        f"AND o.identity_type = i.type AND (o.state IN {in_list(OutboxMessage.WAITING)} OR (o.action = 'add' "
        f"AND o.state IN {in_list(TRIED)} AND o.finished_at >= %s))) "
        f"ORDER BY ({LAST_ADD}) IS NOT NULL, ({LAST_ADD}), m.profile_id LIMIT %s"
    )
    # Interval connections upload on their own schedule (tasks.sweep): nothing to wake.
    return _insert(conn, source, [conn.audience_id, *types, conn.pk, cutoff, conn.pk, conn.pk, limit])


def _members(conn: Connection) -> int:
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {T_MEMBER} m WHERE m.audience_id = %s{member_condition(conn, 'm.profile_id')}",
            [conn.audience_id],
        )
        return cursor.fetchone()[0]


def expired_count(conn: Connection, days: int, now) -> int:
    """Current members whose newest delivered add is older than `days`: the partner no longer holds them."""
    types = accepted_types(conn)
    if not types:
        return 0
    cutoff = db.ops.adapt_datetimefield_value(now - dt.timedelta(days=days))
    placeholders = ", ".join(["%s"] * len(types))
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT COUNT(*) FROM {T_MEMBER} m JOIN {T_IDENTITY} i ON i.profile_id = m.profile_id "
            f"WHERE m.audience_id = %s AND i.type IN ({placeholders}){member_condition(conn, 'm.profile_id')} "
            f"AND ({LAST_ADD}) < %s",
            [conn.audience_id, *types, conn.pk, cutoff],
        )
        return cursor.fetchone()[0]
