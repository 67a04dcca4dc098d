"""What a worker does once a drain ends with messages still waiting: wait for them, drain again, or schedule.

Under load a change often commits just after a drain's last claim. That change is no retry: pausing
RETRY_BASE_SECONDS for it, as for a partner that struggled, held it (and the worker) for seconds while every
other worker was busy; the p95 of a change under load was 1.1-1.4 s with Redis for that alone.
"""

import datetime as dt

import pytest
from django.utils import timezone

from connections import policy
from connections.models import Connection, OutboxMessage
from connections.tasks import drain_connection
from tests.connections.test_forwarding import connected, mailchimp  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)

NOW = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)


def at(seconds):
    return NOW + dt.timedelta(seconds=seconds)


def test_a_change_that_committed_after_the_last_claim_is_drained_at_once(settings):
    settings.RETRY_BASE_SECONDS = 2
    assert policy.retry_wait(True, policy.Waiting(untried_at=at(-0.05)), NOW) == 0


def test_a_retry_still_pauses_for_the_struggling_partner(settings):
    settings.RETRY_BASE_SECONDS = 2
    assert policy.retry_wait(True, policy.Waiting(retry_at=at(-1)), NOW) == 2
    assert policy.retry_wait(True, policy.Waiting(retry_at=at(3)), NOW) == 3
    # The earlier of the two wins: a fresh change does not wait behind a retry's pause.
    assert policy.retry_wait(True, policy.Waiting(retry_at=at(-1), untried_at=at(0.5)), NOW) == 0.5


def test_far_or_unsent_waits_are_left_to_a_schedule(settings):
    settings.RETRY_BASE_SECONDS = 2
    assert policy.retry_wait(True, policy.Waiting(retry_at=at(60)), NOW) is None
    assert policy.retry_wait(True, policy.Waiting(untried_at=at(60)), NOW) is None
    # A drain that sent nothing (its messages wait behind others in flight) never loops on itself.
    assert policy.retry_wait(False, policy.Waiting(untried_at=at(-1)), NOW) is None
    assert policy.retry_wait(True, policy.Waiting(), NOW) is None


def test_the_worker_waits_for_a_settling_change_only_until_it_is_due(sandbox, mailchimp, settings):  # noqa: F811
    settings.RETRY_BASE_SECONDS = 3
    _, conn = connected(mailchimp, members=2)
    # u0's change waits for its identity to settle (never tried); u1's goes out with the drain.
    OutboxMessage.objects.filter(connection=conn, value="u0@example.com").update(
        next_attempt_at=timezone.now() + dt.timedelta(seconds=0.5)
    )
    Connection.objects.filter(pk=conn.pk).update(drain_queued_at=None)
    started = timezone.now()

    report = drain_connection(conn.pk)

    waited = (timezone.now() - started).total_seconds()
    assert report["accepted"] == 1
    assert 0.4 <= waited < 2, f"the worker held the change {waited:.2f} s"
    assert Connection.objects.get(pk=conn.pk).drain_queued_at is not None  # the next drain is queued for it
