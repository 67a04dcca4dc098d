"""The operations an operator runs on a connection from its page or the list, with one confirmation page.

Each operation declares, as data, what its confirmation page says, the ModelAdmin permission it needs, the
states it applies to and the service that runs it: the view, the button and the bulk action all read it
here, so a button is shown exactly to those the view lets through, in the states the service accepts.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib import admin

from connections import services
from connections.models import Connection

Status = Connection.Status


@dataclass(frozen=True)
class Operation:
    title: str
    button: str
    explain: str  # what will happen, shown before anyone confirms
    run: Callable[[Connection], str]  # does it and returns the sentence the operator reads
    applies: Callable[[Connection], bool] = lambda conn: True  # whether its button shows in this state
    permission: str = "change"  # "change" or "delete"


OPERATIONS = {
    "sync": Operation(
        "Sync now",
        "Yes, send now",
        "The messages waiting for these connections are sent now, even for an interval upload or a message "
        "that is backing off after an error.",
        run=lambda conn: services.sync(conn),
        applies=lambda conn: conn.status in (Status.ACTIVE, Status.DISCONNECTING),
    ),
    "pause": Operation(
        "Pause",
        "Yes, pause",
        "Sending stops. Membership changes keep queueing and go out when you resume.",
        run=lambda conn: services.pause(conn),
        applies=lambda conn: conn.status == Status.ACTIVE,
    ),
    "resume": Operation(
        "Resume",
        "Yes, resume",
        "Sending starts again after a pause or a fault: the waiting messages go out now.",
        run=lambda conn: services.resume(conn),
        applies=lambda conn: conn.status in (Status.PAUSED, Status.FAULTED),
    ),
    "retry-failed": Operation(
        "Retry failed",
        "Yes, retry them",
        "Messages that failed (their retry window ran out) are queued again with a new window. Rejected messages "
        "stay rejected: the partner refused them.",
        run=lambda conn: services.retry_failed(conn)[1],
    ),
    "disconnect-remove": Operation(
        "Disconnect (remove members from partner)",
        "Yes, remove the members and disconnect",
        "Every current member of the audience is removed at the partner; the connection is deleted once those "
        "removals are sent. Later membership changes are no longer forwarded.",
        run=lambda conn: services.disconnect(conn, remove_from_partner=True)[1],
        applies=lambda conn: conn.status != Status.DISCONNECTING,
        permission="delete",
    ),
    "disconnect-keep": Operation(
        "Disconnect (keep members at partner)",
        "Yes, disconnect and keep the members",
        "The connection is deleted now. The audience's members stay at the partner as they are; later "
        "membership changes are no longer forwarded.",
        run=lambda conn: services.disconnect(conn, remove_from_partner=False)[1],
        permission="delete",
    ),
}
# Verifying changes nothing at the partner, so it has no confirmation page; it needs what the operations need.
VERIFY_PERMISSION = "change"


def operation_action(op: str, description: str = ""):
    """The bulk action of an operation: its title, and the permission the operation declares."""
    return admin.action(description=description or OPERATIONS[op].title, permissions=[OPERATIONS[op].permission])
