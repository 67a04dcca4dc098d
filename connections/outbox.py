"""The outbox's SQL: claim a batch, record its outcomes, back off its retries, give it back, prune.

Per batch: one statement claims it (leased, so a dead worker's batch is claimed again when the lease ends),
one transaction records the outcomes and the delivery record (one statement on PostgreSQL), and one
statement updates the connection's counters. The statements are written by hand: each is one query for the
whole batch, and the claim's shape is chosen for its query plan on each database.
"""

from __future__ import annotations

import datetime as dt
import time

from django.conf import settings
from django.db import connection as db
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from connections import policy
from connections.models import Connection, Delivery, OutboxMessage
from outputs.partners import redact
from outputs.partners.base import Outcome, SendResult

State = OutboxMessage.State
T_OUTBOX = OutboxMessage._meta.db_table
T_CONN = Connection._meta.db_table
T_DELIVERY = Delivery._meta.db_table


def _max_length(model, name: str) -> int:
    return model._meta.get_field(name).max_length


MESSAGE_ERROR_CHARS = _max_length(OutboxMessage, "last_error")
CONNECTION_ERROR_CHARS = _max_length(Connection, "last_error")
STATUS_REASON_CHARS = _max_length(Connection, "status_reason")
DELIVERY_ERROR_CHARS = _max_length(Delivery, "error")
# A delivery record keeps the batch's last few requests and a bounded excerpt of them (a text column).
EXCERPT_REQUESTS = 5
EXCERPT_CHARS = 4000

# A claimed row, as the claim returns it.
ID, TYPE, VALUE, ACTION, ATTEMPTS, CREATED, FORGET = range(7)


def in_list(values) -> str:
    """`(…)` of our own constants (states, statuses) as SQL literals, for an IN in hand-written SQL."""
    return "(" + ", ".join(f"'{value}'" for value in values) + ")"


def _ids(rows) -> str:
    return ", ".join(str(int(r[ID])) for r in rows)


_WAITING = (
    "NOT EXISTS (SELECT 1 FROM {t} b{hint} WHERE b.connection_id = o.connection_id "
    "AND b.identity_type = o.identity_type AND b.value = o.value AND {in_flight} AND b.id <> o.id "
    "AND (b.lease_expires_at >= %s OR b.id < o.id){fence}) "
    "AND EXISTS (SELECT 1 FROM {c} c WHERE c.id = o.connection_id AND c.status IN {sending})"
)
# PostgreSQL: the check for an older in-flight message of the same identity must be an index lookup by
# identity for each candidate. Its statistics, taken when nothing was in flight, make an index on `state`
# look cheaper; with thousands of rows in flight during a drain that plan compares every candidate with
# every one of them (~0.25 s a claim at 5,000 in flight instead of ~2 ms). The state test is therefore
# kept out of index conditions (`IS TRUE`) and the subquery stays a per-row lookup (`OFFSET 0`).
_BLOCKED_PG = _WAITING.format(
    t=T_OUTBOX,
    hint="",
    c=T_CONN,
    sending=in_list(policy.SENDING),
    in_flight=f"(b.state = '{State.IN_FLIGHT}') IS TRUE",
    fence=" OFFSET 0",
)
# SQLite, without statistics, picks the claim index (connection, state) for the same check and then reads
# every in-flight message of the connection per candidate: a claim of 500 with 500 in flight takes seconds,
# holding the database's only write lock. The identity's value index finds the few rows it needs.
_BLOCKED = _WAITING.format(
    t=T_OUTBOX,
    hint=" INDEXED BY outbox_value_idx",
    c=T_CONN,
    sending=in_list(policy.SENDING),
    in_flight=f"b.state = '{State.IN_FLIGHT}'",
    fence="",
)
_RETURNING = "RETURNING id, identity_type, value, action, attempts, created_at, forget_after_delivery"
# PostgreSQL: the creation time comes back as epoch seconds. Django's time-zone-aware timestamp loader is
# pure Python, and parsing 500 timestamps per claim costs a sixth of a drain's CPU; the time is only read
# when a message is retried, to close it once it is past the retry window.
_RETURNING_PG = _RETURNING.replace("created_at", "EXTRACT(EPOCH FROM created_at)::float8")
_CLAIM_SET = (
    f"UPDATE {T_OUTBOX} SET state = '{State.IN_FLIGHT}', attempts = attempts + 1, lease_expires_at = %s, "
    f"updated_at = %s WHERE id IN "
)
_EXPIRED, _PENDING = policy.LEASE_EXPIRED, policy.PENDING_DUE


