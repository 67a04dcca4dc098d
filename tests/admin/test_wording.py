"""What a person reads on the output and connection pages: names, defaults, links and moments in plain words."""

import datetime as dt
import re

import pytest
from django.utils import timezone

from connections import services
from connections.funnel import types_phrase
from connections.models import Delivery
from outputs.models import Output
from tests.admin.conftest import message, page
from tests.audiences.factories import MembershipFactory
from tests.connections.factories import ConnectionFactory
from tests.outputs.factories import MAILCHIMP_KEY, MailchimpOutputFactory

pytestmark = pytest.mark.django_db

MOMENT = dt.datetime(2026, 12, 3, 4, 1, 3, 411652, tzinfo=dt.UTC)


def test_it_names_the_partner_and_shows_its_defaults_on_the_add_page(admin_client):
    html = page(admin_client.get("/admin/outputs/output/add/?kind=mailchimp"))

    assert '<div class="readonly">Mailchimp</div>' in html  # the Partner row is not empty
    assert '<option value="html" selected>HTML</option>' in html
    assert "---------" not in html  # no blank choice where the partner declares a default


def test_it_links_the_addresses_in_help_text_and_keeps_the_full_stop(admin_client):
    html = page(admin_client.get("/admin/outputs/output/add/?kind=mailchimp"))

    link = '<a href="https://mailchimp.com/help/about-api-keys/" target="_blank" rel="noopener">'
    assert f"Extras → API keys ({link}https://mailchimp.com/help/about-api-keys/</a>). It ends" in html


def test_it_shows_a_braze_connections_defaults_as_the_values_that_apply(admin_client):
    output = Output.objects.create(
        kind="braze", name="Braze", settings={"rest_endpoint": "https://rest.iad-01.braze.com"}
    )

    html = page(admin_client.get(f"/admin/connections/connection/add/?output={output.pk}"))

    assert 'name="setting__attribute_name" value="relay_audiences"' in html
    assert '<option value="external_id" selected>External ID</option>' in html
    assert '<option value="attribute" selected>One attribute per audience</option>' in html


def test_it_names_secrets_by_their_label_and_writes_the_check_time_plainly(admin_client):
    output = MailchimpOutputFactory()
    Output.objects.filter(pk=output.pk).update(credentials_checked_at=MOMENT, credentials_message="The key works.")

    html = page(admin_client.get(f"/admin/outputs/output/{output.pk}/change/"))

    assert "API key: set" in html and "api_key: set" not in html
    assert "The key works.<br><small>3 Dec 2026, 04:01:03</small>" in html
    assert "+00:00" not in html
    assert "<label>:</label>" not in html  # the check is a button among the page's tools, not an unlabelled row
    assert f'href="/admin/outputs/output/{output.pk}/check/"' in html


def test_after_adding_an_output_the_address_carries_no_partner_parameter(admin_client):
    form = page(admin_client.get("/admin/outputs/output/add/?kind=mailchimp"))
    action = re.search(r'<form [^>]*action="([^"]*)"[^>]*id="output_form"', form).group(1)

    response = admin_client.post(
        action,
        {
            "kind": "mailchimp",
            "name": "Newsletter",
            "base_url": "",
            "setting__api_key": MAILCHIMP_KEY,
            "setting__email_type": "html",
            "_continue": "1",
            "connections-TOTAL_FORMS": "0",
            "connections-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    assert response["Location"] == f"/admin/outputs/output/{Output.objects.get(name='Newsletter').pk}/change/"


def test_a_delivery_is_named_and_labelled_in_words(admin_client):
    delivery = Delivery.objects.create(
        connection=ConnectionFactory(), started_at=MOMENT, messages=7, http_status=200, duration_ms=45
    )

    html = page(admin_client.get(f"/admin/connections/delivery/{delivery.pk}/change/"))

    assert str(delivery) == "Delivery of 7 messages at 3 Dec 2026, 04:01:03"
    assert "<label>HTTP status:</label>" in html and "<label>Duration (ms):</label>" in html
    assert "Http status" not in html and "Duration ms" not in html


def test_a_profiles_memberships_are_named_by_profile_and_audience(admin_client):
    membership = MembershipFactory()

    html = page(admin_client.get(f"/admin/audiences/profile/{membership.profile.pk}/change/"))

    assert f"{membership.profile.external_id} in {membership.audience.name}" in html


def test_the_connection_page_writes_moments_plainly(admin_client):
    conn = ConnectionFactory()
    Delivery.objects.create(connection=conn, started_at=MOMENT, messages=1, error="x" * 300)

    html = page(admin_client.get(f"/admin/connections/connection/{conn.pk}/change/"))

    assert '<td class="nowrap">3 Dec 2026, 04:01:03</td>' in html
    assert "2026-12-03" not in html


def test_resuming_with_one_message_waiting_says_it_goes_out(admin_client):
    conn = ConnectionFactory(status="paused")
    message(conn, "ada@example.com", next_attempt_at=timezone.now())

    assert services.resume(conn).endswith(": 1 message waiting goes out now.")


def test_it_names_what_a_partner_accepts_as_people_say_it(admin_client):
    html = page(admin_client.get("/admin/outputs/output/add/"))

    assert types_phrase({"customer_id"}) == "customer IDs"
    assert types_phrase({"customer_id", "email", "mobile_number"}) == "email addresses, customer IDs or mobile numbers"
    assert "customer_id" not in html and "Email addresses, customer IDs" in html


def test_the_outputs_list_filters_by_credentials_in_words(admin_client):
    MailchimpOutputFactory(name="Works", credentials_ok=True)
    MailchimpOutputFactory(name="Refused", credentials_ok=False)
    MailchimpOutputFactory(name="Unchecked", credentials_ok=None)

    html = page(admin_client.get("/admin/outputs/output/"))
    assert "By credentials" in html and "credentials ok" not in html
    assert ">Not checked yet or being checked</a>" in html

    refused = page(admin_client.get("/admin/outputs/output/?credentials=failing"))
    assert "Refused" in refused and "Works" not in refused and "Unchecked" not in refused
    unchecked = page(admin_client.get("/admin/outputs/output/?credentials=unknown"))
    assert "Unchecked" in unchecked and "Refused" not in unchecked
