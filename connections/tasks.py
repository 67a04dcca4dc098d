"""django-q2 entry points. Thin: they take IDs and call the drain, the outbox, the policy and the services."""

import datetime as dt
import logging
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from connections import outbox, policy, refresh, reverify, services, verification
from connections.drain import drain
from connections.models import Connection

log = logging.getLogger(__name__)

# A drain queued this long ago and not started yet no longer blocks a new one. The broker may have lost it (a
# killed cluster had taken it off the queue, the Redis broker forgets it); nothing tells a lost task from one
# still waiting behind busy workers, so the marker is a lease shorter than the sweep's minute and the next
# sweep queues the connection again. If the first was only waiting, both run: claims and slots keep them from
# sending anything twice, and the later one usually finds nothing due. A spare drain costs a little work; a
# lost one cost a connection stalled for ten minutes.
QUEUED_DRAIN_LEASE = dt.timedelta(seconds=30)


def request_drain(connection_ids, force: bool = False) -> list[int]:
    """Queue one drain task per connection, unless one is already waiting (deduplicated in the database).

    Realtime connections drain as soon as their messages commit; interval ones
    only when forced (sync now) or when the sweep finds their upload due.
    """
    from django_q.tasks import async_task

    now = timezone.now()
    eligible = Connection.objects.filter(pk__in=connection_ids, status__in=policy.SENDING)
    if not force:
        eligible = eligible.filter(
            Q(delivery_mode=Connection.Mode.REALTIME) | Q(status=Connection.Status.DISCONNECTING)
        )
    queued = []
    for pk in eligible.values_list("pk", flat=True):
        # The conditional UPDATE is the lock: only one caller flips it.
        fresh = Connection.objects.filter(pk=pk).filter(
            Q(drain_queued_at__isnull=True) | Q(drain_queued_at__lt=now - QUEUED_DRAIN_LEASE)
        )
        if fresh.update(drain_queued_at=now):
            async_task("connections.tasks.drain_connection", pk, task_name=f"drain-{pk}-{now.timestamp():.3f}")
            queued.append(pk)
    return queued


def others_waiting(connection_id: int) -> bool:
    """Whether another connection's drain has waited DRAIN_HANDOVER_SECONDS for a worker (queued, not started).

    A drain clears its connection's `drain_queued_at` when it starts, and a free worker starts a queued drain
    within the broker's poll: one still queued after that waits because every worker is busy.
    """
    now = timezone.now()
    return (
        Connection.objects.filter(
            drain_queued_at__lte=now - dt.timedelta(seconds=settings.DRAIN_HANDOVER_SECONDS),
            drain_queued_at__gt=now - QUEUED_DRAIN_LEASE,
        )
        .exclude(pk=connection_id)
        .exists()
    )


def drain_connection(connection_id: int) -> dict:
    try:
        report = drain(connection_id, handover=lambda: others_waiting(connection_id))
    except Connection.DoesNotExist:
        return {}
    conn = Connection.objects.filter(pk=connection_id).select_related("output").first()
    if conn is None:
        return {}
    if report.batches and conn.delivery_mode == Connection.Mode.INTERVAL:
        Connection.objects.filter(pk=conn.pk).update(last_upload_at=timezone.now())
    if conn.status == Connection.Status.DISCONNECTING and services.finish_disconnect(conn):
        log.info("Connection %s disconnected after removing its members from the partner.", connection_id)
        return report.as_dict()
    if report.more_due:
        request_drain([connection_id], force=True)
    else:
        waiting = policy.earliest_retry(conn)  # one query for both: wait for it here, or leave it to a schedule
        wait = policy.retry_wait(bool(report.batches), waiting)
        if wait is not None:
            time.sleep(wait)
            request_drain([conn.pk], force=True)
        else:
            _schedule_retry(conn, waiting.first)
    if report.fault:
        log.warning("Connection %s faulted: %s", connection_id, report.fault)
        _after_fault(conn)
    else:
        reverify.delivered(conn, report.accepted)
    return report.as_dict()


def _after_fault(conn) -> None:
    hook = getattr(settings, "CONNECTION_FAULT_HOOK", None)
    if hook:
        from django.utils.module_loading import import_string

        import_string(hook)(conn)


def _schedule_retry(conn, due) -> None:
    """Messages backing off: wake a drain when the earliest is due (a one-off django-q2 schedule)."""
    from django_q.models import Schedule

    if due is None:
        return
    name = f"Retry connection {conn.pk}"
    Schedule.objects.update_or_create(
        name=name,
        defaults={
            "func": "connections.tasks.request_drain",
            "args": repr([conn.pk]),
            "schedule_type": Schedule.ONCE,
            "next_run": max(due, timezone.now()),
            "repeats": 1,
        },
    )


def sweep() -> list[int]:
    """Every minute: realtime connections with due messages and nothing queued; interval uploads that are due."""
    return request_drain(policy.ready_to_drain(), force=True)


def prune() -> int:
    """Delete finished messages and delivery records past OUTBOX_KEEP_DAYS; the connection's counters keep totals.

    Both hold identities or partner answers about them, so they are kept no longer than troubleshooting needs.
    """
    cutoff = timezone.now() - dt.timedelta(days=settings.OUTBOX_KEEP_DAYS)
    return outbox.prune(cutoff, refreshing=[conn.pk for conn, _ in refresh.refreshing_connections()])


# --- verification -------------------------------------------------------------------------------------------


def queue_verification(connection_id: int) -> None:
    """Verify the connection in a worker once the current transaction commits (never for a rolled-back one)."""
    from django_q.tasks import async_task

    transaction.on_commit(
        lambda: async_task("connections.tasks.verify_connection", connection_id, task_name=f"verify-{connection_id}")
    )


def verify_after_fault(conn) -> None:
    """CONNECTION_FAULT_HOOK: a connection that just faulted is verified, so its page says what to do."""
    reverify.changed([conn.pk])


def verify_connection(connection_id: int) -> str | None:
    conn = Connection.objects.select_related("audience", "variant", "output").filter(pk=connection_id).first()
    if conn is None:
        return None
    status, _ = verification.verify(conn)
    return status


def verify_all() -> list[int]:
    """The "Verify connections" schedule: one task per connection, so a slow partner holds up only its own."""
    conns = Connection.objects.exclude(status=Connection.Status.DISCONNECTING).order_by("pk")
    ids = list(conns.values_list("pk", flat=True))
    for pk in ids:
        queue_verification(pk)
    return ids
