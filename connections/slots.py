"""Per-output concurrency, enforced across every worker on every machine, for as long as a drain runs.

Each output has as many slot rows as its partner allows simultaneous requests. A drain leases slots before
it sends and sends at most one request at a time per slot. The lease is short (OUTBOX_LEASE_SECONDS), so a
killed worker's slots come back soon, and the drain renews it while it runs (`Lease`), so a drain longer
than the lease keeps its slots and nobody else gets in. A slot is only ever written by its holder: renewal
and release match on the holder, so a drain whose lease ran out (it stalled) can neither extend nor free a
slot another drain has since taken; it learns at its next renewal that the slot is lost and stops using it.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager

from django.conf import settings
from django.db import connection as db
from django.db import transaction
from django.utils import timezone

from connections.models import OutputSlot
from outputs.hooks import SlotsBusy

log = logging.getLogger(__name__)

# While drains hold every slot, a check asks again this often, for at most SLOT_WAIT_SECONDS.
POLL_SECONDS = 0.25
HOLDER_CHARS = OutputSlot._meta.get_field("holder").max_length


def acquire(output, want: int, holder: str, lease_seconds: float, now=None) -> list[int]:
    """Lease up to `want` free slots of `output` (fewer, or none, when other workers hold them); their ids."""
    limit = max(1, output.partner.max_concurrency)
    now = now or timezone.now()
    with transaction.atomic():
        OutputSlot.objects.bulk_create([OutputSlot(output=output, slot=n) for n in range(limit)], ignore_conflicts=True)
        free = OutputSlot.objects.filter(output=output, slot__lt=limit).exclude(lease_expires_at__gte=now)
        if db.vendor == "postgresql":
            free = free.select_for_update(skip_locked=True)
        ids = list(free.order_by("slot").values_list("pk", flat=True)[:want])
        OutputSlot.objects.filter(pk__in=ids).update(
            holder=holder, lease_expires_at=now + dt.timedelta(seconds=lease_seconds)
        )
    return ids


def renew(ids, holder: str, lease_seconds: float, now=None) -> set[int]:
    """Extend the lease of the slots `holder` still holds among `ids`; returns those (the others were lost)."""
    ids = set(ids)
    if not ids:
        return ids
    until = (now or timezone.now()) + dt.timedelta(seconds=lease_seconds)
    mine = OutputSlot.objects.filter(pk__in=ids, holder=holder)
    if mine.update(lease_expires_at=until) == len(ids):
        return ids
    return set(mine.values_list("pk", flat=True))  # rare: a stall let another drain in; find which


def release(ids, holder: str) -> None:
    """Free the slots `holder` still holds; one another drain took after our lease ran out stays its."""
    OutputSlot.objects.filter(pk__in=list(ids), holder=holder).update(holder="", lease_expires_at=None)


def interval(output) -> float:
    """Seconds between two requests on one slot so that all slots together respect the rate limit."""
    rate = output.partner.requests_per_second
    return max(1, output.partner.max_concurrency) / rate if rate else 0.0


class Lease:
    """The slots one drain holds, renewed every third of the lease by a thread of its own while the drain runs.

    Renewing from a thread rather than between batches keeps a slot held through a slow request (a claim of
    several requests, each up to PARTNER_HTTP_TIMEOUT), costs one UPDATE per third of a lease for all the
    drain's slots whatever it sends, and leaves a renewal that failed once two more chances before the
    lease ends. Lanes ask `holds(slot)` before each claim: an in-memory check, no query.
    """

    def __init__(self, ids, holder: str, seconds: float, since: float):
        self.holder, self.seconds = holder, seconds
        self._held = set(ids)
        self._valid_until = since + seconds  # monotonic; `since` is taken before the acquire's UPDATE
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_until_stopped, name=f"slots-{holder[:12]}", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        with self._lock:
            held, self._held = self._held, set()
        release(held, self.holder)
        return False

    def holds(self, slot: int) -> bool:
        with self._lock:
            return slot in self._held and time.monotonic() < self._valid_until

    def _renew_until_stopped(self):
        try:
            while not self._stop.wait(self.seconds / 3):
                started = time.monotonic()
                with self._lock:
                    ids = set(self._held)
                try:
                    kept = renew(ids, self.holder, self.seconds)
                except Exception:  # the database is away: the lanes stop by themselves when the lease runs out
                    log.warning("Could not renew the request slots of drain %s", self.holder, exc_info=True)
                    continue
                if kept != ids:
                    log.warning("Drain %s lost %d request slot(s) to another drain", self.holder, len(ids - kept))
                with self._lock:
                    self._held &= kept
                    self._valid_until = started + self.seconds
        finally:
            db.close()  # this thread's own database connection


@contextmanager
def one(output):
    """Hold one of the output's request slots around a request made outside a drain (a verification, a
    credentials check), waiting up to SLOT_WAIT_SECONDS for drains to free one; SlotsBusy when none did."""
    if output.pk is None:  # an output being tried before it is saved: no forwarding shares it yet
        yield
        return
    holder = f"check {uuid.uuid4().hex[:12]} {socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    holder = holder[:HOLDER_CHARS]
    give_up = time.monotonic() + settings.SLOT_WAIT_SECONDS
    while True:
        since = time.monotonic()
        ids = acquire(output, 1, holder, settings.OUTBOX_LEASE_SECONDS)
        if ids or time.monotonic() >= give_up:
            break
        time.sleep(POLL_SECONDS)
    if not ids:
        limit = max(1, output.partner.max_concurrency)
        raise SlotsBusy(
            f"forwarding kept all {limit} of {output.partner.name}'s simultaneous requests busy for "
            f"{settings.SLOT_WAIT_SECONDS:g} seconds; it is checked again at the next verification."
        )
    with Lease(ids, holder, settings.OUTBOX_LEASE_SECONDS, since):
        yield
