"""Per-output concurrency and rate, enforced across every worker on every machine.

Each output has as many slot rows as its partner allows simultaneous
requests. A drain leases slots before it sends and sends at most one request
at a time per slot; each slot is paced to its share of the partner's rate.
"""

import datetime as dt

from django.db import connection as db
from django.db import transaction
from django.utils import timezone

from connections.models import OutputSlot

T_SLOT = OutputSlot._meta.db_table


def acquire(output, want: int, holder: str, lease_seconds: int) -> list[OutputSlot]:
    """Lease up to `want` free slots of `output` (fewer, or none, when other workers hold them)."""
    limit = max(1, output.partner.max_concurrency)
    now = timezone.now()
    with transaction.atomic():
        OutputSlot.objects.bulk_create([OutputSlot(output=output, slot=n) for n in range(limit)], ignore_conflicts=True)
        free = OutputSlot.objects.filter(output=output, slot__lt=limit).exclude(lease_expires_at__gte=now)
        if db.vendor == "postgresql":
            free = free.select_for_update(skip_locked=True)
        slots = list(free.order_by("slot")[:want])
        OutputSlot.objects.filter(pk__in=[s.pk for s in slots]).update(
            holder=holder, lease_expires_at=now + dt.timedelta(seconds=lease_seconds)
        )
    return slots


def renew(slots, lease_seconds: int) -> None:
    until = timezone.now() + dt.timedelta(seconds=lease_seconds)
    OutputSlot.objects.filter(pk__in=[s.pk for s in slots]).update(lease_expires_at=until)


def release(slots) -> None:
    for slot in slots:
        OutputSlot.objects.filter(pk=slot.pk).update(
            holder="", lease_expires_at=None, next_request_at=slot.next_request_at
        )


def interval(output) -> float:
    """Seconds between two requests on one slot so that all slots together respect the rate limit."""
    rate = output.partner.requests_per_second
    return max(1, output.partner.max_concurrency) / rate if rate else 0.0
