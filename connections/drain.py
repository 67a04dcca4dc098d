"""The drain: send everything due for one connection through its partner, in lanes, one per request slot.

A drain leases the output's request slots (connections.slots), runs one lane per slot it got, each lane
claiming a batch (connections.outbox), sending it through the partner module, recording the outcomes, and
pacing itself to the partner's rate limit, until nothing is due, a fault stops the connection, or the
deadline passes.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection as db
from django.utils import timezone

from connections import outbox, policy, shared_lists
from connections import slots as output_slots
from connections.models import Connection, OutputSlot
from connections.outbox import ACTION, ID, TYPE, VALUE
from outputs.crypto import SecretsUnreadable
from outputs.partners.base import Message, Outcome, SendResult
from outputs.partners.http import TransportError

log = logging.getLogger(__name__)

# While other connections of the output hold every slot, a drain asks again this often, for at most
# SLOT_WAIT_SECONDS: they give slots back at the end of each of their drains.
SLOT_POLL_SECONDS = 0.25
# Hex digits of the random part of a drain's name: enough to tell two drains of one thread apart.
DRAIN_ID_CHARS = 12
HOLDER_CHARS = OutputSlot._meta.get_field("holder").max_length
# How often a running drain asks whether another connection's drain is waiting for a worker.
HANDOVER_CHECK_SECONDS = 0.2


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

    def as_dict(self) -> dict:
        """The report as the drain task returns it (django-q2 stores it as the task's result)."""
        return {k: v for k, v in self.__dict__.items() if k != "lock"}


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


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
    source = conn.source_name  # read once: per message it was a related-object lookup each time
    if whole:
        identities = {(r[TYPE], r[VALUE]) for r in rows}
        lists = shared_lists.current_audiences(conn, whole, identities)
        messages = [
            Message(r[ID], r[ACTION], r[TYPE], r[VALUE], source, lists.get((r[TYPE], r[VALUE]), ())) for r in rows
        ]
    else:
        lists = {}
        messages = [Message(r[ID], r[ACTION], r[TYPE], r[VALUE], source) for r in rows]
    result = _send(partner, account, conn, messages)
    again = []
    if whole and result.fault is None:
        after = shared_lists.current_audiences(conn, whole, identities)
        again = [
            r
            for r in rows
            if (result.outcomes.get(r[ID]) or Outcome("retry")).status == "accepted"
            and after.get((r[TYPE], r[VALUE]), ()) != lists.get((r[TYPE], r[VALUE]), ())
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
    Connection.objects.filter(pk=conn.pk, status__in=policy.SENDING).update(
        status=Connection.Status.FAULTED,
        status_reason=problem[: outbox.STATUS_REASON_CHARS],
        last_error=problem[: outbox.CONNECTION_ERROR_CHARS],
        last_error_at=now,
        last_error_resolved_at=None,
    )
    log.warning("Connection %s stopped: the secrets of output %s cannot be decrypted", conn.pk, conn.output_id)
    return problem


@functools.cache
def _freeze_long_lived() -> None:
    """Take what is alive when a process first drains (Django, the apps, the partner modules, ~100,000 objects
    that live as long as the process) out of the garbage collector's full passes, once per process.

    A drain makes and drops objects by the hundred thousand, so the collector runs a full pass every
    25,000 messages or so, walking every live object while it holds the GIL and every lane waits: measured
    0.25-0.5 s of a 4.5 s drain of 50,000 Mailchimp messages, 0.01 s once frozen. Frozen objects are still
    freed as usual when nothing refers to them; only a reference cycle among them would now stay.
    """
    gc.freeze()


def drain(connection_id: int, max_seconds: float | None = None, progress=None, handover=None) -> DrainReport:
    """Send everything due for one connection, in parallel up to the output's slot allowance.

    `handover`, when given, is asked between batches (once DRAIN_HANDOVER_SECONDS have passed, then at most every
    HANDOVER_CHECK_SECONDS) whether another connection's drain is waiting for this worker; if so the drain stops
    after the batches in flight and reports `more_due`, so its successor queues behind the waiting one.
    """
    _freeze_long_lived()
    started = time.monotonic()
    deadline = started + (max_seconds or settings.DRAIN_MAX_SECONDS)
    report = DrainReport(worker=f"{socket.gethostname()}:{os.getpid()}")
    conn = Connection.objects.select_related("output", "audience", "variant").get(pk=connection_id)
    Connection.objects.filter(pk=conn.pk).update(drain_queued_at=None)
    if conn.status not in policy.SENDING:
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
    holder = f"{uuid.uuid4().hex[:DRAIN_ID_CHARS]} {worker_name()}"[:HOLDER_CHARS]
    slots = []
    wait_until = time.monotonic() + settings.SLOT_WAIT_SECONDS
    while not slots:
        since = time.monotonic()
        slots = output_slots.acquire(conn.output, partner.max_concurrency, holder, settings.OUTBOX_LEASE_SECONDS)
        if slots or time.monotonic() >= wait_until:
            break
        time.sleep(SLOT_POLL_SECONDS)
    if not slots:
        report.more_due = True  # every slot busy with other connections of this output: try again soon
        return report
    with output_slots.Lease(slots, holder, settings.OUTBOX_LEASE_SECONDS, since) as lease:
        _send_all(conn, account, lease, slots, deadline, report, progress, _throttled(handover, started))
    report.seconds = time.monotonic() - started
    # A lane that lost its slot left work behind, as does the deadline: a successor drain takes it.
    report.more_due = not report.fault and (report.more_due or time.monotonic() >= deadline)
    return report


def _throttled(handover, started: float):
    """`handover`, asked no sooner than DRAIN_HANDOVER_SECONDS after the drain started and then at most every
    HANDOVER_CHECK_SECONDS whichever lane asks; None when there is nothing to ask."""
    if handover is None:
        return None
    lock = threading.Lock()
    next_at = [started + settings.DRAIN_HANDOVER_SECONDS]

    def due() -> bool:
        with lock:
            if time.monotonic() < next_at[0]:
                return False
            next_at[0] = time.monotonic() + HANDOVER_CHECK_SECONDS
        return bool(handover())

    return due


def _send_all(
    conn: Connection,
    account,
    lease,
    slots: list[int],
    deadline: float,
    report: DrainReport,
    progress,
    handover=None,
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
                if handover is not None and handover():
                    # Another connection's change waits for a worker: hand this one over, go on after it.
                    report.more_due = True
                    stop.set()
                    return
                rows = outbox.claim(conn.pk, size)
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
                counts = outbox.record(conn, rows, result, t0, at, again)
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
