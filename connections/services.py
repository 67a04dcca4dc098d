"""Connection operations: one implementation behind the admin, the API, the commands and the tasks."""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from connections import fanout, reverify
from connections.models import Connection, OutboxMessage
from outputs import schema


def clean_connection(output, data: dict, mode: str | None, minutes, messages, existing: Connection | None = None):
    """Validated connection settings and delivery mode; ValidationError keyed by field."""
    partner = output.partner
    errors = {}
    try:
        cleaned = schema.clean_settings(
            partner.connection_settings, data, existing=existing.settings if existing else None
        )
    except ValidationError as exc:
        errors.update({f"settings.{k}": v for k, v in exc.message_dict.items()})
        cleaned = {}
    default = partner.delivery
    mode = mode or (existing.delivery_mode if existing else default.mode)
    if mode not in Connection.Mode.values:
        errors["delivery_mode"] = [f"Must be one of {', '.join(Connection.Mode.values)}."]
    elif mode == "realtime" and default.mode == "interval":
        errors["delivery_mode"] = [f"{partner.name} takes queued uploads at an interval, not realtime messages."]
    # An operator may tighten the partner's upload criteria, never loosen them.
    for name, value, limit in (
        ("interval_minutes", minutes, default.every_minutes),
        ("interval_messages", messages, default.every_messages),
    ):
        if value is not None and limit is not None and not (1 <= value <= limit):
            errors[name] = [f"Must be between 1 and {partner.name}'s {limit:,}."]
    if errors:
        raise ValidationError(errors)
    if mode == "interval":
        minutes = minutes or default.every_minutes
        messages = messages or default.every_messages
        if not minutes and not messages:
            raise ValidationError(
                {"interval_minutes": ["An interval upload needs a period in minutes, a message count, or both."]}
            )
    return cleaned, mode, minutes, messages


def connect(audience, output, settings: dict, mode=None, minutes=None, messages=None) -> Connection:
    """Create the connection and queue the audience's current members (the backfill), atomically."""
    cleaned, mode, minutes, messages = clean_connection(output, settings, mode, minutes, messages)
    with transaction.atomic():
        conn = Connection.objects.create(
            audience=audience,
            output=output,
            settings=cleaned,
            delivery_mode=mode,
            interval_minutes=minutes,
            interval_messages=messages,
        )
        conn.queued_on_connect = fanout.backfill(conn)
        _verify_after_commit(conn)
    return conn


def update_connection(conn: Connection, settings: dict, mode=None, minutes=None, messages=None) -> int:
    """Save new settings or delivery mode; a changed destination gets the current members again (a backfill)."""
    if conn.status == Connection.Status.DISCONNECTING:
        raise ValidationError({"status": ["This connection is being disconnected; it can no longer be changed."]})
    cleaned, mode, minutes, messages = clean_connection(conn.output, settings, mode, minutes, messages, existing=conn)
    moved = _placement(conn.output, cleaned) != _placement(conn.output, conn.settings)
    before = (conn.settings, conn.delivery_mode, conn.interval_minutes, conn.interval_messages)
    changed = before != (cleaned, mode, minutes, messages)
    left = _whole_list_left(conn, cleaned)
    with transaction.atomic():
        conn.settings, conn.delivery_mode = cleaned, mode
        conn.interval_minutes, conn.interval_messages = minutes, messages
        conn.save(update_fields=["settings", "delivery_mode", "interval_minutes", "interval_messages", "updated_at"])
        if changed:
            reverify.changed([conn.pk])
        if left is not None:
            fanout.rewrite_shared_lists(conn, left)
        return fanout.backfill(conn) if moved else 0


def _whole_list_left(conn: Connection, new_settings: dict):
    """The list written whole (a Braze string attribute) that the new settings stop writing, if any."""
    partner, output_settings = conn.partner, conn.output.settings
    old = partner.shared_list(output_settings, conn.settings)
    if old is None or not old.whole:
        return None
    new = partner.shared_list(output_settings, new_settings)
    return old if new is None or new.matching != old.matching else None


