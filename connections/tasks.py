"""django-q2 entry points. Thin: they take IDs and call the engine and services."""

import datetime as dt
import logging
import time

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, Min, OuterRef, Q
from django.utils import timezone

from connections import engine, refresh, reverify, services, verification
from connections.models import Connection, Delivery, OutboxMessage

log = logging.getLogger(__name__)

STALE_QUEUE = dt.timedelta(minutes=10)
RETRY_WAIT_SECONDS = 5  # a worker waits this long at most for a retry rather than leave it to the scheduler


def request_drain(connection_ids, force: bool = False) -> list[int]:
    """Queue one drain task per connection, unless one is already waiting (deduplicated in the database).

    Realtime connections drain as soon as their messages commit; interval ones
    only when forced (sync now) or when the sweep finds their upload due.
    """
    from django_q.tasks import async_task

    now = timezone.now()
    eligible = Connection.objects.filter(pk__in=connection_ids, status__in=engine.SENDING)
    if not force:
        eligible = eligible.filter(Q(delivery_mode="realtime") | Q(status="disconnecting"))
    queued = []
    for pk in eligible.values_list("pk", flat=True):
        # The conditional UPDATE is the lock: only one caller flips it.
        fresh = Connection.objects.filter(pk=pk).filter(
            Q(drain_queued_at__isnull=True) | Q(drain_queued_at__lt=now - STALE_QUEUE)
        )
        if fresh.update(drain_queued_at=now):
            async_task("connections.tasks.drain_connection", pk, task_name=f"drain-{pk}-{now.timestamp():.3f}")
            queued.append(pk)
    return queued


def drain_connection(connection_id: int) -> dict:
    try:
        report = engine.drain(connection_id)
    except Connection.DoesNotExist:
        return {}
    conn = Connection.objects.filter(pk=connection_id).select_related("output").first()
    if conn is None:
        return {}
    if report.batches and conn.delivery_mode == Connection.Mode.INTERVAL:
        Connection.objects.filter(pk=conn.pk).update(last_upload_at=timezone.now())
    if conn.status == Connection.Status.DISCONNECTING and services.finish_disconnect(conn):
        log.info("Connection %s disconnected after removing its members from the partner.", connection_id)
        return report_dict(report)
    if report.more_due:
        request_drain([connection_id], force=True)
    else:
        due = _earliest_retry(conn)  # one query for both: wait for it here, or leave it to a schedule
        if not _wait_for_retry(conn, report, due):
            _schedule_retry(conn, due)
    if report.fault:
        log.warning("Connection %s faulted: %s", connection_id, report.fault)
        _after_fault(conn)
    else:
        reverify.delivered(conn, report.accepted)
    return report_dict(report)


def report_dict(report) -> dict:
    return {k: v for k, v in report.__dict__.items() if k != "lock"}


def _after_fault(conn) -> None:
    hook = getattr(settings, "CONNECTION_FAULT_HOOK", None)
    if hook:
        from django.utils.module_loading import import_string

        import_string(hook)(conn)


def _wait_for_retry(conn, report, due) -> bool:
    """After a drain that sent something, a retry due within RETRY_WAIT_SECONDS is waited for here and the
    drain queued again; django-q2's scheduler looks at one-off schedules only every 30 seconds, which turned
    a backoff of 0.2-5 s into a stall of up to 30 s (most of the time to drain when 30% of requests fail).

    The worker pauses at least RETRY_BASE_SECONDS (the partner was struggling: no hammering), and a drain
    that sent nothing (messages not due, or waiting behind an older one in flight) is left to the schedule.
    """
    if not report.batches or due is None:
        return False
    wait = max((due - timezone.now()).total_seconds(), min(settings.RETRY_BASE_SECONDS, RETRY_WAIT_SECONDS))
    if wait > RETRY_WAIT_SECONDS:
        return False
    time.sleep(wait)
    request_drain([conn.pk], force=True)
    return True


def _earliest_retry(conn):
    """When the first message backing off is due, for an active realtime connection; None otherwise."""
    if conn.delivery_mode != Connection.Mode.REALTIME or conn.status != Connection.Status.ACTIVE:
        return None
    return OutboxMessage.objects.filter(connection=conn, state="pending").aggregate(at=Min("next_attempt_at"))["at"]


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
    now = timezone.now()
    due = OutboxMessage.objects.filter(connection=OuterRef("pk"), state="pending", next_attempt_at__lte=now)
    expired = OutboxMessage.objects.filter(connection=OuterRef("pk"), state="in_flight", lease_expires_at__lt=now)
    candidates = Connection.objects.filter(status__in=engine.SENDING).filter(Exists(due) | Exists(expired))
    ready = []
    for conn in candidates:
        if conn.delivery_mode == "realtime" or conn.status == Connection.Status.DISCONNECTING or upload_due(conn, now):
            ready.append(conn.pk)
    return request_drain(ready, force=True)


def upload_due(conn, now=None) -> bool:
    """Interval connections upload every N minutes, or as soon as N messages are waiting."""
    now = now or timezone.now()
    waiting = OutboxMessage.objects.filter(connection=conn, state="pending", next_attempt_at__lte=now)
    if conn.interval_messages and waiting.count() >= conn.interval_messages:
        return True
    last = conn.last_upload_at or conn.created_at
    return bool(conn.interval_minutes) and now - last >= dt.timedelta(minutes=conn.interval_minutes)


def prune() -> int:
    """Delete finished messages and delivery records past OUTBOX_KEEP_DAYS; the connection's counters keep totals.

    Both hold identities or partner answers about them, so they are kept no longer than troubleshooting needs.
    """
    cutoff = timezone.now() - dt.timedelta(days=settings.OUTBOX_KEEP_DAYS)
    finished = ["delivered", "rejected", "failed", "replaced"]
    old = OutboxMessage.objects.filter(state__in=finished, finished_at__lt=cutoff)
    # Where the partner expires members, a member's newest delivered add says when it must be sent again
    # (connections.refresh): it stays until a newer add or a remove is delivered.
    refreshing = [conn.pk for conn, _ in refresh.refreshing_connections()]
    newer = OutboxMessage.objects.filter(
        connection_id=OuterRef("connection_id"),
        identity_type=OuterRef("identity_type"),
        value=OuterRef("value"),
        state="delivered",
        pk__gt=OuterRef("pk"),
    )
    old = old.exclude(Q(connection_id__in=refreshing, state="delivered", action="add") & ~Exists(newer))
    deleted, _ = old.delete()
    deliveries, _ = Delivery.objects.filter(started_at__lt=cutoff).delete()
    return deleted + deliveries


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
    conn = Connection.objects.select_related("audience", "output").filter(pk=connection_id).first()
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
