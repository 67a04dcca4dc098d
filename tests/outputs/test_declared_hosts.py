"""Credentials go only to the hosts each partner declares, unless the deployment allows base URL overrides.

The tests and the demo point outputs at the partner sandbox on 127.0.0.1 through the override, so
ALLOW_BASE_URL_OVERRIDE follows DEBUG (on here); tests of the production rule turn it off. The sandbox's
request counts are the proof that nothing was sent.
"""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from outputs.models import Output
from outputs.partners import destinations, http
from outputs.partners.base import Account
from outputs.partners.registry import all_partners, get
from outputs.services import clean_base_url
from tests.outputs.factories import MAILCHIMP_KEY, MailchimpOutputFactory

pytestmark = pytest.mark.django_db

ATTACKER = "http://attacker.example/steal"


def refused(name: str, hosts: str, host: str) -> str:
    return (
        f"{name} credentials are sent only to {name}'s own hosts ({hosts}), not to {host}: base URL overrides "
        "are off in this deployment (ALLOW_BASE_URL_OVERRIDE)."
    )


MAILCHIMP_REFUSED = refused("Mailchimp", "*.api.mailchimp.com", "attacker.example")


@pytest.fixture
def no_overrides(settings):
    """Production's rule: credentials go to the partners' own hosts only."""
    settings.ALLOW_BASE_URL_OVERRIDE = False


def requests_to(sandbox, partner: str) -> int:
    return sandbox.stats()["requests"][partner]


# --- refused when saved -----------------------------------------------------------------------------------


def test_the_api_refuses_a_base_url_off_the_partners_hosts_naming_the_field(api, no_overrides):
    output = MailchimpOutputFactory(base_url="")

    response = api.patch(f"/api/v1/outputs/{output.pk}/", {"base_url": ATTACKER}, format="json")

    assert response.status_code == 400
    assert response.json() == {"base_url": [MAILCHIMP_REFUSED]}
    output.refresh_from_db()
    assert output.base_url == ""


def test_the_api_refuses_a_new_output_pointed_off_the_partners_hosts(api, no_overrides):
    body = {"kind": "mailchimp", "name": "Mailchimp", "base_url": ATTACKER, "settings": {"api_key": MAILCHIMP_KEY}}

    response = api.post("/api/v1/outputs/", body, format="json")

    assert response.status_code == 400
    assert response.json() == {"base_url": [MAILCHIMP_REFUSED]}
    assert not Output.objects.exists()


def test_a_braze_base_url_cannot_get_around_the_rest_endpoint_check(api, no_overrides):
    settings = {"api_key": "braze-key", "rest_endpoint": "https://rest.iad-01.braze.com"}
    body = {"kind": "braze", "name": "Braze", "base_url": ATTACKER, "settings": settings}

    response = api.post("/api/v1/outputs/", body, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "base_url": [refused("Braze", "rest.iad-01.braze.com, rest.iad-02.braze.com and 10 more", "attacker.example")]
    }


