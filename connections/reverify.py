"""A verdict is never older than the facts it judged.

Every change that can turn a check around calls `changed` here: an output's settings or secrets saved (through
the outputs hook), a connection's settings saved, a pause, a resume, a fault, failed messages sent again, and a
delivery that got through where the last verdict said nothing could. The affected connections show
"re-checking" at once, and one verification each is queued for when the change commits; until it has run, no
door (admin, dashboard, API, command) shows the old verdict as the current one.
"""

import datetime as dt

from django.db.models import QuerySet
from django.utils import timezone

from connections.models import Connection

CHECKING = Connection.Verification.CHECKING
FAILING = Connection.Verification.FAILING
# How long a re-check may wait for a worker before the page says to look for one.
WORKER_LATE = dt.timedelta(minutes=2)


def changed(connections) -> list[int]:
    """Mark the connections' verdicts as being re-checked and queue their verification once committed.

    `connections` is a queryset or a list of IDs. Connections being disconnected are left alone (they are no
    longer verified). A verification already running when the facts move stores nothing (`verification.verify`):
    the one queued here judges the new facts.
    """
    from connections.tasks import queue_verification

    if not isinstance(connections, QuerySet):
        connections = Connection.objects.filter(pk__in=list(connections))
    now = timezone.now()
    live = connections.exclude(status=Connection.Status.DISCONNECTING)
    ids = list(live.values_list("pk", flat=True))
    Connection.objects.filter(pk__in=ids).update(verification_status=CHECKING, facts_changed_at=now)
    for pk in ids:
        queue_verification(pk)
    return ids


def output_changed(output) -> list[int]:
    """Listener for outputs.hooks: every connection of an output whose settings or secrets changed."""
    return changed(Connection.objects.filter(output_id=output.pk))


def contradicted_by_delivery(conn: Connection) -> bool:
    """Whether a delivery the partner accepted shows the stored verdict is out of date.

    It does when the verdict said forwarding had stopped (the "status" check) or that the credentials do not
    work (a partner module's first check); a check a delivery does not answer (an account precondition, the
    partner's count, rejections) keeps its verdict until something else changes, so a verdict that stands
    is not verified again after every batch.
    """
    if conn.verification_status != FAILING:
        return False
    checks = conn.verification_checks or []
    return any(c.get("status") == "failing" and (c.get("name") == "status" or i == 0) for i, c in enumerate(checks))


def delivered(conn: Connection, accepted: int) -> list[int]:
    """After a drain: messages accepted where the last verdict said they could not be re-verify it."""
    if accepted and contradicted_by_delivery(conn):
        return changed([conn.pk])
    return []


def is_stale(conn: Connection) -> bool:
    return conn.verification_status == CHECKING


def waiting_sentence(conn: Connection, now=None) -> str:
    """What a re-checking connection shows instead of its old verdict."""
    now = now or timezone.now()
    since = conn.facts_changed_at
    sentence = "Re-checking after a change: the result shows here once a worker has run the verification."
    if since is not None and now - since > WORKER_LATE:
        minutes = int((now - since).total_seconds() // 60)
        sentence = (
            f"Re-checking after a change {minutes} minutes ago, but no worker has run the verification yet: "
            "check that a qcluster is running (manage.py qcluster), or verify now."
        )
    return sentence