def _placement(output, settings: dict) -> dict:
    """The settings that decide where members go at the partner: a change there sends them again."""
    keep = {s.name for s in output.partner.connection_settings if s.backfill_on_change}
    return {k: v for k, v in settings.items() if k in keep}


def _verify_after_commit(conn: Connection) -> None:
    """A new or changed connection is verified at once, so a wrong List ID shows before anything is sent."""
    from connections.tasks import queue_verification

    queue_verification(conn.pk)


def pause(conn: Connection) -> None:
    paused = Connection.objects.filter(pk=conn.pk).exclude(status__in=[Connection.Status.DISCONNECTING, "paused"])
    if paused.update(status=Connection.Status.PAUSED, status_reason="Paused by an operator."):
        reverify.changed([conn.pk])


def resume(conn: Connection) -> None:
    """Back to active: waiting messages (including a faulted batch) go out now, and the verdict is re-checked."""
    stopped = Connection.objects.filter(pk=conn.pk, status__in=[Connection.Status.PAUSED, Connection.Status.FAULTED])
    resumed = stopped.update(status=Connection.Status.ACTIVE, status_reason="")
    fanout._drain_after_commit([conn.pk])
    if resumed:
        reverify.changed([conn.pk])  # queued after the drain, so that it can judge what the drain sent


def sync_now(conn: Connection) -> None:
    """Send what is waiting now, interval or not, backoff or not."""
    OutboxMessage.objects.filter(connection=conn, state=OutboxMessage.State.PENDING).update(
        next_attempt_at=timezone.now()
    )
    from connections.tasks import request_drain

    transaction.on_commit(lambda: request_drain([conn.pk], force=True))


def retry_failed(conn: Connection) -> int:
    """Give failed messages another retry window (rejected ones stay: the partner refused them)."""
    now = timezone.now()
    failed = OutboxMessage.objects.filter(connection=conn, state=OutboxMessage.State.FAILED)
    # A newer pending message for the same identity supersedes the failed one.
    newer = OutboxMessage.objects.filter(
        connection=conn,
        state=OutboxMessage.State.PENDING,
        identity_type=OuterRef("identity_type"),
        value=OuterRef("value"),
    )
    failed.filter(Exists(newer)).update(state=OutboxMessage.State.REPLACED)
    count = failed.update(
        state=OutboxMessage.State.PENDING,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        last_error="",
        finished_at=None,
    )
    if count:
        reverify.changed([conn.pk])  # the "failures" check no longer holds
    fanout._drain_after_commit([conn.pk])
    return count


def disconnect(conn: Connection, remove_from_partner: bool) -> str:
    """Delete the connection, or first queue a remove for every member and delete it once they are sent."""
    with transaction.atomic():
        if not remove_from_partner:
            conn.delete()
            return "deleted"
        Connection.objects.filter(pk=conn.pk).update(
            status=Connection.Status.DISCONNECTING,
            status_reason="Removing the audience's members from the partner before disconnecting.",
        )
        conn.status = Connection.Status.DISCONNECTING
        fanout.backfill(conn, action="remove")
    return "removing"


def finish_disconnect(conn: Connection) -> bool:
    """Delete a disconnecting connection once nothing is waiting or in flight."""
    if conn.status != Connection.Status.DISCONNECTING:
        return False
    if OutboxMessage.objects.filter(connection=conn, state__in=OutboxMessage.WAITING).exists():
        return False
    conn.delete()
    return True


def connections_of(audience=None, output=None):
    qs = Connection.objects.select_related("audience", "output")
    return qs.filter(audience=audience) if audience is not None else qs.filter(output=output)


def describe_connections(connections) -> str:
    return ", ".join(f"'{c.audience.name}' → '{c.output.name}'" for c in connections)