def claim(conn_id: int, limit: int, now=None) -> list[tuple]:
    """Lease up to `limit` due messages of a sending connection in one statement.

    Due (connections.policy): pending and past its next attempt, or in flight with an expired lease (its
    worker died); expired ones go first, then pending ones longest due first. A message waits while an
    older one for the same identity is in flight, so the partner sees an identity's changes in order.
    """
    now = now or timezone.now()
    lease = now + dt.timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    adapt = db.ops.adapt_datetimefield_value
    with db.cursor() as cursor:
        if db.vendor == "postgresql":
            # Each kind of due message is found through the claim index (connection, state, next attempt) in
            # the order it keeps, so a claim reads about `limit` index entries whatever the connection's
            # history holds; ordering all candidates by id would walk every delivered message before them.
            cursor.execute(
                f"WITH expired AS (SELECT o.id FROM {T_OUTBOX} o WHERE o.connection_id = %s "
                f"AND {_EXPIRED.sql('o')} AND {_BLOCKED_PG} "
                f"ORDER BY o.id LIMIT %s FOR UPDATE SKIP LOCKED), "
                f"due AS (SELECT o.id FROM {T_OUTBOX} o WHERE o.connection_id = %s "
                f"AND {_PENDING.sql('o')} AND {_BLOCKED_PG} "
                f"ORDER BY o.next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) "
                f"{_CLAIM_SET}(SELECT id FROM (SELECT id, 0 AS k FROM expired UNION ALL "
                f"SELECT id, 1 FROM due) picked ORDER BY k, id LIMIT %s) {_RETURNING_PG}",
                [
                    *(conn_id, adapt(now), adapt(now), limit),
                    *(conn_id, adapt(now), adapt(now), limit),
                    adapt(lease),
                    adapt(now),
                    limit,
                ],
            )
        else:
            cursor.execute(
                f"{_CLAIM_SET}(SELECT o.id FROM {T_OUTBOX} o WHERE o.connection_id = %s AND ("
                f"({_PENDING.sql('o')}) OR ({_EXPIRED.sql('o')})) AND {_BLOCKED} "
                f"ORDER BY o.state = '{State.PENDING}', o.next_attempt_at, o.id LIMIT %s) {_RETURNING}",
                [adapt(lease), adapt(now), conn_id, adapt(now), adapt(now), adapt(now), limit],
            )
        rows = cursor.fetchall()
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
        for row in rows:
            outcome = result.outcomes.get(row[ID]) or Outcome("retry", "The partner gave no answer for this message.")
            {"accepted": accepted, "rejected": rejected, "retry": retry}[outcome.status].append((row, outcome))
    failed = 0
    writes = []  # (sql, params): independent statements, combined into one on PostgreSQL
    if accepted:
        forget = [r for r, _ in accepted if r[FORGET]]
        keep = [r for r, _ in accepted if not r[FORGET]]
        if keep:
            writes.append(
                (
                    f"UPDATE {T_OUTBOX} SET state = '{State.DELIVERED}', finished_at = %s, updated_at = %s, "
                    f"lease_expires_at = NULL, last_error = '' "
                    f"WHERE id IN ({_ids(keep)}) AND state = '{State.IN_FLIGHT}'",
                    [adapt(now), adapt(now)],
                )
            )
        if again:
            writes.append(_queue_again(again, now))
        if forget:
            writes.append((f"DELETE FROM {T_OUTBOX} WHERE id IN ({_ids(forget)})", []))
    if rejected:
        reasons = " ".join("WHEN %s THEN %s" for _ in rejected)
        writes.append(
            (
                f"UPDATE {T_OUTBOX} SET state = '{State.REJECTED}', finished_at = %s, updated_at = %s, "
                f"lease_expires_at = NULL, last_error = CASE id {reasons} END "
                f"WHERE id IN ({_ids([r for r, _ in rejected])})",
                [adapt(now), adapt(now), *[x for r, o in rejected for x in (r[ID], o.reason[:MESSAGE_ERROR_CHARS])]],
            )
        )
    with transaction.atomic(), db.cursor() as cursor:
        if result.fault is not None:
            give_back(cursor, rows, now, refund=True)
        elif retry:
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
            cursor.execute(sql, [*(p for _, ps in writes for p in ps), *delivery])
        else:
            for sql, ps in [*writes, counters]:
                cursor.execute(sql, ps)
            cursor.execute(insert, delivery)
    if db.vendor == "postgresql":
        with db.cursor() as cursor:
            cursor.execute(*counters)
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
    identity settles first (connections.policy.settles_at), its newer pending message included.
    """
    adapt = db.ops.adapt_datetimefield_value
    window_start = policy.retry_window_start(now)
    expired = [(r, o) for r, o in retry if _aware(r[CREATED]) < window_start]
    live = [(r, o) for r, o in retry if _aware(r[CREATED]) >= window_start]
    settle = policy.settles_at(now) if unknown else None
    if settle is not None:
        _settle(cursor, [r for r, _ in retry], settle)
    if expired:
        cursor.execute(
            f"UPDATE {T_OUTBOX} SET state = '{State.FAILED}', finished_at = %s, updated_at = %s, "
            f"lease_expires_at = NULL, last_error = %s WHERE id IN ({_ids([r for r, _ in expired])})",
            [adapt(now), adapt(now), policy.gave_up(expired[-1][1].reason)[:MESSAGE_ERROR_CHARS]],
        )
    if live:
        whens = " ".join("WHEN %s THEN %s" for _ in live)
        errors = " ".join("WHEN %s THEN %s" for _ in live)
        spread = policy.jitter()

        def next_at(row, outcome):
            at = now + dt.timedelta(seconds=policy.backoff_seconds(row[ATTEMPTS], outcome.retry_after, spread))
            return max(at, settle) if settle is not None else at

        params = [x for r, o in live for x in (r[ID], adapt(next_at(r, o)))]
        params += [x for r, o in live for x in (r[ID], o.reason[:MESSAGE_ERROR_CHARS])]
        _close_replaced(cursor, [r for r, _ in live], now)
        cursor.execute(
            f"UPDATE {T_OUTBOX} SET state = '{State.PENDING}', lease_expires_at = NULL, updated_at = %s, "
            f"next_attempt_at = CASE id {whens} END, last_error = CASE id {errors} END"
            f"{', settles_at = %s' if settle is not None else ''} "
            f"WHERE id IN ({_ids([r for r, _ in live])}) AND state = '{State.IN_FLIGHT}'",
            [adapt(now), *params, *([adapt(settle)] if settle is not None else [])],
        )
    return len(expired)


def _settle(cursor, rows, until) -> None:
    """The pending messages of these rows' identities (newer changes queued meanwhile) wait until `until`."""
    adapt = db.ops.adapt_datetimefield_value
    values = sorted({r[VALUE] for r in rows})
    cursor.execute(
        f"UPDATE {T_OUTBOX} SET settles_at = %s, next_attempt_at = CASE WHEN next_attempt_at < %s THEN %s "
        f"ELSE next_attempt_at END WHERE value IN ({', '.join(['%s'] * len(values))}) "
        f"AND state = '{State.PENDING}' AND EXISTS (SELECT 1 FROM {T_OUTBOX} r "
        f"WHERE r.id IN ({_ids(rows)}) AND r.connection_id = {T_OUTBOX}.connection_id "
        f"AND r.identity_type = {T_OUTBOX}.identity_type AND r.value = {T_OUTBOX}.value)",
        [adapt(until), adapt(until), adapt(until), *values],
    )


