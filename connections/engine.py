"""The forwarding engine: claim a batch, send it through the partner module, record every outcome.

Per batch: one query claims it (leased, so a dead worker's batch is claimed
again when the lease ends), the partner call, one transaction for the
outcomes and the delivery record (one statement on PostgreSQL), and one
statement for the connection's counters.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection as db
from django.db import transaction
from django.utils import timezone

from connections import shared_lists
from connections import slots as output_slots
from connections.models import Connection, Delivery, OutboxMessage
from outputs.crypto import SecretsUnreadable
from outputs.partners import redact
from outputs.partners.base import Message, Outcome, SendResult
from outputs.partners.http import TransportError

log = logging.getLogger(__name__)

T_OUTBOX = OutboxMessage._meta.db_table
T_CONN = Connection._meta.db_table
T_DELIVERY = Delivery._meta.db_table
SENDING = ("active", "disconnecting")


@dataclass
class DrainReport:
    batches: int = 0
    messages: int = 0
    accepted: int = 0
    rejected: int = 0
    retried: int = 0
    failed: int = 0
    fault: str = ""
    seconds: float = 0.0
    more_due: bool = False
    worker: str = ""  # host:pid of the process that drained (shown in the task result)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, other: dict) -> None:
        with self.lock:
            for key, value in other.items():
                setattr(self, key, getattr(self, key) + value)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter; a partner's Retry-After is honoured as the minimum."""
    base = min(settings.RETRY_MAX_SECONDS, settings.RETRY_BASE_SECONDS * 2 ** max(0, attempts - 1))
    delay = base * random.uniform(0.5, 1.0)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


def _ids(rows) -> str:
    return ", ".join(str(int(r[0])) for r in rows)


_WAITING = (
    "NOT EXISTS (SELECT 1 FROM {t} b{hint} WHERE b.connection_id = o.connection_id "
    "AND b.identity_type = o.identity_type AND b.value = o.value AND {in_flight} AND b.id <> o.id "
    "AND (b.lease_expires_at >= %s OR b.id < o.id){fence}) "
    "AND EXISTS (SELECT 1 FROM {c} c WHERE c.id = o.connection_id AND c.status IN ('active', 'disconnecting'))"
)
# PostgreSQL: the check for an older in-flight message of the same identity must be an index lookup by
# identity for each candidate. Its statistics, taken when nothing was in flight, make an index on `state`
# look cheaper; with thousands of rows in flight during a drain that plan compares every candidate with
# every one of them (~0.25 s a claim at 5,000 in flight instead of ~2 ms). The state test is therefore
# kept out of index conditions (`IS TRUE`) and the subquery stays a per-row lookup (`OFFSET 0`).
_BLOCKED_PG = _WAITING.format(
    t=T_OUTBOX, hint="", c=T_CONN, in_flight="(b.state = 'in_flight') IS TRUE", fence=" OFFSET 0"
)
# SQLite, without statistics, picks the claim index (connection, state) for the same check and then reads
# every in-flight message of the connection per candidate: a claim of 500 with 500 in flight took seconds,
# holding the database's only write lock. The identity's value index finds the few rows it needs.
_BLOCKED = _WAITING.format(
    t=T_OUTBOX, hint=" INDEXED BY outbox_value_idx", c=T_CONN, in_flight="b.state = 'in_flight'", fence=""
)
_RETURNING = "RETURNING id, identity_type, value, action, attempts, created_at, forget_after_delivery"
# PostgreSQL: the creation time comes back as epoch seconds. Django's time-zone-aware timestamp loader is
# pure Python, and parsing 500 timestamps per claim was a sixth of a drain's CPU (py-spy); the time is
# only read when a message is retried, to close it once it is past the retry window.
_RETURNING_PG = _RETURNING.replace("created_at", "EXTRACT(EPOCH FROM created_at)::float8")


