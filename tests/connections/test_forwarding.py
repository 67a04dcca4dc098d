"""End to end: membership changes reach the partner sandbox over real HTTP through the outbox and the engine."""

import datetime as dt

import pytest
from django.utils import timezone

from audiences.erasure import erase_profiles
from audiences.ingest import ProfileInput, upsert_profiles
from audiences.models import Audience
from audiences.refresh import refresh_audience
from connections import outbox, services, tasks
from connections.drain import drain
from connections.models import Connection, Delivery, OutboxMessage
from outputs.models import Output
from tests.outputs.factories import ANOTHER_MAILCHIMP_KEY, LIST_ID, MAILCHIMP_KEY

pytestmark = pytest.mark.django_db(transaction=True)

PREMIUM = {"user": "status", "op": "eq", "value": "Premium"}


@pytest.fixture
def mailchimp(sandbox):
    sandbox.mailchimp_account(MAILCHIMP_KEY)
    sandbox.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Potential Parisians")
    output = Output(
        kind="mailchimp",
        name="Mailchimp",
        base_url=sandbox.url + "/mailchimp/{dc}",
        settings={"email_type": "html", "double_optin": False, "delete_on_subscription_end": False},
    )
    output.set_secrets({"api_key": MAILCHIMP_KEY})
    output.save()
    return output


def people(*specs):
    """Upsert profiles: (external_id, status, email or None, aaid or None)."""
    items = []
    for external_id, status, email, aaid in specs:
        identities = [("email", email)] if email else []
        identities += [("android_aaid", aaid)] if aaid else []
        items.append(ProfileInput(external_id, {"status": status}, identities))
    upsert_profiles(items)


def aaid(n):
    return f"00000000-0000-4000-8000-{n:012d}"


def connected(mailchimp, members=3):
    people(*[(f"u{i}", "Premium", f"u{i}@example.com", aaid(i)) for i in range(members)])
    audience = Audience.objects.create(name="Potential Parisians", criteria=PREMIUM)
    refresh_audience(audience)
    conn = services.connect(audience, mailchimp, {"list_id": LIST_ID})
    return audience, conn


def subscribed(sandbox):
    members = sandbox.mailchimp_list_state(LIST_ID)["members"]
    return {email for email, m in members.items() if m["status"] == "subscribed"}


def states(conn):
    return dict(OutboxMessage.objects.filter(connection=conn).values_list("value", "state"))


def test_connecting_backfills_the_current_members(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=3)
    assert conn.queued_on_connect == 3

    report = drain(conn.pk)

    assert (report.messages, report.accepted) == (3, 3)
    assert subscribed(sandbox) == {"u0@example.com", "u1@example.com", "u2@example.com"}
    conn.refresh_from_db()
    assert (conn.sent_count, conn.accepted_count, conn.rejected_count) == (3, 3, 0)
    delivery = Delivery.objects.get(connection=conn)
    assert (delivery.messages, delivery.accepted, delivery.http_status) == (3, 3, 200)
    assert MAILCHIMP_KEY not in delivery.response_excerpt


def test_adds_and_removes_reach_the_partner(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=2)
    drain(conn.pk)

    people(("u0", "Free", "u0@example.com", None), ("u9", "Premium", "u9@example.com", None))
    drain(conn.pk)

    members = sandbox.mailchimp_list_state(LIST_ID)["members"]
    assert members["u0@example.com"]["status"] == "unsubscribed"
    assert subscribed(sandbox) == {"u1@example.com", "u9@example.com"}


def test_a_changed_email_is_removed_and_the_new_one_added(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=1)
    drain(conn.pk)

    upsert_profiles([ProfileInput("u0", None, [("email", "new.address@example.com")])])
    drain(conn.pk)

    members = sandbox.mailchimp_list_state(LIST_ID)["members"]
    assert members["u0@example.com"]["status"] == "unsubscribed"
    assert members["new.address@example.com"]["status"] == "subscribed"


def test_an_erased_profile_is_removed_at_the_partner_and_forgotten(sandbox, mailchimp):
    from audiences.models import Profile

    _, conn = connected(mailchimp, members=2)
    drain(conn.pk)

    erase_profiles(Profile.objects.filter(external_id="u0"))
    drain(conn.pk)

    assert sandbox.mailchimp_list_state(LIST_ID)["members"]["u0@example.com"]["status"] == "unsubscribed"
    assert not OutboxMessage.objects.filter(value="u0@example.com", state__in=["pending", "delivered"]).exists()
    conn.refresh_from_db()
    assert conn.accepted_count == 3


