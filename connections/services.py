"""Connection operations: one implementation behind the admin, the API, the commands and the tasks.

Each operation an operator runs returns the sentence that reports it, so an operator reads the same words at
every door; an operation that does not apply to the connection's state raises `Refused`, saying why.
"""

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from connections import fanout, reverify, verification
from connections import funnel as funnel_mod
from connections.models import Connection, OutboxMessage
from connections.queries import pending_of
from outputs import schema

Status = Connection.Status


class Refused(Exception):
    """The operation does not apply to the connection in its current state; the message says why."""


def label(conn: Connection) -> str:
    return describe_connections([conn])


def _messages(n: int) -> str:
    return f"{n:,} message{'' if n == 1 else 's'}"


def _wait(n: int) -> str:
    """ "1 message waits", "3 messages wait": the subject and its verb agree."""
    return f"{_messages(n)} {'waits' if n == 1 else 'wait'}"


def _fresh(conn: Connection) -> Connection:
    conn.refresh_from_db()
    if hasattr(conn, "pending"):
        del conn.pending
    return conn


def _disconnecting(conn: Connection, what: str) -> Refused:
    return Refused(
        f"{label(conn)} is being disconnected (its members are being removed from {conn.partner.name}); "
        f"it cannot be {what}."
    )


# --- connecting and changing a connection ------------------------------------------------------------------


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


def clean_variant(audience, variant):
    """The variant, when it is one of the audience's; ValidationError keyed "variant" otherwise."""
    if variant is not None and variant.audience_id != audience.pk:
        raise ValidationError({"variant": [f"'{variant.name}' is not a variant of '{audience.name}'."]})
    return variant


def clean_variant_for(output, settings: dict, variant) -> None:
    """A list the partner shares between audiences (a Braze attribute) holds audiences, not their variants."""
    if variant is not None and output.partner.shared_list(output.settings, settings) is not None:
        raise ValidationError(
            {
                "variant": [
                    f"These {output.partner.name} settings write one list shared by audiences; "
                    "a variant cannot be placed in it. Connect the whole audience instead."
                ]
            }  # fmt: skip
        )


