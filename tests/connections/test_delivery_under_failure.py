"""Delivery under failure (issue 18): a late answer never undoes a newer change, retries wait what the partner
asks and go out together, and a queued drain the broker lost is queued again by the next sweep."""

import datetime as dt

import pytest
from django.utils import timezone

from connections import tasks
from connections.drain import drain
from connections.models import Connection, OutboxMessage
from tests.connections.test_forwarding import connected, people, states, subscribed
from tests.outputs.factories import LIST_ID
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def at_mailchimp(sandbox):
    return sandbox.mailchimp_list_state(LIST_ID)["members"]


def test_a_timed_out_add_never_undoes_the_remove_queued_after_it(sandbox, mailchimp, settings):
    settings.PARTNER_HTTP_TIMEOUT = 1
    settings.OUTCOME_SETTLE_SECONDS = 3
    _, conn = connected(mailchimp, members=1)
    # Mailchimp holds the add past our timeout, then applies it.
    sandbox.fault("mailchimp", "timeout", delay=2.5, count=1)
    assert drain(conn.pk).retried == 1

    people(("u0", "Free", "u0@example.com", None))  # the member leaves: a remove replaces the add
    drain(conn.pk)
    idle = lambda: sandbox.stats()["in_flight"]["mailchimp"] == 0  # noqa: E731
    wait_until(idle, 10, "Mailchimp applying the add it held")

    def delivered():
        drain(conn.pk)
        return set(states(conn).values()) == {"delivered"}

    wait_until(delivered, 20, "the remove being delivered", every=0.2)
    assert OutboxMessage.objects.get(connection=conn).action == "remove"
    assert at_mailchimp(sandbox)["u0@example.com"]["status"] == "unsubscribed"
    assert subscribed(sandbox) == set()


def test_a_message_after_an_unanswered_request_waits_for_the_partner_to_settle(sandbox, mailchimp, settings):
    settings.PARTNER_HTTP_TIMEOUT = 1
    _, conn = connected(mailchimp, members=1)
    sandbox.fault("mailchimp", "drop", count=1)  # the connection is cut: did Mailchimp apply the add?

    started = timezone.now()
    drain(conn.pk)
    people(("u0", "Free", "u0@example.com", None))

    message = OutboxMessage.objects.get(connection=conn, state="pending")
    assert message.action == "remove"
    assert message.next_attempt_at >= started + dt.timedelta(seconds=settings.OUTCOME_SETTLE_SECONDS)
    assert drain(conn.pk).messages == 0


def test_a_429s_retry_after_is_the_wait_whatever_the_attempts_so_far(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=2)
    OutboxMessage.objects.filter(connection=conn).update(attempts=7)  # a long run of failures already
    sandbox.fault("mailchimp", "status", status=429, retry_after=2, count=1)

    started = timezone.now()
    assert drain(conn.pk).retried == 2

    for message in OutboxMessage.objects.filter(connection=conn):
        assert started + dt.timedelta(seconds=2) <= message.next_attempt_at <= timezone.now() + dt.timedelta(seconds=2)


def test_a_batchs_retries_are_due_together_and_go_out_in_one_request(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=20)
    sandbox.fault("mailchimp", "status", status=503, count=1)

    drain(conn.pk)

    due = set(OutboxMessage.objects.filter(connection=conn).values_list("next_attempt_at", flat=True))
    assert len(due) == 1
    before = sandbox.stats()["requests"]["mailchimp"]
    OutboxMessage.objects.filter(connection=conn).update(next_attempt_at=min(due) - dt.timedelta(seconds=10))
    assert drain(conn.pk).accepted == 20
    assert sandbox.stats()["requests"]["mailchimp"] - before == 1


def test_the_default_backoff_ends_a_run_of_failures_within_minutes(settings):
    from connections import policy

    waits = [policy.backoff_seconds(attempt, spread=1.0) for attempt in range(1, 11)]
    assert sum(waits) <= 10 * 60


def test_a_queued_drain_the_broker_lost_is_queued_again_by_the_next_sweep(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=1)
    # A drain was queued, then its cluster was killed before a worker started it.
    lost_at = timezone.now() - tasks.QUEUED_DRAIN_LEASE - dt.timedelta(seconds=1)
    Connection.objects.filter(pk=conn.pk).update(drain_queued_at=lost_at)

    assert tasks.sweep() == [conn.pk]
    assert tasks.sweep() == []  # queued again just now: deduplicated


def test_checks_take_one_of_the_outputs_request_slots_like_forwarding(sandbox, mailchimp, settings):
    from connections import slots
    from connections.verification import verify
    from outputs.services import check_credentials

    settings.SLOT_WAIT_SECONDS = 0.3
    _, conn = connected(mailchimp, members=1)
    drain(conn.pk)
    assert verify(conn)[0] == "ok"
    # Drains of other connections of the output hold all of Mailchimp's 10 simultaneous connections.
    held = slots.acquire(mailchimp, 10, "another drain", 120)
    assert len(held) == 10
    before = sandbox.stats()["requests"]["mailchimp"]

    status, checks = verify(conn)
    credentials = check_credentials(mailchimp)

    assert sandbox.stats()["requests"]["mailchimp"] == before  # no 11th connection
    busy = (
        "Not checked this time: forwarding kept all 10 of Mailchimp's simultaneous requests busy for 0.3 seconds; "
        "it is checked again at the next verification."
    )
    assert (checks[0].name, checks[0].status, checks[0].detail) == ("partner", "warning", busy)
    assert status == "warning"
    assert (credentials.status, credentials.detail) == ("warning", busy)
    mailchimp.refresh_from_db()
    assert mailchimp.credentials_ok is True  # the last answer Mailchimp gave still stands

    slots.release(held, "another drain")
    assert verify(conn)[0] == "ok"
    assert sandbox.stats()["requests"]["mailchimp"] > before
