"""The outbox's SQL: claim a batch, record its outcomes, back off its retries, give it back, prune.

Per batch: one statement claims it, inserting one lease row for the whole batch (OutboxLease) instead of
stamping each message, so a dead worker's batch is claimed again when the lease ends; one transaction
records the outcomes, ends the lease and writes the delivery record (one statement on PostgreSQL), and one
statement updates the connection's counters. A message is written once, when its outcome is known. The
statements are written by hand: each is one query for the whole batch, and the claim's shape is chosen for
its query plan on each database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time

from django.conf import settings
from django.db import connection as db
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from connections import policy
from connections.models import Connection, Delivery, OutboxLease, OutboxMessage
from outputs.partners import redact
from outputs.partners.base import Outcome, SendResult

State = OutboxMessage.State
T_OUTBOX = OutboxMessage._meta.db_table
T_CONN = Connection._meta.db_table
T_DELIVERY = Delivery._meta.db_table
T_LEASE = OutboxLease._meta.db_table


def _max_length(model, name: str) -> int:
    return model._meta.get_field(name).max_length


MESSAGE_ERROR_CHARS = _max_length(OutboxMessage, "last_error")
CONNECTION_ERROR_CHARS = _max_length(Connection, "last_error")
STATUS_REASON_CHARS = _max_length(Connection, "status_reason")
DELIVERY_ERROR_CHARS = _max_length(Delivery, "error")
# A delivery record keeps the batch's last few requests and a bounded excerpt of them (a text column).
EXCERPT_REQUESTS = 5
EXCERPT_CHARS = 4000

NO_ANSWER = Outcome("retry", "The partner gave no answer for this message.")
# A claimed row, as the claim returns it: the message, its revision (connections.fanout) and its lease's id.
ID, TYPE, VALUE, ACTION, ATTEMPTS, CREATED, FORGET, REVISION, LEASE = range(9)
# pg_advisory_xact_lock(CLAIM_LOCK, connection id): a connection's claims take turns (PostgreSQL).
CLAIM_LOCK = 0x0C1A


def in_list(values) -> str:
    """`(…)` of our own constants (states, statuses) as SQL literals, for an IN in hand-written SQL."""
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


def _ids(rows) -> str:
    return ", ".join(str(int(r[ID])) for r in rows)


def _same(rows) -> str:
    """SQL: the message is as its claim read it, i.e. no newer change replaced it in place since (its revision).

    A replaced message stays pending: it carries the newer change, which has not been sent yet.
    """
    moved = [r for r in rows if r[REVISION]]
    if not moved:
        return "revision = 0"
    whens = " ".join(f"WHEN {int(r[ID])} THEN {int(r[REVISION])}" for r in moved)
    return f"revision = CASE id {whens} ELSE 0 END"


_PENDING = policy.PENDING_DUE


def _pick(vendor: str) -> str:
    """Due messages of a sending connection that no live lease covers, longest due first; parameters:
    connection, now (due), connection, now (live leases), limit."""
    created = "EXTRACT(EPOCH FROM o.created_at)::float8" if vendor == "postgresql" else "o.created_at"
    return (
        f"SELECT o.id, o.identity_type, o.value, o.action, o.attempts, {created}, o.forget_after_delivery, "
        f"o.revision FROM {T_OUTBOX} o WHERE o.connection_id = %s AND {_PENDING.sql('o')} "
        f"AND o.id NOT IN ({policy.leased_sql(vendor, 'l.connection_id = %s AND ')}) "
        f"AND EXISTS (SELECT 1 FROM {T_CONN} c WHERE c.id = o.connection_id AND c.status IN {in_list(policy.SENDING)}) "
        f"ORDER BY o.next_attempt_at{'' if vendor == 'postgresql' else ', o.id'} LIMIT %s"
    )


# PostgreSQL: the creation time comes back as epoch seconds. Django's time-zone-aware timestamp loader is
# pure Python, and parsing 500 timestamps per claim costs a sixth of a drain's CPU; the time is only read
# when a message is retried, to close it once it is past the retry window.
# The leases that ran out are deleted first: their worker died or stalled. Each counts as an attempt of its
# messages (one statement for all of them, and rare); what they covered is due again at once, and goes first
# as the longest due.
_CLAIM_PG = (
    f"WITH gone AS (DELETE FROM {T_LEASE} WHERE connection_id = %s AND expires_at < %s RETURNING message_ids), "
    f"tried AS (UPDATE {T_OUTBOX} SET attempts = attempts + 1 WHERE id IN (SELECT unnest(message_ids) FROM gone) "
    f"AND state = '{State.PENDING}' RETURNING 1), "
    f"picked AS ({_pick('postgresql')}), "
    f"lease AS (INSERT INTO {T_LEASE} (connection_id, message_ids, expires_at, created_at) "
    f"SELECT %s, array_agg(id), %s, %s FROM picked HAVING count(*) > 0 RETURNING id) "
    f"SELECT picked.*, lease.id FROM picked, lease"
)


def _one_round_trip(cursor) -> bool:
    """Whether the driver sends a query of several statements as it is (psycopg 3 binding on the client side,
    Django's default), so that the claim's lock and the claim go in one round trip."""
    try:
        from psycopg import ClientCursor
    except ImportError:
        return False
    return isinstance(cursor.cursor, ClientCursor)


def _one_round_trip_possible() -> bool:
    with db.cursor() as cursor:
        return _one_round_trip(cursor)


# The usual record commits without waiting for its WAL flush. A server crash may then lose the record of the
# last batches, never more: their lease was committed durably before they were sent, so they are claimed and
# sent again when it runs out (OUTBOX_LEASE_SECONDS, longer than OUTCOME_SETTLE_SECONDS), as after a worker's
# crash; anything committed after them (a newer change) flushes them with it. Retries and faults keep the
# durable commit: they change what is sent next and when.
_LAZY_COMMIT = "SET LOCAL synchronous_commit = off; "


def claim(conn_id: int, limit: int, now=None) -> list[tuple]:
    """Lease up to `limit` due messages of a sending connection: one lease row, no message written.

    Due (connections.policy): pending, past its next attempt, and covered by no live lease; a lease whose
    worker died expires, and its messages are due again. An identity has one waiting message at most (the
    coalescing replaces it in place), so while it is in flight nothing newer of the identity can go out:
    the partner sees an identity's changes in order.

    A connection's claims take turns (an advisory lock on PostgreSQL, the write lock on SQLite), so each one
    sees the leases of the one before: no message is leased twice.
    """
    now = now or timezone.now()
    lease = now + dt.timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    adapt = db.ops.adapt_datetimefield_value
    if db.vendor == "postgresql":
        params = [
            *(CLAIM_LOCK, conn_id),  # the turn
            *(conn_id, adapt(now)),  # the leases that ran out
            *(conn_id, adapt(now), conn_id, adapt(now), limit),  # the pick
            *(conn_id, adapt(lease), adapt(now)),  # the new lease
        ]
        with db.cursor() as cursor:
            if _one_round_trip(cursor):
                # Two statements in one query: PostgreSQL runs them as one transaction, and the claim, started
                # once the lock is ours, sees every lease committed before. One round trip, one commit.
                cursor.execute(f"SELECT pg_advisory_xact_lock(%s, %s); {_CLAIM_PG}", params)
                cursor.nextset()
                rows = cursor.fetchall()
            else:
                with transaction.atomic():
                    cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", params[:2])
                    cursor.execute(_CLAIM_PG, params[2:])
                    rows = cursor.fetchall()
        rows.sort(key=lambda r: r[ID])
        return rows
    with transaction.atomic(), db.cursor() as cursor:
        cursor.execute(
            f"DELETE FROM {T_LEASE} WHERE connection_id = %s AND expires_at < %s RETURNING message_ids",
            [conn_id, adapt(now)],
        )
        gone = [int(i) for (ids,) in cursor.fetchall() for i in json.loads(ids)]
        if gone:
            cursor.execute(
                f"UPDATE {T_OUTBOX} SET attempts = attempts + 1 WHERE id IN ({', '.join(map(str, gone))}) "
                f"AND state = '{State.PENDING}'"
            )
        cursor.execute(_pick("sqlite"), [conn_id, adapt(now), conn_id, adapt(now), limit])
        rows = cursor.fetchall()
        if rows:
            cursor.execute(
                f"INSERT INTO {T_LEASE} (connection_id, message_ids, expires_at, created_at) "
                f"VALUES (%s, %s, %s, %s) RETURNING id",
                [conn_id, json.dumps([r[ID] for r in rows]), adapt(lease), adapt(now)],
            )
            (lease_id,) = cursor.fetchone()
            rows = [(*r, lease_id) for r in rows]
    rows.sort(key=lambda r: r[ID])
    return rows


def record(conn: Connection, rows, result: SendResult, started: float, started_at, again=()) -> dict:
    """Write every message's outcome and a delivery record in one transaction, then the connection's counters.

    `again`: delivered rows queued anew in the same transaction (unless the identity has a message waiting
    already, which carries the newer state), so a worker killed after the record cannot lose the repeat.

    On PostgreSQL the usual batch's outcomes and delivery record are one statement of data-modifying CTEs
    (one round trip, one commit). The counters follow in a statement of their own: every lane of every
    worker updates that one connection row, and inside the batch's transaction its lock would be held
    across the commit's WAL flush, putting the lanes in single file.
    """
    now = timezone.now()
    adapt = db.ops.adapt_datetimefield_value
    accepted, rejected, retry = [], [], []
    if result.fault is None:
        outcomes, by_status = result.outcomes, {"accepted": accepted, "rejected": rejected, "retry": retry}
        for row in rows:
            outcome = outcomes.get(row[ID]) or NO_ANSWER
            by_status[outcome.status].append((row, outcome))
    failed = 0
    writes = []  # (sql, params): independent statements, combined into one on PostgreSQL
    pending = f"state = '{State.PENDING}'"
    if accepted:
        forget = [r for r, _ in accepted if r[FORGET]]
        keep = [r for r, _ in accepted if not r[FORGET]]
        if keep:
            writes.append(
                (
                    f"UPDATE {T_OUTBOX} SET state = '{State.DELIVERED}', attempts = attempts + 1, finished_at = %s, "
                    f"updated_at = %s, last_error = '' WHERE id IN ({_ids(keep)}) AND {pending} AND {_same(keep)}",
                    [adapt(now), adapt(now)],
                )
            )
        if forget:
            writes.append(
                (f"DELETE FROM {T_OUTBOX} WHERE id IN ({_ids(forget)}) AND {pending} AND {_same(forget)}", [])
            )
    if rejected:
        reasons = " ".join("WHEN %s THEN %s" for _ in rejected)
        done = [r for r, _ in rejected]
        writes.append(
            (
                f"UPDATE {T_OUTBOX} SET state = '{State.REJECTED}', attempts = attempts + 1, finished_at = %s, "
                f"updated_at = %s, last_error = CASE id {reasons} END "
                f"WHERE id IN ({_ids(done)}) AND {pending} AND {_same(done)}",
                [adapt(now), adapt(now), *[x for r, o in rejected for x in (r[ID], o.reason[:MESSAGE_ERROR_CHARS])]],
            )
        )
    # The batch's lease goes with its outcomes, in one transaction: a claim sees both or neither. A fault gives
    # the batch back untouched (it goes out when the connection resumes): ending its lease is all it takes.
    if rows:
        writes.append((f"DELETE FROM {T_LEASE} WHERE id = %s", [rows[0][LEASE]]))
    # PostgreSQL, a batch with no retry and no fault (the usual one): one statement, its own transaction.
    single = db.vendor == "postgresql" and result.fault is None and not retry and not again
    lazy = _LAZY_COMMIT if single and _one_round_trip_possible() else ""
    with contextlib.nullcontext() if single else transaction.atomic(), db.cursor() as cursor:
        if result.fault is None and retry:
            failed = _retry(cursor, retry, now, unknown=policy.unanswered(result.attempts))
        counts = {
            "batches": 1,
            "messages": len(rows),
            "accepted": len(accepted),
            "rejected": len(rejected),
            "retried": len(retry) - failed,
            "failed": failed,
        }
        last_error = ""
        if result.fault is not None:
            last_error = f"{result.fault.message} {result.fault.hint}".strip()
        elif rejected or retry:
            row, outcome = (rejected or retry)[-1]
            # Kept on the connection and the delivery record: the member's value stays on its own message only.
            last_error = redact.member_reason(outcome.reason, conn.partner, row[TYPE], row[VALUE])
        sets = (
            "sent_count = sent_count + %s, accepted_count = accepted_count + %s, "
            "rejected_count = rejected_count + %s, failed_count = failed_count + %s, last_delivery_at = %s"
        )
        params = [0 if result.fault else len(rows), len(accepted), len(rejected), failed, adapt(now)]
        if last_error:
            sets += ", last_error = %s, last_error_at = %s, last_error_resolved_at = NULL"
            params += [last_error[:CONNECTION_ERROR_CHARS], adapt(now)]
        elif accepted:
            # The first batch accepted after an error turns it into history (connections/last_problem.py).
            sets += (
                ", last_error_resolved_at = CASE WHEN last_error <> '' AND last_error_resolved_at IS NULL "
                "THEN %s ELSE last_error_resolved_at END"
            )
            params += [adapt(now)]
        if result.fault is not None:
            sets += ", status = %s, status_reason = %s"
            params += [Connection.Status.FAULTED, last_error[:STATUS_REASON_CHARS]]
        counters = (f"UPDATE {T_CONN} SET {sets} WHERE id = %s", [*params, conn.pk])
        attempts = result.attempts
        last = attempts[-1] if attempts else None
        delivery = [
            conn.pk,
            adapt(started_at),
            int((time.monotonic() - started) * 1000),
            len(rows),
            len(accepted),
            len(rejected),
            counts["retried"],
            last.status if last else None,
            len(attempts),
            last_error[:DELIVERY_ERROR_CHARS],
            "\n".join(
                f"{a.method} {a.path} → {a.status or 'no answer'} ({a.duration_ms} ms) {a.response_excerpt}"
                for a in attempts[-EXCERPT_REQUESTS:]
            )[:EXCERPT_CHARS],
        ]
        insert = (
            f"INSERT INTO {T_DELIVERY} (connection_id, started_at, duration_ms, messages, accepted, rejected, "
            f"retried, http_status, requests, error, response_excerpt) VALUES ({', '.join(['%s'] * len(delivery))})"
        )
        if db.vendor == "postgresql":
            ctes = ", ".join(f"w{n} AS ({sql} RETURNING 1)" for n, (sql, _) in enumerate(writes))
            sql = f"WITH {ctes} {insert}" if writes else insert
            cursor.execute(f"{lazy}{sql}", [*(p for _, ps in writes for p in ps), *delivery])
        else:
            for sql, ps in [*writes, counters]:
                cursor.execute(sql, ps)
            cursor.execute(insert, delivery)
        if again:
            # After the delivered rows left `pending`: the copies take their place in the one-pending index.
            cursor.execute(*_queue_again(again, now))
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute(f"{lazy}{counters[0]}", counters[1])
    return counts


def _queue_again(rows, now) -> tuple[str, list]:
    """A pending copy of each row; an identity with a message pending already keeps that one."""
    adapt = db.ops.adapt_datetimefield_value
    return (
        f"INSERT INTO {T_OUTBOX} (connection_id, profile_id, identity_type, value, action, state, attempts, "
        f"next_attempt_at, created_at, updated_at, last_error, forget_after_delivery) "
        f"SELECT connection_id, profile_id, identity_type, value, action, '{State.PENDING}', 0, %s, %s, %s, '', "
        f"forget_after_delivery FROM {T_OUTBOX} WHERE id IN ({_ids(rows)}) ON CONFLICT DO NOTHING",
        [adapt(now), adapt(now), adapt(now)],
    )


def _retry(cursor, retry, now, unknown: bool = False) -> int:
    """Back off transient failures; close as failed those past the retry window. Returns how many failed.

    `unknown`: a request of the batch got no answer, so the partner may still apply it; every retried
    identity settles first (connections.policy.settles_at), also where a newer change replaced its message
    while it was in flight (the message is the identity's only waiting one: it carries the newer change).
    """
    adapt = db.ops.adapt_datetimefield_value
    window_start = policy.retry_window_start(now)
    expired = [(r, o) for r, o in retry if _aware(r[CREATED]) < window_start]
    live = [(r, o) for r, o in retry if _aware(r[CREATED]) >= window_start]
    settle = policy.settles_at(now) if unknown else None
    pending = f"state = '{State.PENDING}'"
    if expired:
        done = [r for r, _ in expired]
        cursor.execute(
            f"UPDATE {T_OUTBOX} SET state = '{State.FAILED}', attempts = attempts + 1, finished_at = %s, "
            f"updated_at = %s, last_error = %s WHERE id IN ({_ids(done)}) AND {pending} AND {_same(done)}",
            [adapt(now), adapt(now), policy.gave_up(expired[-1][1].reason)[:MESSAGE_ERROR_CHARS]],
        )
    if live:
        whens = " ".join("WHEN %s THEN %s" for _ in live)
        errors = " ".join("WHEN %s THEN %s" for _ in live)
        spread = policy.jitter()

        def next_at(row, outcome):
            # The claim read the attempts before this one.
            wait = policy.backoff_seconds(row[ATTEMPTS] + 1, outcome.retry_after, spread)
            at = now + dt.timedelta(seconds=wait)
            return max(at, settle) if settle is not None else at

        params = [x for r, o in live for x in (r[ID], adapt(next_at(r, o)))]
        params += [x for r, o in live for x in (r[ID], o.reason[:MESSAGE_ERROR_CHARS])]
        backing_off = [r for r, _ in live]
        cursor.execute(
            f"UPDATE {T_OUTBOX} SET attempts = attempts + 1, updated_at = %s, "
            f"next_attempt_at = CASE id {whens} END, last_error = CASE id {errors} END "
            f"WHERE id IN ({_ids(backing_off)}) AND {pending} AND {_same(backing_off)}",
            [adapt(now), *params],
        )
    if settle is not None:
        _settle(cursor, [r for r, _ in retry], settle)
    return len(expired)


def _settle(cursor, rows, until) -> None:
    """These rows' identities wait until `until`: their message, backing off or replaced by a newer change."""
    adapt = db.ops.adapt_datetimefield_value
    cursor.execute(
        f"UPDATE {T_OUTBOX} SET settles_at = %s, next_attempt_at = CASE WHEN next_attempt_at < %s THEN %s "
        f"ELSE next_attempt_at END WHERE id IN ({_ids(rows)}) AND state = '{State.PENDING}'",
        [adapt(until), adapt(until), adapt(until)],
    )


def _aware(value):
    """A claimed row's creation time (epoch seconds on PostgreSQL, text or naive on SQLite) as an aware datetime."""
    if isinstance(value, float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if timezone.is_naive(value):
        value = timezone.make_aware(value, dt.UTC)
    return value


def prune(cutoff, refreshing) -> int:
    """Delete finished messages and delivery records older than `cutoff`; the connection's counters keep totals.

    Where the partner expires members (`refreshing`: those connections' ids), a member's newest delivered add
    says when it must be sent again (connections.refresh): it stays until a newer add or a remove is delivered.
    """
    old = OutboxMessage.objects.filter(state__in=OutboxMessage.FINISHED, finished_at__lt=cutoff)
    newer = OutboxMessage.objects.filter(
        connection_id=OuterRef("connection_id"),
        identity_type=OuterRef("identity_type"),
        value=OuterRef("value"),
        state=State.DELIVERED,
        pk__gt=OuterRef("pk"),
    )
    old = old.exclude(Q(connection_id__in=refreshing, state=State.DELIVERED, action="add") & ~Exists(newer))
    deleted, _ = old.delete()
    deliveries, _ = Delivery.objects.filter(started_at__lt=cutoff).delete()
    # Leases that ran out long ago on connections no claim came back to (paused, faulted): their messages are
    # due already (policy.due); the rows only take room. Not counted: they held no identity.
    OutboxLease.objects.filter(expires_at__lt=cutoff).delete()
    return deleted + deliveries