def test_flapping_members_cost_one_message_and_the_latest_state_wins(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=1)
    drain(conn.pk)

    for status in ("Free", "Premium", "Free"):
        people(("u0", status, "u0@example.com", None))

    waiting = OutboxMessage.objects.filter(connection=conn, state="pending")
    assert list(waiting.values_list("value", "action")) == [("u0@example.com", "remove")]
    drain(conn.pk)
    assert sandbox.mailchimp_list_state(LIST_ID)["members"]["u0@example.com"]["status"] == "unsubscribed"


def test_identities_the_partner_does_not_accept_are_counted_not_queued(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=1)
    drain(conn.pk)

    people(("device-only", "Premium", None, aaid(77)))

    assert not OutboxMessage.objects.filter(connection=conn, identity_type="android_aaid").exists()
    conn.refresh_from_db()
    assert conn.unaccepted_count == 1


def test_partial_rejections_are_recorded_per_message(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=3)
    sandbox.mailchimp_rejection("u1@example.com", "fake")

    report = drain(conn.pk)

    assert (report.accepted, report.rejected) == (2, 1)
    rejected = OutboxMessage.objects.get(connection=conn, value="u1@example.com")
    assert rejected.state == "rejected"
    assert "looks fake or invalid" in rejected.last_error
    assert subscribed(sandbox) == {"u0@example.com", "u2@example.com"}


def test_a_member_mailchimp_refuses_for_now_is_delivered_later(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=2)
    sandbox.mailchimp_rejection("u1@example.com", "busy", count=1)  # "signed up to a lot of lists very recently"

    first = drain(conn.pk)
    waiting = OutboxMessage.objects.get(connection=conn, value="u1@example.com")
    OutboxMessage.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now())
    later = drain(conn.pk)

    assert (first.accepted, first.retried, first.rejected) == (1, 1, 0)
    assert (waiting.state, waiting.attempts) == ("pending", 1)
    assert later.accepted == 1
    assert subscribed(sandbox) == {"u0@example.com", "u1@example.com"}


def test_a_429_is_retried_after_the_partners_retry_after(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=2)
    sandbox.fault("mailchimp", "status", status=429, retry_after=30, count=1)

    started = timezone.now()
    report = drain(conn.pk)

    assert (report.retried, report.accepted) == (2, 0)
    for message in OutboxMessage.objects.filter(connection=conn):
        assert message.state == "pending" and message.attempts == 1
        assert message.next_attempt_at >= started + dt.timedelta(seconds=30)
    assert drain(conn.pk).messages == 0  # not due yet

    OutboxMessage.objects.filter(connection=conn).update(next_attempt_at=timezone.now())
    assert drain(conn.pk).accepted == 2
    assert len(subscribed(sandbox)) == 2


def test_a_server_error_backs_off_then_succeeds(sandbox, mailchimp, settings):
    _, conn = connected(mailchimp, members=2)
    sandbox.fault("mailchimp", "status", status=503, count=1)

    started = timezone.now()
    first = drain(conn.pk)
    assert first.retried == 2
    message = OutboxMessage.objects.filter(connection=conn).first()
    assert "503" in message.last_error
    base = dt.timedelta(seconds=settings.RETRY_BASE_SECONDS)  # the first retry waits half to all of it
    assert started + base / 2 <= message.next_attempt_at <= timezone.now() + base

    OutboxMessage.objects.filter(connection=conn).update(next_attempt_at=timezone.now())
    assert drain(conn.pk).accepted == 2
    assert set(states(conn).values()) == {"delivered"}


def test_messages_past_the_retry_window_fail(sandbox, mailchimp, settings):
    settings.RETRY_WINDOW_HOURS = 1
    _, conn = connected(mailchimp, members=1)
    OutboxMessage.objects.filter(connection=conn).update(created_at=timezone.now() - dt.timedelta(hours=2))
    sandbox.fault("mailchimp", "status", status=503, count=1)

    assert drain(conn.pk).failed == 1

    message = OutboxMessage.objects.get(connection=conn)
    assert message.state == "failed" and message.last_error.startswith("Gave up after 1 hours:")
    assert services.retry_failed(conn)[0] == 1
    assert drain(conn.pk).accepted == 1


def test_a_revoked_key_faults_the_connection_until_someone_resumes_it(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=2)
    sandbox.revoke("mailchimp", MAILCHIMP_KEY)

    report = drain(conn.pk)

    assert report.fault.startswith("Mailchimp rejected the API key")
    conn.refresh_from_db()
    assert conn.status == Connection.Status.FAULTED
    assert "Extras → API keys" in conn.status_reason
    assert set(states(conn).values()) == {"pending"}
    assert drain(conn.pk).messages == 0  # stopped: nothing goes out while faulted

    new_key = ANOTHER_MAILCHIMP_KEY
    sandbox.mailchimp_account(new_key)
    sandbox.mailchimp_list(new_key, LIST_ID, "Potential Parisians again")
    mailchimp.set_secrets({"api_key": new_key})
    mailchimp.save()
    services.resume(conn)
    assert drain(conn.pk).accepted == 2
    assert OutboxMessage.objects.get(connection=conn, value="u0@example.com").attempts == 1


