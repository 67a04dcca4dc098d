"""An output's concurrency limit holds for as long as a drain runs, however long that is.

A drain leases its output's request slots for OUTBOX_LEASE_SECONDS and may run for DRAIN_MAX_SECONDS: it
renews the lease while it runs, and a slot is only ever extended or freed by the drain that holds it.
The clock is moved past the lease by passing `now` to the slot functions. A running drain renews its lease from a
thread on the real clock: the tests below wait for those renewals (or for the renewal that finds the slot gone) as
events, with a lease of two seconds, instead of sleeping for a fixed time.
"""

import datetime as dt

import pytest
from django.db import transaction
from django.utils import timezone

from connections import services
from connections import slots as output_slots
from connections.drain import drain
from connections.models import OutboxMessage, OutputSlot
from outputs.models import Output
from tests.connections.factories import StaticAudienceFactory, add_members
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "7c1e5a90-braze-sandbox-key-0001"
LEASE = 2  # seconds: the drains below run for about twice as long


@pytest.fixture
def output(sandbox, settings):
    settings.CLAIM_MESSAGES = 75  # one Braze request a claim: a few members make a drain of several batches
    sandbox.braze_key(KEY)
    output = Output(
        kind="braze",
        name="Braze",
        base_url=f"{sandbox.url}/braze",
        settings={"rest_endpoint": "https://rest.iad-01.braze.com"},
    )
    output.set_secrets({"api_key": KEY})
    output.save()
    return output


@pytest.fixture
def one_free_slot(output):
    """Another connection's drain holds 9 of Braze's 10 slots: the drain under test gets one lane, so its
    batches go one after the other and the drain outlasts the lease."""
    assert len(output_slots.acquire(output, 9, "another drain", lease_seconds=600)) == 9
    return output


def connection(output, members):
    audience = StaticAudienceFactory()
    add_members(audience, emails=[f"m{i}@example.com" for i in range(members)])
    settings = {"identifier": "email", "membership": "array", "attribute_name": "relay_audiences"}
    return services.connect(audience, output, settings)


def tagged(sandbox):
    return sum(1 for user in sandbox.braze_users()["users"].values() if user.get("relay_audiences"))


def drains_lease_ends(output):
    """When the lease of the drain under test ends (the slot neither the other drain nor B holds)."""
    row = OutputSlot.objects.filter(output=output).exclude(holder__in=["another drain", "B", ""]).first()
    return row.lease_expires_at if row else None


def held_by(output, holder):
    return OutputSlot.objects.filter(output=output, holder=holder, lease_expires_at__gte=timezone.now()).count()


# --- the slot functions, with the clock passed in ----------------------------------------------------------


def test_a_renewed_lease_keeps_a_second_holder_out_past_the_first_lease(output):
    t0 = timezone.now()
    a = output_slots.acquire(output, 10, "A", 120, now=t0)

    assert output_slots.renew(a, "A", 120, now=t0 + dt.timedelta(seconds=61)) == set(a)
    assert output_slots.acquire(output, 10, "B", 120, now=t0 + dt.timedelta(seconds=121)) == []


def test_a_release_frees_only_the_releasers_slots(output):
    t0 = timezone.now()
    a = output_slots.acquire(output, 10, "A", 120, now=t0)
    late = t0 + dt.timedelta(seconds=121)  # A stalled past its lease without renewing
    b = output_slots.acquire(output, 10, "B", 120, now=late)
    assert len(b) == 10

    assert output_slots.renew(a, "A", 120, now=late) == set()  # A learns it lost every slot
    output_slots.release(a, "A")

    assert output_slots.acquire(output, 10, "C", 120, now=late + dt.timedelta(seconds=1)) == []
    assert OutputSlot.objects.filter(output=output, holder="B").count() == 10


# --- a running drain ---------------------------------------------------------------------------------------


def test_a_drain_longer_than_the_lease_keeps_its_slot_until_it_ends(sandbox, one_free_slot, settings):
    settings.OUTBOX_LEASE_SECONDS = LEASE
    conn = connection(one_free_slot, 225)  # three requests of 75 through one lane
    second_holder_got = []

    def after_each_batch(counts):
        # Another drain of the output asks for a slot; then the drain's lease is renewed twice (two thirds of a
        # lease pass), so three batches span two leases: the slot stays the drain's only because it is renewed.
        second_holder_got.extend(output_slots.acquire(one_free_slot, 10, "B", LEASE))
        for _ in range(2):
            ends = drains_lease_ends(one_free_slot)
            renewed = lambda ends=ends: drains_lease_ends(one_free_slot) != ends  # noqa: E731
            wait_until(renewed, LEASE * 5, "a renewal of the drain's lease")

    report = drain(conn.pk, progress=after_each_batch)

    assert report.accepted == 225
    assert second_holder_got == []
    assert sandbox.stats()["max_concurrent"]["braze"] == 1
    assert tagged(sandbox) == 225
    assert len(output_slots.acquire(one_free_slot, 10, "B", LEASE)) == 1  # given back when the drain ended


def test_a_drain_that_lost_its_slot_stops_sending_and_leaves_the_new_holder_its_slot(
    sandbox, one_free_slot, settings, caplog
):
    settings.OUTBOX_LEASE_SECONDS = LEASE
    conn = connection(one_free_slot, 225)
    stalled = []

    def stall_after_the_first_batch(counts):
        if stalled:
            return
        stalled.append(True)
        with transaction.atomic():  # the drain stalled past its lease, and another drain took the slot
            OutputSlot.objects.filter(output=one_free_slot).exclude(holder="another drain").update(
                lease_expires_at=timezone.now() - dt.timedelta(seconds=1)
            )
            assert len(output_slots.acquire(one_free_slot, 10, "B", 600)) == 1
        # The drain's next renewal finds the slot gone and says so; only then does the drain go on.
        wait_until(
            lambda: any("lost 1 request slot" in r.getMessage() for r in caplog.records),
            LEASE * 5,
            "the drain's renewal finding its slot gone",
        )

    report = drain(conn.pk, progress=stall_after_the_first_batch)

    assert report.accepted == 75
    assert report.more_due  # the rest goes with the next drain
    assert tagged(sandbox) == 75
    assert OutboxMessage.objects.filter(connection=conn, state="pending").count() == 150
    assert held_by(one_free_slot, "B") == 1  # the stalled drain's release did not free it