def connect(audience, output, settings: dict, mode=None, minutes=None, messages=None, variant=None) -> Connection:
    """Create the connection and queue the current members of the audience or its variant (the backfill),
    atomically."""
    clean_variant(audience, variant)
    if variant is not None:  # as it is now: its range and its audience's hash may have changed since it was read
        variant = type(variant).objects.select_related("audience").get(pk=variant.pk)
    cleaned, mode, minutes, messages = clean_connection(output, settings, mode, minutes, messages)
    clean_variant_for(output, cleaned, variant)
    with transaction.atomic():
        conn = Connection.objects.create(
            audience=audience,
            variant=variant,
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
    clean_variant_for(conn.output, cleaned, conn.variant)
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


def connected(conn: Connection) -> str:
    queued = getattr(conn, "queued_on_connect", 0)
    if not queued:
        return (
            f"Connected {label(conn)}. No current member has an identity {conn.partner.name} accepts, "
            f"so nothing was queued."
        )
    whose = f"variant {conn.variant.name}'s" if conn.variant_id else "the audience's"
    return f"Connected {label(conn)}. Queued {_messages(queued)} for {whose} current members."


def updated(conn: Connection, queued: int) -> str:
    """After its settings were saved: what was queued, and that nothing goes before a resume if it is stopped."""
    waiting = pending_of(_fresh(conn))
    held = {
        Status.PAUSED: "The connection is paused",
        Status.FAULTED: "The connection is still stopped by a fault",
    }.get(conn.status)
    said = []
    if queued:
        said.append(
            f"The destination changed: queued {_messages(queued)} so that the audience's current members reach it. "
            "Members already at the old destination stay there."
        )
    if held:
        said.append(f"{held}: nothing is sent until you resume it ({_messages(waiting)} waiting).")
    return " ".join(said)


# --- the operator's operations -----------------------------------------------------------------------------


def pause(conn: Connection) -> str:
    """Stop sending; membership changes keep queueing until a resume."""
    if conn.status == Status.DISCONNECTING:
        raise _disconnecting(conn, "paused")
    was = conn.status
    paused = Connection.objects.filter(pk=conn.pk).exclude(status__in=[Status.DISCONNECTING, Status.PAUSED])
    if paused.update(status=Status.PAUSED, status_reason="Paused by an operator."):
        reverify.changed([conn.pk])
    waiting = pending_of(_fresh(conn))
    if was == Status.PAUSED:
        return f"{label(conn)} was already paused. {_wait(waiting)} until you resume."
    if waiting:
        return f"Paused {label(conn)}. {_wait(waiting)} until you resume."
    return f"Paused {label(conn)}. New membership changes wait until you resume."


def resume(conn: Connection) -> str:
    """Back to active: waiting messages (including a faulted batch) go out now, and the verdict is re-checked."""
    if conn.status == Status.DISCONNECTING:
        raise _disconnecting(conn, "resumed")
    was = conn.status
    stopped = Connection.objects.filter(pk=conn.pk, status__in=[Status.PAUSED, Status.FAULTED])
    resumed = stopped.update(status=Status.ACTIVE, status_reason="")
    fanout._drain_after_commit([conn.pk])
    if resumed:
        reverify.changed([conn.pk])  # queued after the drain, so that it can judge what the drain sent
    waiting = pending_of(_fresh(conn))
    if was == Status.ACTIVE:
        return f"{label(conn)} is already active. {_messages(waiting)} waiting."
    if waiting:
        return f"Resumed {label(conn)}: {_messages(waiting)} waiting {'goes' if waiting == 1 else 'go'} out now."
    return f"Resumed {label(conn)}. Nothing is waiting."


def sync(conn: Connection) -> str:
    if conn.status == Status.PAUSED:
        raise Refused(f"{label(conn)} is paused: resume it to send its {_messages(pending_of(conn))} waiting.")
    if conn.status == Status.FAULTED:
        raise Refused(f"{label(conn)} is stopped by a fault: {conn.status_reason} Resume it once that is fixed.")
    waiting = pending_of(conn)
    if not waiting:
        return f"Nothing is waiting for {label(conn)}."
    sync_now(conn)
    return f"Sending the {_messages(waiting)} waiting for {label(conn)} now."


def sync_now(conn: Connection) -> None:
    """Send what is waiting now, interval or not, backoff or not."""
    OutboxMessage.objects.filter(connection=conn, state=OutboxMessage.State.PENDING).update(
        next_attempt_at=timezone.now()
    )
    from connections.tasks import request_drain

    transaction.on_commit(lambda: request_drain([conn.pk], force=True))


def retry_failed(conn: Connection) -> tuple[int, str]:
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
    _fresh(conn)
    if not count:
        return 0, f"{label(conn)} has no failed messages to retry."
    when = "now" if conn.status in (Status.ACTIVE, Status.DISCONNECTING) else "when you resume it"
    return count, f"Requeued {_messages(count)} that had failed for {label(conn)}; they go out {when}."


def disconnect(conn: Connection, remove_from_partner: bool) -> tuple[str, str]:
    """Delete the connection now, or first queue a remove for every member and delete it once they are sent.

    Returns ("deleted" | "removing", sentence)."""
    what, partner = label(conn), conn.partner.name
    if not remove_from_partner:
        conn.delete()
        return "deleted", f"Disconnected {what}. The audience's members stay at {partner}."
    if conn.status != Status.DISCONNECTING:
        with transaction.atomic():
            Connection.objects.filter(pk=conn.pk).update(
                status=Status.DISCONNECTING,
                status_reason="Removing the audience's members from the partner before disconnecting.",
            )
            conn.status = Status.DISCONNECTING
            fanout.backfill(conn, action="remove")
    waiting = OutboxMessage.objects.filter(connection=conn, action="remove", state__in=OutboxMessage.WAITING)
    return "removing", (
        f"Removing the audience's members from {partner} first ({_messages(waiting.count())} queued); "
        f"{what} is deleted once they are sent."
    )


def disconnect_all(conns, remove_from_partner: bool) -> list[tuple[str, str]]:
    with transaction.atomic():
        return [disconnect(conn, remove_from_partner) for conn in conns]


def finish_disconnect(conn: Connection) -> bool:
    """Delete a disconnecting connection once nothing is waiting or in flight."""
    if conn.status != Connection.Status.DISCONNECTING:
        return False
    if OutboxMessage.objects.filter(connection=conn, state__in=OutboxMessage.WAITING).exists():
        return False
    conn.delete()
    return True


def connections_of(audience=None, output=None):
    qs = Connection.objects.select_related("audience", "output", "variant")
    return qs.filter(audience=audience) if audience is not None else qs.filter(output=output)


def describe_connections(connections) -> str:
    return ", ".join(f"'{c.source_name}' → '{c.output.name}'" for c in connections)


def verify(conn: Connection) -> str:
    """Run every check now and store the result on the connection; nothing changes at the partner."""
    verification.verify(conn)
    return verified(conn)


def verified(conn: Connection) -> str:
    """What the last verification found, such as: Verified '…' → '…': warning (2 checks need attention)."""
    checks = conn.verification_checks
    attention = sum(1 for c in checks if c["status"] != "ok")
    if not attention:
        return f"Verified {label(conn)}: ok (all {len(checks)} checks passed)."
    needs = "1 check needs" if attention == 1 else f"{attention} checks need"
    return f"Verified {label(conn)}: {conn.verification_status} ({needs} attention)."


def funnel(conn: Connection) -> funnel_mod.Funnel:
    """The size funnel, asking the partner for its own count unless the last verification could not ask it.

    A bad key, a missing list or an unreachable partner would give no count again, and a partner that does
    not answer would hold up the admin page for the HTTP timeout.
    """
    unknown = (Connection.Verification.UNVERIFIED, Connection.Verification.CHECKING)
    asked = conn.verification_status in unknown or any(c["name"] == "partner count" for c in conn.verification_checks)
    return funnel_mod.compute(conn, partner_count=... if asked else None)