def claim(conn_id: int, limit: int, now=None) -> list[tuple]:
    """Lease up to `limit` due messages of a sending connection in one statement.

    Due: pending and past its next attempt, or in flight with an expired lease
    (its worker died); expired ones go first, then pending ones longest due
    first. A message waits while an older one for the same identity is in
    flight, so the partner sees an identity's changes in order.
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
                f"AND o.state = 'in_flight' AND o.lease_expires_at < %s AND {_BLOCKED_PG} "
                f"ORDER BY o.id LIMIT %s FOR UPDATE SKIP LOCKED), "
                f"due AS (SELECT o.id FROM {T_OUTBOX} o WHERE o.connection_id = %s "
                f"AND o.state = 'pending' AND o.next_attempt_at <= %s AND {_BLOCKED_PG} "
                f"ORDER BY o.next_attempt_at LIMIT %s FOR UPDATE SKIP LOCKED) "
                f"UPDATE {T_OUTBOX} SET state = 'in_flight', attempts = attempts + 1, lease_expires_at = %s, "
                f"updated_at = %s WHERE id IN (SELECT id FROM (SELECT id, 0 AS k FROM expired UNION ALL "
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
                f"UPDATE {T_OUTBOX} SET state = 'in_flight', attempts = attempts + 1, lease_expires_at = %s, "
                f"updated_at = %s WHERE id IN ("
                f"SELECT o.id FROM {T_OUTBOX} o WHERE o.connection_id = %s AND ("
                f"(o.state = 'pending' AND o.next_attempt_at <= %s) OR "
                f"(o.state = 'in_flight' AND o.lease_expires_at < %s)) AND {_BLOCKED} "
                f"ORDER BY o.state = 'pending', o.next_attempt_at, o.id LIMIT %s) {_RETURNING}",
                [adapt(lease), adapt(now), conn_id, adapt(now), adapt(now), adapt(now), limit],
            )
        rows = cursor.fetchall()
    rows.sort(key=lambda r: r[0])
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
            outcome = result.outcomes.get(row[0]) or Outcome("retry", "The partner gave no answer for this message.")
            {"accepted": accepted, "rejected": rejected, "retry": retry}[outcome.status].append((row, outcome))
    failed = 0
    writes = []  # (sql, params): independent statements, combined into one on PostgreSQL
    if accepted:
        forget = [r for r, _ in accepted if r[6]]
        keep = [r for r, _ in accepted if not r[6]]
        if keep:
            writes.append(
                (
                    f"UPDATE {T_OUTBOX} SET state = 'delivered', finished_at = %s, updated_at = %s, "
                    f"lease_expires_at = NULL, last_error = '' WHERE id IN ({_ids(keep)}) AND state = 'in_flight'",
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
                f"UPDATE {T_OUTBOX} SET state = 'rejected', finished_at = %s, updated_at = %s, "
                f"lease_expires_at = NULL, last_error = CASE id {reasons} END "
                f"WHERE id IN ({_ids([r for r, _ in rejected])})",
                [adapt(now), adapt(now), *[x for r, o in rejected for x in (r[0], o.reason[:1000])]],
            )
        )
    with transaction.atomic(), db.cursor() as cursor:
        if result.fault is not None:
            _give_back(cursor, rows, now, refund=True)
        elif retry:
            failed = _retry(cursor, retry, now)
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
            last_error = redact.member_reason(outcome.reason, conn.partner, row[1], row[2])
        sets = (
            "sent_count = sent_count + %s, accepted_count = accepted_count + %s, "
            "rejected_count = rejected_count + %s, failed_count = failed_count + %s, last_delivery_at = %s"
        )
        params = [0 if result.fault else len(rows), len(accepted), len(rejected), failed, adapt(now)]
        if last_error:
            sets += ", last_error = %s, last_error_at = %s, last_error_resolved_at = NULL"
            params += [last_error[:1000], adapt(now)]
        elif accepted:
            # The first batch accepted after an error turns it into history (connections/last_problem.py).
            sets += (
                ", last_error_resolved_at = CASE WHEN last_error <> '' AND last_error_resolved_at IS NULL "
                "THEN %s ELSE last_error_resolved_at END"
            )
            params += [adapt(now)]
        if result.fault is not None:
            sets += ", status = %s, status_reason = %s"
            params += [Connection.Status.FAULTED, last_error[:1000]]
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
            last_error[:1000],
            "\n".join(
                f"{a.method} {a.path} → {a.status or 'no answer'} ({a.duration_ms} ms) {a.response_excerpt}"
                for a in attempts[-5:]
            )[:4000],
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
        f"SELECT connection_id, profile_id, identity_type, value, action, 'pending', 0, %s, %s, %s, '', "
        f"forget_after_delivery FROM {T_OUTBOX} WHERE id IN ({_ids(rows)}) ON CONFLICT DO NOTHING",
        [adapt(now), adapt(now), adapt(now)],
    )


def _retry(cursor, retry, now) -> int:
    """Back off transient failures; close as failed those past the retry window."""
    adapt = db.ops.adapt_datetimefield_value
    window_start = now - dt.timedelta(hours=settings.RETRY_WINDOW_HOURS)
    expired = [(r, o) for r, o in retry if _aware(r[5]) < window_start]
    live = [(r, o) for r, o in retry if _aware(r[5]) >= window_start]
    if expired:
        cursor.execute(
            f"UPDATE {T_OUTBOX} SET state = 'failed', finished_at = %s, updated_at = %s, lease_expires_at = NULL, "
            f"last_error = %s WHERE id IN ({_ids([r for r, _ in expired])})",
            [adapt(now), adapt(now), f"Gave up after {settings.RETRY_WINDOW_HOURS:g} hours: {expired[-1][1].reason}"],
        )
    if live:
        whens = " ".join("WHEN %s THEN %s" for _ in live)
        errors = " ".join("WHEN %s THEN %s" for _ in live)
        params = [
            x for r, o in live for x in (r[0], adapt(now + dt.timedelta(seconds=backoff_seconds(r[4], o.retry_after))))
        ]
        params += [x for r, o in live for x in (r[0], o.reason[:1000])]
        _close_replaced(cursor, [r for r, _ in live], now)
        cursor.execute(
            f"UPDATE {T_OUTBOX} SET state = 'pending', lease_expires_at = NULL, updated_at = %s, "
            f"next_attempt_at = CASE id {whens} END, last_error = CASE id {errors} END "
            f"WHERE id IN ({_ids([r for r, _ in live])}) AND state = 'in_flight'",
            [adapt(now), *params],
        )
    return len(expired)


def _close_replaced(cursor, rows, now) -> None:
    """A message that a newer one replaced while it was in flight is closed: the newer one carries the state."""
    adapt = db.ops.adapt_datetimefield_value
    cursor.execute(
        f"UPDATE {T_OUTBOX} SET state = 'replaced', finished_at = %s, lease_expires_at = NULL "
        f"WHERE id IN ({_ids(rows)}) AND state = 'in_flight' AND EXISTS (SELECT 1 FROM {T_OUTBOX} p "
        f"WHERE p.connection_id = {T_OUTBOX}.connection_id AND p.identity_type = {T_OUTBOX}.identity_type "
        f"AND p.value = {T_OUTBOX}.value AND p.state = 'pending')",
        [adapt(now)],
    )


def _give_back(cursor, rows, now, refund: bool) -> None:
    """Return a batch to the queue untouched (a fault stopped it): it goes out when the connection resumes."""
    adapt = db.ops.adapt_datetimefield_value
    _close_replaced(cursor, rows, now)
    cursor.execute(
        f"UPDATE {T_OUTBOX} SET state = 'pending', lease_expires_at = NULL, next_attempt_at = %s, updated_at = %s"
        f"{', attempts = attempts - 1' if refund else ''} WHERE id IN ({_ids(rows)}) AND state = 'in_flight'",
        [adapt(now), adapt(now)],
    )


def _aware(value):
    if isinstance(value, float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if timezone.is_naive(value):
        value = timezone.make_aware(value, dt.UTC)
    return value


def claim_size(partner) -> int:
    """Messages one lane claims at a time: as many of the partner's requests as make up CLAIM_MESSAGES.

    A claim and its record cost the same three statements whatever they hold, so a partner with small
    requests (Braze: 75) would otherwise spend more time in the database than on the wire. The lane sends a
    claim's requests one after the other, so a claim never puts more requests in the air than one slot.
    """
    per_request = max(1, partner.batch_size)
    return per_request * max(1, settings.CLAIM_MESSAGES // per_request)


def send_batch(conn: Connection, account, rows) -> tuple[SendResult, list]:
    """The partner's answer for the batch, and the rows to queue again once it is recorded.

    Where the partner replaces a shared list whole (a Braze string attribute), each message carries the
    member's current list, read in one query for the batch. Two connections writing one member's list at once
    could each read it before the other's change: whichever write lands last wins, and may be the older list.
    So the lists are read again once the partner has answered, and a member whose list changed meanwhile is
    queued again: its next write reads the list after every change that could have raced it.
    """
    partner = conn.partner
    shared = partner.shared_list(conn.output.settings, conn.settings)
    whole = shared if shared is not None and shared.whole else None
    identities = {(r[1], r[2]) for r in rows}
    lists = shared_lists.current_audiences(conn, whole, identities) if whole else {}
    messages = [
        Message(r[0], r[3], r[1], r[2], conn.audience.name, lists.get((r[1], r[2]), ()) if whole else None)
        for r in rows
    ]
    result = _send(partner, account, conn, messages)
    again = []
    if whole and result.fault is None:
        after = shared_lists.current_audiences(conn, whole, identities)
        again = [
            r
            for r in rows
            if (result.outcomes.get(r[0]) or Outcome("retry")).status == "accepted"
            and after.get((r[1], r[2]), ()) != lists.get((r[1], r[2]), ())
        ]
    return result, again


def _send(partner, account, conn: Connection, messages) -> SendResult:
    try:
        return partner.send(account, conn.settings, messages)
    except TransportError as exc:
        result = SendResult()
        result.mark_all(messages, Outcome("retry", str(exc)))
        return result
    except Exception:
        # A bug or an answer the partner module could not read: retry later,
        # keep the traceback in the logs (never the payload).
        log.exception("Partner module %s failed on a batch of connection %s", partner.slug, conn.pk)
        result = SendResult()
        result.mark_all(messages, Outcome("retry", f"{partner.name} gave an answer Audience Relay could not read."))
        return result


def _configuration_fault(conn: Connection, problem: str) -> str:
    """Stop a connection whose output cannot be used as configured; its messages wait, untouched, for a resume."""
    now = timezone.now()
    Connection.objects.filter(pk=conn.pk, status__in=SENDING).update(
        status=Connection.Status.FAULTED,
        status_reason=problem[:1000],
        last_error=problem[:1000],
        last_error_at=now,
        last_error_resolved_at=None,
    )
    log.warning("Connection %s stopped: the secrets of output %s cannot be decrypted", conn.pk, conn.output_id)
    return problem


def drain(connection_id: int, max_seconds: float | None = None, progress=None) -> DrainReport:
    """Send everything due for one connection, in parallel up to the output's slot allowance."""
    started = time.monotonic()
    deadline = started + (max_seconds or settings.DRAIN_MAX_SECONDS)
    report = DrainReport(worker=f"{socket.gethostname()}:{os.getpid()}")
    conn = Connection.objects.select_related("output", "audience").get(pk=connection_id)
    Connection.objects.filter(pk=conn.pk).update(drain_queued_at=None)
    if conn.status not in SENDING:
        return report
    partner = conn.partner
    try:
        # Before taking any of the output's slots: an output whose secrets cannot be read (a key rotation gone
        # wrong) must not hold them from its other connections.
        account = conn.output.account()
    except SecretsUnreadable as exc:
        report.fault = _configuration_fault(conn, str(exc))
        return report
    # One name per drain, so that two drains in one thread (one after the other) never pass for each other.
    holder = f"{uuid.uuid4().hex[:12]} {worker_name()}"[:100]
    slots = []
    wait_until = time.monotonic() + settings.SLOT_WAIT_SECONDS
    while not slots:
        since = time.monotonic()
        slots = output_slots.acquire(conn.output, partner.max_concurrency, holder, settings.OUTBOX_LEASE_SECONDS)
        if slots or time.monotonic() >= wait_until:
            break
        time.sleep(0.25)  # other connections of this output hold every slot; they give them back per drain
    if not slots:
        report.more_due = True  # every slot busy with other connections of this output: try again soon
        return report
    with output_slots.Lease(slots, holder, settings.OUTBOX_LEASE_SECONDS, since) as lease:
        _send_all(conn, account, lease, slots, deadline, report, progress)
    report.seconds = time.monotonic() - started
    # A lane that lost its slot left work behind, as does the deadline: a successor drain takes it.
    report.more_due = not report.fault and (report.more_due or time.monotonic() >= deadline)
    return report


