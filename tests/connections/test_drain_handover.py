"""A long drain hands its worker over when another connection's drain waits for one.

Every worker busy with a backfill used to keep a profile change of another connection queued until a backfill's
drain ran out of DRAIN_MAX_SECONDS (five minutes). Now a drain that has run DRAIN_HANDOVER_SECONDS stops after its
batches in flight once another connection's drain has waited that long, and queues its successor behind it.
The backfill here is slow on purpose: one free Braze slot (one lane), a partner taking 0.2 s a request.
"""

import pytest
from django.utils import timezone

from connections import services
from connections import slots as output_slots
from connections.models import Connection, OutboxMessage
from connections.tasks import drain_connection
from outputs.models import Output
from tests.connections.factories import StaticAudienceFactory, add_members

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "7c1e5a90-braze-sandbox-key-0002"
BATCHES = 8


@pytest.fixture
def output(sandbox, settings):
    settings.CLAIM_MESSAGES = 75  # one Braze request a claim
    settings.DRAIN_HANDOVER_SECONDS = 0.3
    sandbox.braze_key(KEY)
    sandbox.fault("braze", "slow", delay=0.2, probability=1.0, seed=0)
    output = Output(
        kind="braze",
        name="Braze",
        base_url=f"{sandbox.url}/braze",
        settings={"rest_endpoint": "https://rest.iad-01.braze.com"},
    )
    output.set_secrets({"api_key": KEY})
    output.save()
    # Another drain holds 9 of the 10 slots: the backfill below has one lane, its batches one after the other.
    assert len(output_slots.acquire(output, 9, "another drain", lease_seconds=600)) == 9
    return output


def connect(output, name, members):
    audience = StaticAudienceFactory(name=name)
    add_members(audience, emails=[f"{name}{i}@example.com" for i in range(members)])
    settings = {"identifier": "email", "membership": "array", "attribute_name": "relay_audiences"}
    return services.connect(audience, output, settings)  # queues its backfill's drain, as the admin does


def waiting(conn) -> int:
    return OutboxMessage.objects.filter(connection=conn, state__in=OutboxMessage.WAITING).count()


def test_a_backfill_hands_its_worker_over_to_another_connections_waiting_change(output):
    backfill = connect(output, "backfill", 75 * BATCHES)
    change = connect(output, "change", 1)  # its drain is queued: in this test no worker will start it
    started = timezone.now()

    report = drain_connection(backfill.pk)

    assert 0 < report["accepted"] < 75 * BATCHES, report  # it stopped early, with most of the backfill left
    assert report["more_due"] is True
    assert waiting(backfill) == 75 * BATCHES - report["accepted"]
    # Its successor is queued, behind the drain that waited (queued before it).
    backfill.refresh_from_db()
    change.refresh_from_db()
    assert backfill.drain_queued_at >= started
    assert change.drain_queued_at < backfill.drain_queued_at
    assert waiting(change) == 1  # the waiting change is the next drain's, not this one's


def test_a_backfill_with_no_one_waiting_drains_to_the_end(output):
    backfill = connect(output, "backfill", 75 * BATCHES)

    report = drain_connection(backfill.pk)

    assert report["accepted"] == 75 * BATCHES
    assert waiting(backfill) == 0
    assert Connection.objects.get(pk=backfill.pk).accepted_count == 75 * BATCHES
