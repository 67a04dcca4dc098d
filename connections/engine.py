"""The forwarding engine: claim a batch, send it through the partner module, record every outcome.

Per batch: one query claims it (leased, so a dead worker's batch is claimed
again when the lease ends), the partner call, one query per outcome kind, one
for the connection's counters and one for the delivery record.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection as db
from django.db.models import F
from django.utils import timezone

from connections import slots as output_slots
from connections.models import Connection, Delivery, OutboxMessage
from outputs.partners.base import Message, Outcome, SendResult
from outputs.partners.http import TransportError

log = logging.getLogger(__name__)

T_OUTBOX = OutboxMessage._meta.db_table
T_CONN = Connection._meta.db_table
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


def claim(conn_id: int, limit: int, now=None) -> list[tuple]:
    """Lease up to `limit` due messages of a sending connection, oldest first, in one statement.

    Due: pending and past its next attempt, or in flight with an expired lease
    (its worker died). A message waits while an older one for the same identity
    is in flight, so the partner sees an identity's changes in order.
    """
    now = now or timezone.now()
    lease = now + dt.timedelta(seconds=settings.OUTBOX_LEASE_SECONDS)
    adapt = db.ops.adapt_datetimefield_value
    lock = "FOR UPDATE SKIP LOCKED" if db.vendor == "postgresql" else ""
    with db.cursor() as cursor:
        cursor.execute(
            f"UPDATE {T_OUTBOX} SET state = 'in_flight', attempts = attempts + 1, lease_expires_at = %s, "
            f"updated_at = %s WHERE id IN ("
            f"SELECT o.id FROM {T_OUTBOX} o WHERE o.connection_id = %s AND ("
            f"(o.state = 'pending' AND o.next_attempt_at <= %s) OR (o.state = 'in_flight' AND o.lease_expires_at < %s)"
            f") AND NOT EXISTS (SELECT 1 FROM {T_OUTBOX} b WHERE b.connection_id = o.connection_id "
            f"AND b.identity_type = o.identity_type AND b.value = o.value AND b.state = 'in_flight' AND b.id <> o.id "
            f"AND (b.lease_expires_at >= %s OR b.id < o.id)) "
            f"AND EXISTS (SELECT 1 FROM {T_CONN} c WHERE c.id = o.connection_id "
            f"AND c.status IN ('active', 'disconnecting')) "
            f"ORDER BY o.id LIMIT %s {lock}) "
            f"RETURNING id, identity_type, value, action, attempts, created_at, forget_after_delivery",
            [adapt(lease), adapt(now), conn_id, adapt(now), adapt(now), adapt(now), limit],
        )
        rows = cursor.fetchall()
    rows.sort(key=lambda r: r[0])
    return rows


def record(conn: Connection, rows, result: SendResult, started: float, started_at) -> dict:
    """Write every message's outcome, the connection's counters and a delivery record."""
    now = timezone.now()
    adapt = db.ops.adapt_datetimefield_value
    accepted, rejected, retry = [], [], []
    if result.fault is None:
        for row in rows:
            outcome = result.outcomes.get(row[0]) or Outcome("retry", "The partner gave no answer for this message.")
            {"accepted": accepted, "rejected": rejected, "retry": retry}[outcome.status].append((row, outcome))
    failed = 0
    with db.cursor() as cursor:
        if accepted:
            forget = [r for r, _ in accepted if r[6]]
            keep = [r for r, _ in accepted if not r[6]]
            if keep:
                cursor.execute(
                    f"UPDATE {T_OUTBOX} SET state = 'delivered', finished_at = %s, updated_at = %s, "
                    f"lease_expires_at = NULL, last_error = '' WHERE id IN ({_ids(keep)}) AND state = 'in_flight'",
                    [adapt(now), adapt(now)],
                )
            if forget:
                cursor.execute(f"DELETE FROM {T_OUTBOX} WHERE id IN ({_ids(forget)})")
        if rejected:
            reasons = " ".join("WHEN %s THEN %s" for _ in rejected)
            cursor.execute(
                f"UPDATE {T_OUTBOX} SET state = 'rejected', finished_at = %s, updated_at = %s, "
                f"lease_expires_at = NULL, last_error = CASE id {reasons} END "
                f"WHERE id IN ({_ids([r for r, _ in rejected])})",
                [adapt(now), adapt(now), *[x for r, o in rejected for x in (r[0], o.reason[:1000])]],
            )
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
        last_error = (rejected or retry)[-1][1].reason
    updates = {
        "sent_count": F("sent_count") + (0 if result.fault else len(rows)),
        "accepted_count": F("accepted_count") + len(accepted),
        "rejected_count": F("rejected_count") + len(rejected),
        "failed_count": F("failed_count") + failed,
        "last_delivery_at": now,
    }
    if last_error:
        updates.update(last_error=last_error[:1000], last_error_at=now)
    if result.fault is not None:
        updates.update(status=Connection.Status.FAULTED, status_reason=last_error[:1000])
    Connection.objects.filter(pk=conn.pk).update(**updates)
    attempts = result.attempts
    last = attempts[-1] if attempts else None
    Delivery.objects.create(
        connection=conn,
        started_at=started_at,
        duration_ms=int((time.monotonic() - started) * 1000),
        messages=len(rows),
        accepted=len(accepted),
        rejected=len(rejected),
        retried=counts["retried"],
        http_status=last.status if last else None,
        requests=len(attempts),
        error=last_error[:1000],
        response_excerpt="\n".join(
            f"{a.method} {a.path} → {a.status or 'no answer'} ({a.duration_ms} ms) {a.response_excerpt}"
            for a in attempts[-5:]
        )[:4000],
    )
    return counts


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
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if timezone.is_naive(value):
        value = timezone.make_aware(value, dt.UTC)
    return value


def send_batch(conn: Connection, account, rows) -> SendResult:
    partner = conn.partner
    messages = [Message(r[0], r[3], r[1], r[2], conn.audience.name) for r in rows]
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


def drain(connection_id: int, max_seconds: float | None = None, progress=None) -> DrainReport:
    """Send everything due for one connection, in parallel up to the output's slot allowance."""
    started = time.monotonic()
    deadline = started + (max_seconds or settings.DRAIN_MAX_SECONDS)
    report = DrainReport()
    conn = Connection.objects.select_related("output", "audience").get(pk=connection_id)
    Connection.objects.filter(pk=conn.pk).update(drain_queued_at=None)
    if conn.status not in SENDING:
        return report
    partner = conn.partner
    holder = worker_name()
    slots = []
    wait_until = time.monotonic() + settings.SLOT_WAIT_SECONDS
    while not slots:
        slots = output_slots.acquire(conn.output, partner.max_concurrency, holder, settings.OUTBOX_LEASE_SECONDS)
        if slots or time.monotonic() >= wait_until:
            break
        time.sleep(0.25)  # other connections of this output hold every slot; they give them back per drain
    if not slots:
        report.more_due = True  # every slot busy with other connections of this output: try again soon
        return report
    pace = output_slots.interval(conn.output)
    account = conn.output.account()
    stop = threading.Event()

    def lane(slot):
        next_at = time.monotonic()
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                rows = claim(conn.pk, partner.batch_size)
                if not rows:
                    return
                if pace:
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    next_at = time.monotonic() + pace
                t0, at = time.monotonic(), timezone.now()
                result = send_batch(conn, account, rows)
                counts = record(conn, rows, result, t0, at)
                report.add(counts)
                if progress:
                    progress(counts)
                if result.fault is not None:
                    report.fault = f"{result.fault.message} {result.fault.hint}".strip()
                    stop.set()
        finally:
            if threading.current_thread() is not threading.main_thread() and len(slots) > 1:
                db.close()  # a pool thread's own connection: give it back rather than leave it open

    try:
        if len(slots) == 1:
            lane(slots[0])
        else:
            with ThreadPoolExecutor(max_workers=len(slots), thread_name_prefix=f"drain-{conn.pk}") as pool:
                list(pool.map(lane, slots))
    finally:
        output_slots.release(slots)
    report.seconds = time.monotonic() - started
    report.more_due = not report.fault and time.monotonic() >= deadline
    return report
