"""Membership and identity changes become outbox messages, in the transaction that made them.

Every statement here is INSERT … SELECT over a set (a run's change rows, an
audience's members): one statement per connection, never one per member.
`ON CONFLICT … WHERE state = 'pending'` is the coalescing: a newer change for
an identity replaces its waiting message instead of queueing behind it, also
while a claim holds it (in flight): its revision moves, so the claim's record
leaves it pending with the newer change.
"""

from django.db import connection as db
from django.db import transaction
from django.utils import timezone

from audiences.models import Identity, Membership, MembershipChange
from connections.models import Connection, OutboxMessage
from connections.variants import member_condition

State = OutboxMessage.State
T_OUTBOX = OutboxMessage._meta.db_table
T_CHANGE = MembershipChange._meta.db_table
T_IDENTITY = Identity._meta.db_table
T_MEMBER = Membership._meta.db_table

# Connections that still take messages; paused and faulted ones keep queueing
# so that nothing is lost while someone fixes them.
ANALYZE_AFTER = 10_000
CHUNK = 3000  # rows of literal values per statement, under SQLite's bound-parameter limit

QUEUEING = [Connection.Status.ACTIVE, Connection.Status.PAUSED, Connection.Status.FAULTED]


def accepted_types(conn: Connection) -> list[str]:
    return sorted(conn.partner.accepted_types(conn.settings))


def _placeholders(values) -> str:
    return ", ".join(["%s"] * len(values))


def _insert(conn: Connection, source_sql: str, params: list, *, forget: bool = False) -> int:
    """Queue one message per row of `source_sql` (profile_id, type, value, action) for `conn`."""
    now = db.ops.adapt_datetimefield_value(timezone.now())
    with db.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {T_OUTBOX} (connection_id, profile_id, identity_type, value, action, state, attempts, "
            f"next_attempt_at, created_at, updated_at, last_error, forget_after_delivery) "
            f"SELECT %s, src.profile_id, src.type, src.value, src.action, '{State.PENDING}', 0, %s, %s, %s, '', %s "
            f"FROM ({source_sql}) src WHERE 1 = 1 "
            f"ON CONFLICT (connection_id, identity_type, value) WHERE state = '{State.PENDING}' DO UPDATE SET "
            f"action = excluded.action, profile_id = excluded.profile_id, attempts = 0, "
            # A claim may hold the message: its record sees the revision moved and leaves it pending (outbox).
            f"revision = {T_OUTBOX}.revision + 1, "
            # A replaced message whose identity is settling (a request got no answer) keeps waiting.
            f"next_attempt_at = CASE WHEN {T_OUTBOX}.settles_at > excluded.next_attempt_at "
            f"THEN {T_OUTBOX}.settles_at ELSE excluded.next_attempt_at END, created_at = excluded.created_at, "
            f"updated_at = excluded.updated_at, last_error = '', "
            f"forget_after_delivery = excluded.forget_after_delivery",
            [conn.pk, now, now, now, forget, *params],
        )
        return cursor.rowcount


def fan_out_run(run) -> None:
    """Listener for audiences.hooks: queue the changes of one refresh run for every connection."""
    audience_ids = set(MembershipChange.objects.filter(run=run).values_list("audience_id", flat=True).distinct())
    conns = Connection.objects.filter(audience_id__in=audience_ids, status__in=QUEUEING).select_related(
        "output", "audience", "variant__audience"
    )
    # An erasure's removals are forgotten once delivered (see forget_erased for the rest of its history).
    forget = run.trigger == "erasure"
    touched = []
    for conn in conns:
        types = accepted_types(conn)
        if not types:
            continue
        source = (
            f"SELECT ch.profile_id AS profile_id, i.type AS type, i.value AS value, ch.action AS action "
            f"FROM {T_CHANGE} ch JOIN {T_IDENTITY} i ON i.profile_id = ch.profile_id "
            f"WHERE ch.run_id = %s AND ch.audience_id = %s AND i.type IN ({_placeholders(types)})"
            f"{member_condition(conn, 'ch.profile_id')}"
        )
        _insert(conn, source, [run.pk, conn.audience_id, *types], forget=forget)
        _count_unaccepted(conn, run, types)
        touched.append(conn.pk)
    _drain_after_commit(touched)


def _count_unaccepted(conn, run, types) -> None:
    """Changes of members with no identity this partner accepts are counted, not queued."""
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Connection._meta.db_table} SET unaccepted_count = unaccepted_count + ("
            f"SELECT COUNT(*) FROM {T_CHANGE} ch WHERE ch.run_id = %s AND ch.audience_id = %s "
            f"AND NOT EXISTS (SELECT 1 FROM {T_IDENTITY} i WHERE i.profile_id = ch.profile_id "
            f"AND i.type IN ({_placeholders(types)})){member_condition(conn, 'ch.profile_id')}) WHERE id = %s",
            [run.pk, conn.audience_id, *types, conn.pk],
        )


