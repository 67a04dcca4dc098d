"""How a connection's last error reads: current, or history once deliveries have succeeded since.

The engine keeps the last error and, when a later batch is accepted, when that happened
(`last_error_resolved_at`); the error stays, since it is what an operator looks for the morning after. A page
shows it as current only while nothing has put it right: beside an OK verdict, an old 401 shown as today's
problem would contradict it.
"""

from dataclasses import dataclass

from django.db.models import F, Q

from connections.models import Connection
from staff import dates


@dataclass(frozen=True)
class LastProblem:
    text: str
    at: str  # "3 Dec 2026, 04:01:03"
    current: bool
    since: str  # why it is not current: "deliveries have succeeded since 3 Dec 2026, 04:12:30"

    def sentence(self) -> str:
        if self.current:
            return f"{self.text} ({self.at})"
        return f"Last problem, {self.at}: {self.text} — {self.since}."


def of(conn: Connection) -> LastProblem | None:
    if not conn.last_error:
        return None
    at = dates.when(conn.last_error_at, empty="at an unknown time")
    if conn.last_error_resolved_at is not None:
        return LastProblem(
            conn.last_error, at, False, f"deliveries have succeeded since {dates.when(conn.last_error_resolved_at)}"
        )
    if _checks_pass_since(conn):
        # Put right (a new key, a resume) but nothing was waiting to prove it by a delivery.
        since = f"the checks pass since {dates.when(conn.verified_at)}; nothing has been sent since"
        return LastProblem(conn.last_error, at, False, since)
    return LastProblem(conn.last_error, at, True, "")


def _checks_pass_since(conn: Connection) -> bool:
    return (
        conn.status == Connection.Status.ACTIVE
        and conn.verification_status == Connection.Verification.OK
        and conn.verified_at is not None
        and conn.last_error_at is not None
        and conn.verified_at > conn.last_error_at
    )


def current_errors() -> Q:
    """The connections whose last error is current, for a filter: the same rule as `of`, in SQL."""
    checks_pass = Q(
        status=Connection.Status.ACTIVE,
        verification_status=Connection.Verification.OK,
        verified_at__gt=F("last_error_at"),
    )
    return ~Q(last_error="") & Q(last_error_resolved_at__isnull=True) & ~checks_pass
