"""A drain lane claims whole partner requests up to CLAIM_MESSAGES: small-request partners share a claim's cost."""

import pytest

from connections import services
from connections.drain import claim_size, drain
from connections.models import Delivery, OutboxLease, OutboxMessage
from outputs.models import Output
from tests.connections.factories import StaticAudienceFactory, add_members

pytestmark = pytest.mark.django_db(transaction=True)

BRAZE_KEY = "7c1e5a90-braze-sandbox-key-0001"


def braze_connection(sandbox, members):
    sandbox.braze_key(BRAZE_KEY)
    output = Output(
        kind="braze",
        name="Braze",
        base_url=f"{sandbox.url}/braze",
        settings={"rest_endpoint": "https://rest.iad-01.braze.com"},
    )
    output.set_secrets({"api_key": BRAZE_KEY})
    output.save()
    audience = StaticAudienceFactory()
    add_members(audience, emails=[f"c{i}@example.com" for i in range(members)])
    settings = {"identifier": "email", "membership": "array", "attribute_name": "relay_audiences"}
    return services.connect(audience, output, settings)


def test_a_braze_backlog_goes_six_requests_to_a_claim_and_75_to_a_request(sandbox):
    conn = braze_connection(sandbox, 500)

    report = drain(conn.pk)

    assert report.accepted == 500
    # 500 = 450 (six requests of 75) + 50 (one request): two claims, seven requests, every one within Braze's 75.
    assert sorted(Delivery.objects.filter(connection=conn).values_list("messages", "requests")) == [(50, 1), (450, 6)]
    assert sandbox.stats()["requests"]["braze"] == 7
    tagged = [u for u in sandbox.braze_users()["users"].values() if u.get("relay_audiences")]
    assert len(tagged) == 500


def test_a_refusal_half_way_through_a_claim_retries_only_what_braze_did_not_take(sandbox):
    conn = braze_connection(sandbox, 450)
    sandbox.braze_rate_limit(2)  # the third request of the claim gets a 429

    report = drain(conn.pk)

    assert (report.accepted, report.retried) == (150, 300)
    messages = OutboxMessage.objects.filter(connection=conn)
    assert messages.filter(state="delivered").count() == 150
    assert messages.filter(state="pending").count() == 300
    assert set(messages.filter(state="pending").values_list("last_error", flat=True)) == {
        "Braze is rate limiting requests (HTTP 429)."
    }


def test_claim_messages_bounds_the_claim_in_whole_requests(settings):
    from outputs.partners import registry

    braze, mailchimp, facebook = registry.get("braze"), registry.get("mailchimp"), registry.get("facebook")
    assert (claim_size(braze), claim_size(mailchimp), claim_size(facebook)) == (450, 500, 10_000)
    settings.CLAIM_MESSAGES = 1
    assert claim_size(braze) == 75  # never less than one request


def test_pruning_drops_finished_messages_and_delivery_records_past_the_keep_days(sandbox, settings):
    import datetime as dt

    from django.utils import timezone

    from connections import tasks

    conn = braze_connection(sandbox, 80)
    drain(conn.pk)
    old = timezone.now() - dt.timedelta(days=settings.OUTBOX_KEEP_DAYS + 1)
    OutboxMessage.objects.filter(connection=conn, value__startswith="c1").update(finished_at=old)
    Delivery.objects.filter(connection=conn).update(started_at=old)  # the one delivery: 80 messages, 2 requests
    recent = Delivery.objects.create(connection=conn, started_at=timezone.now(), duration_ms=1, messages=1, accepted=1)
    OutboxMessage.objects.create(
        connection=conn,
        identity_type="email",
        value="late@example.com",
        action="add",
        state="pending",
        next_attempt_at=old,
        created_at=old,
        updated_at=old,
    )  # waiting, however old: never pruned

    assert tasks.prune() == 11 + 1  # c1, c10…c19 and the old delivery record
    assert OutboxMessage.objects.filter(connection=conn).count() == 80 - 11 + 1
    assert list(Delivery.objects.filter(connection=conn)) == [recent]


def test_the_forward_command_counts_as_due_exactly_what_a_claim_takes(sandbox):
    """`forward`'s progress bar counts what the claims will take: pending messages whose next attempt has come
    and messages whose worker's lease ran out; not those backing off, held by a live worker, or finished."""
    import datetime as dt

    from django.utils import timezone

    from connections import outbox
    from connections.management.commands.forward import due_count

    conn = braze_connection(sandbox, 5)
    now, minute = timezone.now(), dt.timedelta(minutes=1)
    due, backing_off, expired, leased, delivered = OutboxMessage.objects.filter(connection=conn).order_by("pk")
    State = OutboxMessage.State
    OutboxMessage.objects.filter(pk=backing_off.pk).update(next_attempt_at=now + minute)
    OutboxLease.objects.create(connection=conn, message_ids=[expired.pk], expires_at=now - minute, created_at=now)
    OutboxLease.objects.create(connection=conn, message_ids=[leased.pk], expires_at=now + minute, created_at=now)
    OutboxMessage.objects.filter(pk=delivered.pk).update(state=State.DELIVERED, finished_at=now)

    assert due_count(conn) == 2
    assert sorted(row[0] for row in outbox.claim(conn.pk, 500)) == sorted([due.pk, expired.pk])