def _send_all(
    conn: Connection, account, lease, slots: list[int], deadline: float, report: DrainReport, progress
) -> None:
    """Run one lane per leased slot, as work shows up, until the queue is empty, a fault, or the deadline."""
    partner = conn.partner
    pace = output_slots.interval(conn.output)
    stop = threading.Event()
    # Lanes start as work shows up: the first runs in this thread, and every full batch a lane claims puts
    # another leased slot to work in a pool thread. A drain of one message (a profile update) costs one
    # lane and one database connection; a backlog has every slot busy within a few batches.
    idle = list(slots[1:])
    pool = ThreadPoolExecutor(max_workers=len(idle), thread_name_prefix=f"drain-{conn.pk}") if idle else None
    futures = []
    widening = threading.Lock()
    closing = threading.Event()

    def widen():
        with widening:
            while idle and not lease.holds(idle[0]):
                idle.pop(0)  # lost to another drain while it waited here
            if idle and not closing.is_set() and not stop.is_set():
                futures.append(pool.submit(lane, idle.pop(0), True))

    size = claim_size(partner)

    def lane(slot, pooled=False):
        next_at = time.monotonic()
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                if not lease.holds(slot):
                    # The lease ran out (a stall) and another drain may have the slot: sending on it would put
                    # one request more in the air than the partner allows. What is left waits for the next drain.
                    report.more_due = True
                    return
                rows = claim(conn.pk, size)
                if not rows:
                    return
                if len(rows) >= size:
                    widen()
                if pace:
                    # The rate limit counts requests: a claim of several requests waits for all of them.
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    next_at = time.monotonic() + pace * -(-len(rows) // max(1, partner.batch_size))
                t0, at = time.monotonic(), timezone.now()
                result, again = send_batch(conn, account, rows)
                counts = record(conn, rows, result, t0, at, again)
                report.add(counts)
                if progress:
                    progress(counts)
                if result.fault is not None:
                    report.fault = f"{result.fault.message} {result.fault.hint}".strip()
                    stop.set()
                elif counts["retried"] == len(rows):
                    # The partner is struggling (down, throttling): stop here rather than
                    # hammer it; the retries' schedule wakes this connection when they are due.
                    stop.set()
        finally:
            if pooled:
                db.close()  # a pool thread's own connection: give it back rather than leave it open

    try:
        lane(slots[0])
    finally:
        with widening:
            closing.set()
        if pool is not None:
            pool.shutdown(wait=True)
    for future in futures:
        future.result()  # a lane's exception is the drain's