def test_a_paused_connection_keeps_queueing_and_sends_on_resume(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=2)
    services.pause(conn)
    assert drain(conn.pk).messages == 0
    people(("u5", "Premium", "u5@example.com", None))
    assert OutboxMessage.objects.filter(connection=conn, state="pending").count() == 3

    services.resume(conn)
    assert drain(conn.pk).accepted == 3


def test_a_dead_workers_batch_is_claimed_again_when_its_lease_expires(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=3)
    claimed = outbox.claim(conn.pk, 500)  # a worker claims the batch, then dies before sending
    assert len(claimed) == 3
    assert drain(conn.pk).messages == 0  # leased: nobody else takes it

    later = timezone.now() + dt.timedelta(seconds=121)
    assert len(outbox.claim(conn.pk, 500, now=later)) == 3


def test_one_identity_is_never_in_flight_twice(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=1)
    assert len(outbox.claim(conn.pk, 500)) == 1
    people(("u0", "Free", "u0@example.com", None))  # a remove queued while the add is in flight

    assert outbox.claim(conn.pk, 500) == []


def test_the_sweep_drains_due_realtime_connections_and_due_interval_uploads(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=1)
    Connection.objects.filter(pk=conn.pk).update(drain_queued_at=None)
    assert tasks.sweep() == [conn.pk]
    assert tasks.sweep() == []  # already queued: deduplicated


def test_two_drains_on_one_output_never_exceed_its_concurrency(sandbox, mailchimp, settings):
    import threading

    sandbox.mailchimp_list(MAILCHIMP_KEY, "second0001", "Second list")
    audience, first = connected(mailchimp, members=0)
    people(*[(f"p{i}", "Premium", f"p{i}@example.com", None) for i in range(6000)])
    second = services.connect(audience, mailchimp, {"list_id": "second0001"})
    sandbox.fault("mailchimp", "slow", delay=0.2, count=1000)  # hold requests open long enough that they overlap

    threads = [threading.Thread(target=drain, args=(c.pk,)) for c in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    stats = sandbox.stats()
    assert 2 <= stats["max_concurrent"]["mailchimp"] <= 10
    assert OutboxMessage.objects.exclude(state="delivered").count() == 0
    assert sandbox.mailchimp_list_state(LIST_ID)["member_count"] == 6000
    assert sandbox.mailchimp_list_state("second0001")["member_count"] == 6000


@pytest.mark.parametrize("file_format", ["avro", "legacy"])
def test_an_interval_connection_uploads_when_its_criteria_are_met(sandbox, file_format):
    sandbox.xandr_account("demo", "demo-pass", 1234, file_format=file_format)
    sandbox.xandr_segment(1234, 5678)
    settings = {"username": "demo", "member_id": 1234, "file_format": file_format}
    output = Output(kind="xandr", name="AppNexus", base_url=sandbox.url + "/xandr", settings=settings)
    output.set_secrets({"password": "demo-pass"})
    output.save()
    people(*[(f"u{i}", "Premium", None, aaid(i)) for i in range(5)])
    audience = Audience.objects.create(name="Devices", criteria=PREMIUM)
    refresh_audience(audience)
    conn = services.connect(audience, output, {"segment_id": 5678}, minutes=15, messages=10)
    Connection.objects.filter(pk=conn.pk).update(drain_queued_at=None)

    assert tasks.sweep() == []  # 5 waiting, under 10, and 15 minutes have not passed
    people(*[(f"u{i}", "Premium", None, aaid(i)) for i in range(5, 10)])
    assert tasks.sweep() == [conn.pk]  # 10 waiting: the upload is due
    tasks.drain_connection(conn.pk)
    assert sandbox.xandr_segment_state(5678)["count"] == 10

    people(("u0", "Free", None, aaid(0)))
    Connection.objects.filter(pk=conn.pk).update(drain_queued_at=None)
    assert tasks.sweep() == []
    Connection.objects.filter(pk=conn.pk).update(last_upload_at=timezone.now() - dt.timedelta(minutes=16))
    assert tasks.sweep() == [conn.pk]  # 15 minutes since the last upload
    tasks.drain_connection(conn.pk)
    assert sandbox.xandr_segment_state(5678)["count"] == 9
