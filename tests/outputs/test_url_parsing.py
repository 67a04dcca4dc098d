"""A URL is read the same way when it is checked and when it is sent: one that parsers read differently is refused.

`http://127.0.0.1\\@1.1.1.1/` is 1.1.1.1 to Python's urlsplit (what the save-time check used) and 127.0.0.1
to urllib3 (what requests connects to).
"""

import pytest

from outputs import netguard
from outputs.models import Output
from outputs.partners import http
from tests.outputs.factories import MAILCHIMP_KEY, MailchimpOutputFactory

pytestmark = pytest.mark.django_db

BACKSLASH = "The URL contains a backslash (\\), which programs read in different ways; use / instead."
USERINFO = "Put no user name or password (nothing before an @) in the host part of the URL."
SPACE = "The URL contains a space or a control character; remove it."
AMBIGUOUS = "http://127.0.0.1\\@1.1.1.1/"


@pytest.fixture
def guarded(settings):
    settings.ALLOW_PRIVATE_DESTINATIONS = False


def test_the_api_refuses_an_ambiguous_base_url_naming_the_field(api, guarded):
    output = MailchimpOutputFactory(base_url="")

    response = api.patch(f"/api/v1/outputs/{output.pk}/", {"base_url": AMBIGUOUS}, format="json")

    assert response.status_code == 400
    assert response.json() == {"base_url": [BACKSLASH]}
    output.refresh_from_db()
    assert output.base_url == ""


def test_the_admin_refuses_an_ambiguous_base_url_next_to_the_field(admin_client, guarded):
    response = admin_client.post(
        "/admin/outputs/output/add/?kind=mailchimp",
        {
            "name": "Mailchimp",
            "base_url": AMBIGUOUS,
            "setting__api_key": MAILCHIMP_KEY,
            "setting__email_type": "html",
            "connections-TOTAL_FORMS": "0",
            "connections-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["base_url"] == [BACKSLASH]
    assert not Output.objects.exists()


@pytest.mark.parametrize(
    ("url", "sentence"),
    [
        ("http://127.0.0.1\\@1.1.1.1/", BACKSLASH),
        ("https://hooks.example.com\\.attacker.example/", BACKSLASH),
        ("http://1.1.1.1@127.0.0.1/", USERINFO),
        ("http://user:pw@hooks.example.com/", USERINFO),
        ("http://hooks.example.com\t.attacker.example/", SPACE),
    ],
    ids=["backslash-userinfo", "backslash-host", "userinfo", "user-password", "tab"],
)
def test_an_authority_parsers_read_differently_is_refused_even_where_private_addresses_are_allowed(url, sentence):
    assert netguard.refusal(url) == sentence


def test_the_host_checked_is_the_host_the_client_connects_to(guarded):
    # urllib3 reads 127.0.0.1 here: the check must find that loopback address, not a public one.
    assert netguard.refusal("http://127.0.0.1:80/a\\b") == BACKSLASH
    assert netguard.refusal("http://127.0.0.1:8000/hook") == (
        "The address 127.0.0.1 is a loopback address (this machine); Audience Relay only sends to public addresses."
    )


def test_an_ambiguous_url_stored_before_the_rule_is_never_sent(sandbox):
    sandbox.webhook_endpoint("crm", "whsec")
    port = sandbox.url.rsplit(":", 1)[1]

    with pytest.raises(http.DestinationRefused) as caught:
        http.call("POST", f"http://127.0.0.1:{port}\\@1.1.1.1/webhook/crm", json={})

    assert str(caught.value) == BACKSLASH
    assert sandbox.webhook_deliveries("crm") == []