def fan_out_identity_changes(removed, added) -> None:
    """Listener for identity changes: members' connections get a remove for the old, an add for the new.

    `removed` and `added` are lists of (profile_id, type, value). Removes go
    first so that an identity moving between two members of one audience ends
    as an add (the coalescing keeps the latest).
    """
    profile_ids = {p for p, _, _ in removed} | {p for p, _, _ in added}
    if not profile_ids:
        return
    audience_ids = set(
        Membership.objects.filter(profile_id__in=profile_ids).values_list("audience_id", flat=True).distinct()
    )
    conns = Connection.objects.filter(audience_id__in=audience_ids, status__in=QUEUEING).select_related(
        "output", "audience", "variant__audience"
    )
    touched = []
    for conn in conns:
        types = set(accepted_types(conn))
        for action, rows in (("remove", removed), ("add", added)):
            rows = [r for r in rows if r[1] in types]
            if not rows:
                continue
            for start in range(0, len(rows), CHUNK):
                chunk = rows[start : start + CHUNK]
                values = ", ".join(["(%s, %s, %s)"] * len(chunk))
                source = (
                    f"SELECT v.column1 AS profile_id, v.column2 AS type, v.column3 AS value, '{action}' AS action "
                    f"FROM (VALUES {values}) v WHERE EXISTS (SELECT 1 FROM {T_MEMBER} m "
                    f"WHERE m.audience_id = %s AND m.profile_id = v.column1"
                    f"{member_condition(conn, 'm.profile_id')})"
                )
                _insert(conn, source, [x for row in chunk for x in row] + [conn.audience_id])
            touched.append(conn.pk)
    _drain_after_commit(touched)


def forget_erased(profiles) -> None:
    """Listener for erasures, called after their removals were queued: no identity outlives what is still owed.

    Finished messages go now, in every connection (also those of audiences the profile had left before);
    the unsent ones (the removals just queued, an older remove still waiting) are deleted once delivered.
    Two statements for the whole erasure; they read the outbox by profile, which has no index of its own
    (every outbox index costs each of the three writes of every message, and erasures are rare).
    """
    ids = profiles.values("pk")
    OutboxMessage.objects.filter(profile_id__in=ids, state__in=OutboxMessage.FINISHED).delete()
    OutboxMessage.objects.filter(profile_id__in=ids, forget_after_delivery=False).update(forget_after_delivery=True)


def backfill(conn: Connection, action: str = "add") -> int:
    """Queue every current member of the audience, or of the connection's variant (on connect: adds; on
    disconnect with removal: removes)."""
    types = accepted_types(conn)
    if not types:
        return 0
    source = (
        f"SELECT m.profile_id AS profile_id, i.type AS type, i.value AS value, '{action}' AS action "
        f"FROM {T_MEMBER} m JOIN {T_IDENTITY} i ON i.profile_id = m.profile_id "
        f"WHERE m.audience_id = %s AND i.type IN ({_placeholders(types)})"
        f"{member_condition(conn, 'm.profile_id')}"
    )
    queued = _insert(conn, source, [conn.audience_id, *types])
    if queued > ANALYZE_AFTER and db.vendor == "postgresql":
        # Fresh statistics before the claims plan against a table that just grew a lot.
        with db.cursor() as cursor:
            cursor.execute(f"ANALYZE {T_OUTBOX}")
    _drain_after_commit([conn.pk])
    return queued


def rewrite_shared_lists(conn: Connection, shared) -> int:
    """`conn` stopped writing a list its partner replaces whole (a Braze string attribute): its audience's ID
    stays in its members' lists until they are written again. Queue them on a connection still writing that
    list, as an add for its own members and a remove for the others: either way the write is the member's list
    as it is now, without this audience. Returns how many were queued (0 when no connection writes it anymore).
    """
    sibling = (
        Connection.objects.filter(
            output_id=conn.output_id,
            status__in=QUEUEING,
            **{f"settings__{k}": v for k, v in shared.matching.items()},
        )
        .exclude(pk=conn.pk)
        .select_related("output")
        .first()
    )
    types = accepted_types(sibling) if sibling else []
    if not types:
        return 0
    source = (
        f"SELECT m.profile_id AS profile_id, i.type AS type, i.value AS value, CASE WHEN EXISTS (SELECT 1 "
        f"FROM {T_MEMBER} s WHERE s.audience_id = %s AND s.profile_id = m.profile_id"
        f"{member_condition(sibling, 's.profile_id')}) THEN 'add' ELSE 'remove' END "
        f"AS action FROM {T_MEMBER} m JOIN {T_IDENTITY} i ON i.profile_id = m.profile_id "
        f"WHERE m.audience_id = %s AND i.type IN ({_placeholders(types)})"
        f"{member_condition(conn, 'm.profile_id')}"
    )
    queued = _insert(sibling, source, [sibling.audience_id, conn.audience_id, *types])
    _drain_after_commit([sibling.pk])
    return queued


def _drain_after_commit(connection_ids) -> None:
    if connection_ids:
        from connections.tasks import request_drain

        ids = list(dict.fromkeys(connection_ids))
        transaction.on_commit(lambda: request_drain(ids))