def _close_replaced(cursor, rows, now) -> None:
    """A message that a newer one replaced while it was in flight is closed: the newer one carries the state."""
    adapt = db.ops.adapt_datetimefield_value
    cursor.execute(
        f"UPDATE {T_OUTBOX} SET state = '{State.REPLACED}', finished_at = %s, lease_expires_at = NULL "
        f"WHERE id IN ({_ids(rows)}) AND state = '{State.IN_FLIGHT}' AND EXISTS (SELECT 1 FROM {T_OUTBOX} p "
        f"WHERE p.connection_id = {T_OUTBOX}.connection_id AND p.identity_type = {T_OUTBOX}.identity_type "
        f"AND p.value = {T_OUTBOX}.value AND p.state = '{State.PENDING}')",
        [adapt(now)],
    )


def give_back(cursor, rows, now, refund: bool) -> None:
    """Return a batch to the queue untouched (a fault stopped it): it goes out when the connection resumes."""
    adapt = db.ops.adapt_datetimefield_value
    _close_replaced(cursor, rows, now)
    cursor.execute(
        f"UPDATE {T_OUTBOX} SET state = '{State.PENDING}', lease_expires_at = NULL, next_attempt_at = %s, "
        f"updated_at = %s{', attempts = attempts - 1' if refund else ''} "
        f"WHERE id IN ({_ids(rows)}) AND state = '{State.IN_FLIGHT}'",
        [adapt(now), adapt(now)],
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
    return deleted + deliveries
