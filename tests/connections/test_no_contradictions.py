"""One page never says two opposite things: each sentence speaks only of what it knows, when it knows it."""

import datetime as dt
import html
import re

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from audiences.models import Identity
from connections import services, verification
from connections.funnel import compute
from connections.models import Connection
from tests.connections.factories import StaticAudienceFactory, add_members, sandbox_output
from tests.connections.test_funnel import SEGMENT, xandr_output
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY

pytestmark = pytest.mark.django_db

LIST = "/admin/connections/connection/"


def text(response) -> str:
    assert response.status_code == 200
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


@pytest.mark.django_db(transaction=True)  # the drain sends from a pool of threads
def test_the_partner_count_never_says_the_connection_works_beside_a_failing_check(sandbox, parisians):
    from connections.drain import drain

    conn = services.connect(parisians, sandbox_output(sandbox), {"list_id": LIST_ID})
    drain(conn.pk)
    Connection.objects.filter(pk=conn.pk).update(status="faulted", status_reason="Mailchimp rejected the API key.")
    conn.refresh_from_db()

    status, checks = verification.verify(conn)

    assert status == "failing"
    details = {c.name: c.detail for c in checks}
    assert details["partner count"] == "Mailchimp reports 3, as many as were forwarded and accepted."
    assert details["destination"] == "The list 'Potential Parisians' exists."  # one count per verdict
    assert not any("working" in c.detail for c in checks)


def test_saving_a_fix_on_a_stopped_connection_says_nothing_goes_until_resume(admin_client, sandbox, parisians):
    conn = services.connect(parisians, sandbox_output(sandbox), {"list_id": "nope000000"})
    Connection.objects.filter(pk=conn.pk).update(status="faulted", status_reason="Mailchimp has no list …")
    sandbox.mailchimp_list(MAILCHIMP_KEY, "b2c3d4e5f6", "Parisians again")

    response = admin_client.post(
        f"{LIST}{conn.pk}/change/",
        {"setting__list_id": "b2c3d4e5f6", "delivery_mode": "", "interval_minutes": "", "interval_messages": ""},
    )

    assert response.status_code == 302
    said = [str(m) for m in get_messages(response.wsgi_request)]
    assert (
        "The destination changed: queued 3 messages so that the audience's current members reach it. Members "
        "already at the old destination stay there. The connection is still stopped by a fault: nothing is sent "
        "until you resume it (3 messages waiting)."
    ) in said


def test_an_interval_upload_never_shows_a_next_time_already_past(admin_client, sandbox):
    audience = StaticAudienceFactory(name="Android people")
    add_members(audience, aaids=["38400000-8cf0-11bd-b23e-10b96e40000d"])
    conn = services.connect(audience, xandr_output(sandbox), {"segment_id": SEGMENT})
    hour_ago = timezone.now() - dt.timedelta(hours=1)
    Connection.objects.filter(pk=conn.pk).update(last_upload_at=hour_ago)
    conn.messages.update(next_attempt_at=hour_ago)
    overdue_since = timezone.localtime(hour_ago + dt.timedelta(minutes=conn.interval_minutes))

    page = text(admin_client.get(f"{LIST}{conn.pk}/change/"))

    assert f"Next upload: overdue since {overdue_since:%Y-%m-%d %H:%M}" in page
    assert f"with the upload, overdue since {overdue_since:%Y-%m-%d %H:%M}" in page

    Connection.objects.filter(pk=conn.pk).update(last_upload_at=timezone.now() - dt.timedelta(seconds=30))
    conn.refresh_from_db()
    at = timezone.localtime(conn.last_upload_at + dt.timedelta(minutes=conn.interval_minutes))
    page = text(admin_client.get(f"{LIST}{conn.pk}/change/"))
    assert f"Next upload: {at:%Y-%m-%d %H:%M}" in page
    assert f"with the upload at {at:%Y-%m-%d %H:%M}" in page

    services.pause(conn)
    page = text(admin_client.get(f"{LIST}{conn.pk}/change/"))
    assert "Next upload: when the connection is resumed" in page


def test_the_funnel_says_members_with_at_least_one_of_the_types_when_they_hold_several(sandbox):
    audience = StaticAudienceFactory(name="Phones")
    profiles = add_members(audience, aaids=[f"00000000-0000-4000-8000-{i:012d}" for i in range(4)])
    # Three of the four also have an iPhone: 4 + 3 identities, 4 members.
    Identity.objects.bulk_create(
        Identity(profile=p, type="ios_idfa", value=f"10000000-0000-4000-8000-{i:012d}")
        for i, p in enumerate(profiles[:3])
    )
    conn = services.connect(audience, xandr_output(sandbox), {"segment_id": SEGMENT})

    reason = compute(conn, partner_count=None).steps[1].reason

    assert reason == (
        "4 have an Android advertising ID; 3 have an iOS advertising ID; AppNexus / Xandr accepts only mobile "
        "advertising IDs, so AppNexus / Xandr receives the 4 members with at least one of them (some have more "
        "than one)."
    )