def test_the_admin_refuses_a_base_url_off_the_partners_hosts_next_to_the_field(admin_client, no_overrides):
    response = admin_client.post(
        "/admin/outputs/output/add/?kind=mailchimp",
        {
            "name": "Mailchimp",
            "base_url": ATTACKER,
            "setting__api_key": MAILCHIMP_KEY,
            "setting__email_type": "html",
            "connections-TOTAL_FORMS": "0",
            "connections-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["base_url"] == [MAILCHIMP_REFUSED]
    assert not Output.objects.exists()


def test_a_webhook_has_no_base_url_to_override(api, no_overrides):
    settings = {"url": "https://hooks.example.com/relay", "secret": "whsec"}
    body = {"kind": "webhook", "name": "Hooks", "base_url": "https://hooks.example.com", "settings": settings}

    response = api.post("/api/v1/outputs/", body, format="json")

    assert response.status_code == 400
    assert response.json() == {"base_url": ["Webhook sends to the URL in its settings: leave the base URL empty."]}


@pytest.mark.parametrize(
    ("kind", "base_url"),
    [
        ("mailchimp", "https://us6.api.mailchimp.com"),
        ("braze", "https://rest.fra-02.braze.eu"),
        ("facebook", "https://graph.facebook.com"),
        ("xandr", "https://api.appnexus.com"),
    ],
)
def test_a_base_url_on_a_declared_host_is_accepted(no_overrides, kind, base_url):
    assert clean_base_url(base_url, kind) == base_url


def test_a_mailchimp_base_url_on_its_data_center_host_is_saved(api, no_overrides):
    output = MailchimpOutputFactory(base_url="")

    response = api.patch(f"/api/v1/outputs/{output.pk}/", {"base_url": "https://us6.api.mailchimp.com"}, format="json")

    assert response.status_code == 200, response.json()
    output.refresh_from_db()
    assert output.base_url == "https://us6.api.mailchimp.com"


def test_the_catalog_lists_each_partners_hosts_and_destination_settings(api):
    partners = {p["slug"]: p for p in api.get("/api/v1/partners/").json()}

    assert partners["mailchimp"]["hosts"] == ["*.api.mailchimp.com"]
    assert partners["facebook"]["hosts"] == ["graph.facebook.com"]
    assert partners["xandr"]["hosts"] == ["api.appnexus.com", "*.adnxs.net"]
    assert "rest.fra-02.braze.eu" in partners["braze"]["hosts"]
    assert partners["webhook"]["hosts"] == []
    destination = {slug: [s["name"] for s in p["output_settings"] if s["destination"]] for slug, p in partners.items()}
    assert partners["klaviyo"]["hosts"] == ["a.klaviyo.com"]
    # Only these partners have a setting that says where requests go; a partner added later has none unless it says so.
    assert {slug: names for slug, names in destination.items() if names} == {
        "braze": ["rest_endpoint"],
        "webhook": ["url"],
    }


# --- never contacted once stored ------------------------------------------------------------------------------


def test_a_stored_override_is_never_contacted_and_the_check_says_why(api, sandbox, no_overrides):
    sandbox.mailchimp_account(MAILCHIMP_KEY)
    output = MailchimpOutputFactory(base_url=f"{sandbox.base_url}/mailchimp/{{dc}}")  # saved while overrides were on

    response = api.post(f"/api/v1/outputs/{output.pk}/check/")

    assert response.json()["status"] == "failing"
    assert response.json()["detail"] == "Could not reach Mailchimp: " + refused(
        "Mailchimp", "*.api.mailchimp.com", "127.0.0.1"
    )
    assert requests_to(sandbox, "mailchimp") == 0


ACCOUNTS = {
    "mailchimp": lambda s: Account({"api_key": MAILCHIMP_KEY}, f"{s.base_url}/mailchimp/{{dc}}"),
    "braze": lambda s: Account({"api_key": "k", "rest_endpoint": "https://rest.iad-01.braze.com"}, s.braze_url()),
    "xandr": lambda s: Account({"username": "relay-api", "password": "pw-xandr", "member_id": 1}, s.xandr_url()),
    "facebook": lambda s: Account({"access_token": "t", "ad_account_id": "act_1"}, s.facebook_url(version=None)),
    "klaviyo": lambda s: Account({"api_key": "pk_relay"}, f"{s.base_url}/klaviyo"),
    "google_ads": lambda s: Account(
        {
            "developer_token": "dev",
            "client_id": "client",
            "client_secret": "secret",
            "refresh_token": "refresh",
            "customer_id": "123-456-7890",
            "login_customer_id": "",
            "api_version": "v24",
        },
        f"{s.base_url}/google_ads",
    ),
}


def test_every_partner_that_declares_hosts_is_tried_against_an_undeclared_one():
    declared = sorted(p.slug for p in all_partners() if p.hosts)

    assert sorted(ACCOUNTS) == declared, "give the new partner an account in ACCOUNTS"


@pytest.mark.parametrize("slug", sorted(ACCOUNTS))
def test_no_partner_sends_credentials_to_an_undeclared_host(sandbox, no_overrides, slug):
    partner = get(slug)

    with pytest.raises(http.DestinationRefused) as caught:
        partner.check_credentials(ACCOUNTS[slug](sandbox))

    assert str(caught.value) == refused(partner.name, destinations.listed(partner), "127.0.0.1")
    assert requests_to(sandbox, slug) == 0


def test_a_batch_for_an_undeclared_host_faults_without_a_request(sandbox, no_overrides):
    from outputs.partners.base import Message

    message = Message(1, "add", "email", "ada@example.com", "Potential Parisians")

    result = get("mailchimp").send(ACCOUNTS["mailchimp"](sandbox), {"list_id": "a1b2c3d4e5"}, [message])

    assert result.fault.kind == "destination"
    assert result.fault.message == MAILCHIMP_REFUSED.replace("attacker.example", "127.0.0.1")
    assert requests_to(sandbox, "mailchimp") == 0


def test_an_address_a_partners_answer_names_is_held_to_its_hosts(no_overrides):
    """Xandr hands out upload URLs: its own hosts take the file and the token, no other."""
    xandr = get("xandr")

    with destinations.working_for(xandr):
        assert destinations.current_refusal("https://01.data-api.prod.adnxs.net/segment-upload/JFY8") == ""
        assert destinations.current_refusal("https://data-api-gslb.adnxs.net/segment-upload/JFY8") == ""
        assert destinations.current_refusal("https://adnxs.net.attacker.example/x") == refused(
            xandr.name, "api.appnexus.com, *.adnxs.net", "adnxs.net.attacker.example"
        )


def test_overrides_are_sent_where_the_deployment_allows_them(sandbox, settings):
    settings.ALLOW_BASE_URL_OVERRIDE = True
    sandbox.mailchimp_account(MAILCHIMP_KEY)

    check = get("mailchimp").check_credentials(ACCOUNTS["mailchimp"](sandbox))

    assert check.status == "ok"
    assert requests_to(sandbox, "mailchimp") == 1


def test_the_demo_stops_before_changing_anything_where_it_could_not_send_to_the_sandbox(no_overrides):
    with pytest.raises(CommandError) as caught:
        call_command("demo", sandbox_port=0, stdout=io.StringIO())

    assert str(caught.value).startswith("The demo sends to the partner sandbox at http://127.0.0.1:")
    assert str(caught.value).endswith(MAILCHIMP_REFUSED.replace("attacker.example", "127.0.0.1"))
    assert not Output.objects.exists()


def test_overrides_are_off_in_production_settings():
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "a-production-like-secret-key-for-this-test-only",
        "SECRETS_ENCRYPTION_KEYS": "1yfiPGF-ZqAK_WsrZ-gke3X6P-Hwu1cgZlw_hE8EVKU=",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.pop("ALLOW_BASE_URL_OVERRIDE", None)
    code = "import django; django.setup(); from django.conf import settings; print(settings.ALLOW_BASE_URL_OVERRIDE)"

    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True
    )

    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
