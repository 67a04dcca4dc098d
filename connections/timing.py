"""When something waiting goes out, in words: never a "next" time that is already past.

A pending message's `next_attempt_at` is when it may go at the earliest; for an interval upload or a stopped
connection it says nothing about when it will. These sentences say what a person can expect instead.
"""

import datetime as dt

from django.utils import timezone
from django.utils.formats import date_format

from connections.models import Connection, OutboxMessage

# The sweep looks for due work every minute: within this, something due is "due now", later it is overdue.
SWEEP_SLACK = dt.timedelta(minutes=2)


def _at(when) -> str:
    return date_format(timezone.localtime(when), "Y-m-d H:i")


def _due(since, now) -> str:
    return "due now" if now - since <= SWEEP_SLACK else f"overdue since {_at(since)}"


def upload_at(conn: Connection):
    """When an interval connection's next upload is due by its period; None without a period."""
    if not conn.interval_minutes:
        return None
    return (conn.last_upload_at or conn.created_at) + dt.timedelta(minutes=conn.interval_minutes)


def next_upload(conn: Connection, waiting: int, now=None) -> str:
    """The interval connection's next upload: at a time to come, due now, overdue since, or when enough wait."""
    now = now or timezone.now()
    if conn.status in (Connection.Status.PAUSED, Connection.Status.FAULTED):
        return "when the connection is resumed"
    if not waiting:
        return "nothing is waiting"
    at = upload_at(conn)
    if conn.interval_messages and waiting >= conn.interval_messages:
        return _due(at, now) if at is not None and at <= now else "due now"
    if at is None:
        return f"when {conn.interval_messages:,} messages are waiting ({waiting:,} now)"
    return _at(at) if at > now else _due(at, now)


def message_next(conn: Connection, message: OutboxMessage, waiting: int, now=None) -> str:
    """When a pending message goes out: a retry's time, with the interval upload, due now, overdue, or after
    a resume. `waiting` is the connection's count of pending messages (interval uploads go at a count)."""
    now = now or timezone.now()
    if message.state != OutboxMessage.State.PENDING:
        return "–"
    if conn.status in (Connection.Status.PAUSED, Connection.Status.FAULTED):
        return "when the connection is resumed"
    if message.next_attempt_at > now:
        return _at(message.next_attempt_at)  # backing off after a transient failure
    if conn.delivery_mode == Connection.Mode.INTERVAL and conn.status == Connection.Status.ACTIVE:
        upload = next_upload(conn, waiting, now)
        return f"with the upload at {upload}" if upload[0].isdigit() else f"with the upload, {upload}"
    return _due(message.next_attempt_at, now)
