"""Xandr drops segment members 180 days after the upload that added them: members who stay are sent again.

Real HTTP against the partner sandbox, whose clock is moved forward as our own records are moved back.
"""

import datetime as dt

import pytest
from django.db.models import F

from connections import refresh, services, tasks, verification
from connections.drain import drain
from connections.models import Connection, OutboxMessage
from outputs.models import Output
from tests.connections.factories import StaticAudienceFactory, add_members

pytestmark = pytest.mark.django_db

MEMBER, SEGMENT = 1234, 5678


def aaid(n):
    return f"00000000-0000-4000-8000-{n:012d}"


@pytest.fixture(params=["avro", "legacy"])
def conn(sandbox, request):
    # The sandbox's member reads only the output's file format, as a Xandr member set up for it does.
    sandbox.xandr_account("demo", "demo-pass", MEMBER, file_format=request.param)
    sandbox.xandr_segment(MEMBER, SEGMENT)
    output = Output(
        kind="xandr",
        name="AppNexus",
        base_url=sandbox.url + "/xandr",
        settings={"username": "demo", "member_id": MEMBER, "file_format": request.param},
    )
    output.set_secrets({"password": "demo-pass"})
    output.save()
    audience = StaticAudienceFactory(name="Devices")
    add_members(audience, aaids=[aaid(i) for i in range(5)])
    conn = services.connect(audience, output, {"segment_id": SEGMENT}, minutes=15, messages=10)
    drain(conn.pk)
    return conn


def days_pass(sandbox, days):
    """`days` go by: the sandbox's clock moves forward, and everything we recorded moves back."""
    sandbox.advance_clock(days)
    ago = dt.timedelta(days=days)
    OutboxMessage.objects.update(created_at=F("created_at") - ago, finished_at=F("finished_at") - ago)
    Connection.objects.update(created_at=F("created_at") - ago)


def held(sandbox):
    return sandbox.xandr_segment_state(SEGMENT)["members"]


def test_it_uploads_members_again_before_xandr_expires_them(sandbox, conn):
    assert len(held(sandbox)) == 5

    days_pass(sandbox, 61)  # past the default refresh age of 60 days
    assert refresh.refresh_all() == {conn.pk: 5}
    assert tasks.sweep() == [conn.pk]  # in the normal upload, on the connection's interval
    tasks.drain_connection(conn.pk)

    days_pass(sandbox, 150)  # 211 days after the first upload, 150 after the refresh
    assert held(sandbox) == [aaid(i) for i in range(5)]


def test_it_queues_nothing_for_members_added_within_the_refresh_age(sandbox, conn):
    days_pass(sandbox, 59)

    assert refresh.refresh_all() == {conn.pk: 0}
    assert not OutboxMessage.objects.filter(state="pending").exists()


def test_it_follows_the_refresh_age_of_the_connection(sandbox, conn):
    services.update_connection(conn, {"segment_id": SEGMENT, "refresh_days": 30})
    days_pass(sandbox, 31)

    assert refresh.refresh_all() == {conn.pk: 5}


def test_it_spreads_a_large_refresh_over_several_uploads_oldest_first(sandbox, conn):
    days_pass(sandbox, 61)
    oldest = OutboxMessage.objects.filter(value__in=[aaid(3), aaid(4)])
    oldest.update(finished_at=F("finished_at") - dt.timedelta(days=5))

    first = refresh.refresh_all(spread_runs=2, min_per_run=1)  # at most half of the audience a run

    assert first == {conn.pk: 3}
    pending = set(OutboxMessage.objects.filter(state="pending").values_list("value", flat=True))
    assert {aaid(3), aaid(4)} < pending
    tasks.drain_connection(conn.pk)
    assert refresh.refresh_all(spread_runs=2, min_per_run=1) == {conn.pk: 2}
    tasks.drain_connection(conn.pk)
    assert refresh.refresh_all(spread_runs=2, min_per_run=1) == {conn.pk: 0}


def test_the_prune_keeps_each_members_last_delivered_add(sandbox, conn):
    days_pass(sandbox, 61)
    refresh.refresh_all()
    tasks.drain_connection(conn.pk)
    days_pass(sandbox, 30)  # the first adds and the refresh are both past OUTBOX_KEEP_DAYS

    tasks.prune()

    kept = OutboxMessage.objects.filter(connection=conn).order_by("value")
    assert [(m.value, m.action, m.state) for m in kept] == [(aaid(i), "add", "delivered") for i in range(5)]
    assert refresh.refresh_all() == {conn.pk: 0}  # refreshed 30 days ago: not due yet


def test_verification_is_ok_when_every_member_was_added_within_the_expiration(sandbox, conn):
    days_pass(sandbox, 100)

    _, checks = verification.verify(conn)

    expiry = next(c for c in checks if c.name == "expiry")
    assert (expiry.status, expiry.detail) == (
        "ok",
        "Every member was added to AppNexus / Xandr within the last 180 days.",
    )


def test_a_refresh_age_xandr_would_not_wait_for_is_a_400_naming_the_setting(api, sandbox):
    sandbox.xandr_account("demo", "demo-pass", MEMBER)
    output = Output(kind="xandr", name="AppNexus", settings={"username": "demo", "member_id": MEMBER})
    output.set_secrets({"password": "demo-pass"})
    output.save()
    audience = StaticAudienceFactory(name="Devices")
    body = {"audience": audience.pk, "output": output.pk, "settings": {"segment_id": SEGMENT, "refresh_days": 181}}

    response = api.post("/api/v1/connections/", body, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "settings": {"refresh_days": ["Must be between 1 and 150 days: Xandr drops segment members after 180 days."]}
    }
    assert not Connection.objects.exists()
