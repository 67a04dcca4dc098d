"""Every admin page writes a moment one way ("3 Dec 2026, 04:01:03") and an identity type by its label.

The trace page had its own date formats ("Dec 3, 04:01:03", "Dec 3, 2026 04:01"), the dashboard its own "ago",
and the outbox list, the connection page and the trace showed identity types as slugs ("android_aaid").
"""

import datetime as dt

import pytest
from django.utils import timezone

from audiences.models import Audience
from connections.models import Delivery
from tests.admin.conftest import message, page
from tests.audiences.factories import IdentityFactory, MembershipFactory, ProfileFactory
from tests.connections.factories import ConnectionFactory, StaticAudienceFactory

pytestmark = pytest.mark.django_db

AT = dt.datetime(2026, 12, 3, 4, 1, 3, tzinfo=dt.UTC)
AAID = "38400000-8cf0-41bd-b23e-000000000002"
EMAIL = "traveller002@example.com"
LABEL = "Android advertising ID (AAID)"


@pytest.fixture
def traced(settings):
    settings.TIME_ZONE = "UTC"
    profile = ProfileFactory(external_id="demo-002")
    identity = IdentityFactory(profile=profile, type="android_aaid", value=AAID)
    type(identity).objects.filter(pk=identity.pk).update(created_at=AT)
    audience = StaticAudienceFactory(name="Potential Parisians")
    MembershipFactory(audience=audience, profile=profile, since=AT)
    conn = ConnectionFactory(audience=audience, settings={"list_id": "a1b2c3d4e5"})
    Delivery.objects.create(connection=conn, started_at=AT + dt.timedelta(seconds=1), duration_ms=900, messages=1)
    message(
        conn,
        AAID,
        identity_type="android_aaid",
        state="delivered",
        attempts=1,
        created_at=AT,
        updated_at=AT + dt.timedelta(seconds=2),
        finished_at=AT + dt.timedelta(seconds=2),
    )
    IdentityFactory(profile=profile, type="email", value=EMAIL)  # what Mailchimp takes: where it stands there
    message(conn, EMAIL, state="delivered", attempts=1, created_at=AT, finished_at=AT + dt.timedelta(seconds=2))
    return conn


def test_the_trace_writes_every_moment_as_the_other_pages_do(admin_client, traced):
    html = page(admin_client.get("/admin/trace/", {"q": AAID}))

    assert html.count("3 Dec 2026, 04:01:03") >= 3  # the identity's and the membership's since, the queued time
    assert "3 Dec 2026, 04:01:05" in html  # sent
    assert "batch at 3 Dec 2026, 04:01:04" in html
    assert "Added to the partner 3 Dec 2026, 04:01:05" in html
    assert "Dec 3" not in html


def test_identity_types_read_as_their_labels_in_the_lists_and_pages(admin_client, traced):
    listed = page(admin_client.get("/admin/connections/outboxmessage/"))
    connection_page = page(admin_client.get(f"/admin/connections/connection/{traced.pk}/change/"))
    trace = page(admin_client.get("/admin/trace/", {"q": AAID}))

    for html in (listed, connection_page, trace):
        assert LABEL in html
        assert ">android_aaid<" not in html


def test_the_dashboard_shows_when_an_audience_was_refreshed_the_one_way_on_hover(admin_client, traced):
    Audience.objects.update(last_refreshed_at=timezone.now() - dt.timedelta(minutes=5))
    refreshed = timezone.localtime(Audience.objects.get().last_refreshed_at)

    html = page(admin_client.get("/admin/"))

    assert f'title="{refreshed.day} {refreshed:%b %Y, %H:%M:%S}" style="white-space: nowrap">5\xa0minutes ago' in html
