"""The operator's operations on a connection, each with the sentence that reports it.

The admin, the API and the commands call these, so an operator reads the same
words at every door. The work itself is done by `connections.services`.
"""

from django.db import transaction

from connections import funnel as funnel_mod
from connections import services, verification
from connections.models import Connection, OutboxMessage
from connections.queries import pending_of

Status = Connection.Status


class Refused(Exception):
    """The operation does not apply to the connection in its current state; the message says why."""


def label(conn: Connection) -> str:
    return services.describe_connections([conn])


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


def connected(conn: Connection) -> str:
    queued = getattr(conn, "queued_on_connect", 0)
    if not queued:
        return (
            f"Connected {label(conn)}. No current member has an identity {conn.partner.name} accepts, "
            f"so nothing was queued."
        )
    return f"Connected {label(conn)}. Queued {_messages(queued)} for the audience's current members."


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


def pause(conn: Connection) -> str:
    if conn.status == Status.DISCONNECTING:
        raise _disconnecting(conn, "paused")
    was = conn.status
    services.pause(conn)
    waiting = pending_of(_fresh(conn))
    if was == Status.PAUSED:
        return f"{label(conn)} was already paused. {_wait(waiting)} until you resume."
    if waiting:
        return f"Paused {label(conn)}. {_wait(waiting)} until you resume."
    return f"Paused {label(conn)}. New membership changes wait until you resume."


def resume(conn: Connection) -> str:
    if conn.status == Status.DISCONNECTING:
        raise _disconnecting(conn, "resumed")
    was = conn.status
    services.resume(conn)
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
    services.sync_now(conn)
    return f"Sending the {_messages(waiting)} waiting for {label(conn)} now."


def retry_failed(conn: Connection) -> tuple[int, str]:
    count = services.retry_failed(conn)
    _fresh(conn)
    if not count:
        return 0, f"{label(conn)} has no failed messages to retry."
    when = "now" if conn.status in (Status.ACTIVE, Status.DISCONNECTING) else "when you resume it"
    return count, f"Requeued {_messages(count)} that had failed for {label(conn)}; they go out {when}."


def disconnect(conn: Connection, remove_from_partner: bool) -> tuple[str, str]:
    """("removing" | "deleted", sentence)."""
    what, partner = label(conn), conn.partner.name
    if not remove_from_partner:
        services.disconnect(conn, False)
        return "deleted", f"Disconnected {what}. The audience's members stay at {partner}."
    if conn.status != Status.DISCONNECTING:
        services.disconnect(conn, True)
    waiting = OutboxMessage.objects.filter(connection=conn, action="remove", state__in=["pending", "in_flight"])
    return "removing", (
        f"Removing the audience's members from {partner} first ({_messages(waiting.count())} queued); "
        f"{what} is deleted once they are sent."
    )


def disconnect_all(conns, remove_from_partner: bool) -> list[tuple[str, str]]:
    with transaction.atomic():
        return [disconnect(conn, remove_from_partner) for conn in conns]


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
