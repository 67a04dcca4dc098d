"""Identity trace: any identity value → its profile, audiences, the connections it goes through, and each message."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audiences.permissions import REFUSED
from connections.models import Delivery
from outputs.models import Output
from tests.admin.conftest import message, page
from tests.audiences.factories import IdentityFactory, MembershipFactory, ProfileFactory
from tests.connections.factories import ConnectionFactory, StaticAudienceFactory
from tests.outputs.factories import MailchimpOutputFactory

pytestmark = pytest.mark.django_db

TRACE = "/admin/trace/"
EMAIL = "traveller002@example.com"
AAID = "38400000-8cf0-41bd-b23e-000000000002"


@pytest.fixture
def traveller():
    profile = ProfileFactory(external_id="demo-002")
    IdentityFactory(profile=profile, type="email", value=EMAIL)
    IdentityFactory(profile=profile, type="android_aaid", value=AAID)
    IdentityFactory(profile=profile, type="customer_id", value="CUST-0002")
    return profile


@pytest.fixture
def routes(traveller):
    """Potential Parisians → Mailchimp (takes the email) and → AppNexus (takes the device ID)."""
    audience = StaticAudienceFactory(name="Potential Parisians")
    MembershipFactory(audience=audience, profile=traveller, since=timezone.now() - dt.timedelta(days=2))
    mailchimp = ConnectionFactory(audience=audience, verification_status="ok")
    xandr = Output.objects.create(kind="xandr", name="AppNexus (demo)", settings={"username": "demo"})
    appnexus = ConnectionFactory(
        audience=audience, output=xandr, settings={"segment_id": 5678}, status="faulted",
        status_reason="Xandr refused the login.", delivery_mode="interval",
    )  # fmt: skip
    return mailchimp, appnexus


def test_it_finds_the_profile_by_an_identity_as_typed(admin_client, traveller):
    html = page(admin_client.get(TRACE, {"q": "  Traveller002@Example.COM "}))

    assert f'href="/admin/audiences/profile/{traveller.pk}/change/">demo-002</a>' in html
    assert f'<span class="relay-match">{EMAIL}</span>' in html
    assert AAID in html and "CUST-0002" in html


@pytest.mark.parametrize("typed", ["demo-002", "CUST-0002", AAID.upper()])
def test_it_finds_the_profile_by_external_id_customer_id_or_device_id(admin_client, traveller, typed):
    assert ">demo-002</a>" in page(admin_client.get(TRACE, {"q": typed}))


def test_it_says_so_when_no_profile_has_the_identity(admin_client, traveller):
    html = page(admin_client.get(TRACE, {"q": "nobody@example.com"}))

    assert "No profile has that identity." in html
    assert "demo-002" not in html


def test_it_shows_messages_left_for_a_value_no_profile_holds_any_more(admin_client, routes, traveller):
    mailchimp, _ = routes
    message(mailchimp, "gone@example.com", state="delivered", action="remove", finished_at=timezone.now())

    html = page(admin_client.get(TRACE, {"q": "gone@example.com"}))

    assert "No profile has that identity." in html
    assert "Messages for this value are still in the outbox" in html
    assert "<strong>remove</strong> gone@example.com" in html


def test_it_shows_the_audiences_and_every_connection_with_whether_it_takes_the_identity(admin_client, routes):
    mailchimp, appnexus = routes

    html = page(admin_client.get(TRACE, {"q": EMAIL}))

    assert ">Potential Parisians</a>" in html
    assert "Member since" in html
    assert f'href="/admin/connections/connection/{mailchimp.pk}/change/"' in html
    assert f'href="/admin/connections/connection/{appnexus.pk}/change/"' in html
    assert f"Email: {EMAIL}" in html  # Mailchimp takes the email address
    assert f"Android advertising ID (AAID): {AAID}" in html  # AppNexus takes the device ID
    assert '<span class="relay-badge relay-bad">Faulted</span>' in html
    assert '<span class="relay-badge relay-good">OK</span>' in html


def test_it_says_when_a_partner_takes_none_of_the_profiles_identities(admin_client, routes, traveller):
    traveller.identities.filter(type="email").delete()

    html = page(admin_client.get(TRACE, {"q": "demo-002"}))

    assert "<strong>None.</strong>" in html
    assert "Mailchimp accepts only email addresses." in html
    assert "Not forwarded." in html


def test_it_shows_each_messages_history_and_the_batch_that_carried_it(admin_client, routes):
    mailchimp, appnexus = routes
    now = timezone.now()
    sent = now - dt.timedelta(hours=1)
    message(
        mailchimp, EMAIL, state="delivered", attempts=1, created_at=sent, finished_at=sent + dt.timedelta(seconds=1)
    )
    batch = Delivery.objects.create(
        connection=mailchimp, started_at=sent, duration_ms=1500, messages=50, accepted=49, rejected=1, http_status=200
    )
    Delivery.objects.create(connection=mailchimp, started_at=sent - dt.timedelta(minutes=5), messages=3, accepted=3)
    message(
        appnexus,
        AAID,
        identity_type="android_aaid",
        attempts=3,
        next_attempt_at=now + dt.timedelta(minutes=4),
        last_error="Xandr answered 503.",
    )
    message(mailchimp, "someone-else@example.com")  # another profile's: not shown

    html = page(admin_client.get(TRACE, {"q": EMAIL}))

    assert f"<strong>add</strong> {EMAIL}" in html
    assert f"<strong>add</strong> {AAID}" in html
    assert "someone-else@example.com" not in html
    assert '<span class="relay-badge relay-good">delivered</span>' in html
    assert '<span class="relay-badge relay-warn">retrying</span>' in html
    assert "3 attempts" in html and "Xandr answered 503." in html
    assert f'href="/admin/connections/delivery/{batch.pk}/change/"' in html
    assert "50 sent, 49 accepted, 1 rejected" in html
    assert "Added to the partner" in html  # where it stands at Mailchimp
    assert "Waiting to be added" in html and "attempt 4" in html  # and at AppNexus


def test_the_profile_page_and_the_dashboard_link_to_the_trace(admin_client, traveller):
    profile_page = page(admin_client.get(f"/admin/audiences/profile/{traveller.pk}/change/"))
    index = page(admin_client.get("/admin/"))

    assert f'href="{TRACE}?q=demo-002">Trace where it goes</a>' in profile_page
    assert f'action="{TRACE}"' in index  # the dashboard's "Trace an identity" box


def test_it_is_for_staff_who_may_view_profiles_and_see_identities(client, operator, viewer, django_user_model):
    client.force_login(operator)
    assert client.get(TRACE, {"q": EMAIL}).status_code == 200

    client.force_login(viewer)  # views profiles, but a trace is a member's identities and their history
    refused = client.get(TRACE, {"q": EMAIL})
    assert refused.status_code == 403
    assert REFUSED in refused.content.decode()

    client.force_login(django_user_model.objects.create_user("sam", password="pw-sam-1", is_staff=True))
    assert client.get(TRACE, {"q": EMAIL}).status_code == 403


def _trace_queries(client) -> int:
    client.get(TRACE, {"q": EMAIL})
    with CaptureQueriesContext(connection) as queries:
        page(client.get(TRACE, {"q": EMAIL}))
    return len(queries)


def test_its_query_count_does_not_grow_with_audiences_connections_or_messages(admin_client, routes, traveller):
    mailchimp, _ = routes
    message(mailchimp, EMAIL, state="delivered", attempts=1, finished_at=timezone.now())
    few = _trace_queries(admin_client)

    for n in range(8):
        audience = StaticAudienceFactory(name=f"Audience {n}")
        MembershipFactory(audience=audience, profile=traveller)
        conn = ConnectionFactory(audience=audience, output=MailchimpOutputFactory(name=f"Mailchimp {n}"))
        message(conn, EMAIL, state="delivered", attempts=1, finished_at=timezone.now())
        Delivery.objects.create(connection=conn, started_at=timezone.now(), messages=1, accepted=1)
    many = _trace_queries(admin_client)

    assert many == few
    assert few <= 9  # session, user, holders, profiles, identities, memberships, connections, messages, deliveries
