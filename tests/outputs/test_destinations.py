"""Destinations: partner requests go only to public http(s) addresses, checked when saved and when connecting.

Private destinations are allowed in development and tests (ALLOW_PRIVATE_DESTINATIONS follows DEBUG), so
tests of refusal turn the setting off. Host names are answered by a stand-in for the OS resolver
(`socket.getaddrinfo`); addresses are real requests against the partner sandbox on 127.0.0.1.
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.core.exceptions import ValidationError

from connections import services
from connections.drain import drain
from connections.models import Connection, OutboxMessage
from outputs import netguard
from outputs.models import Output
from outputs.partners import http
from outputs.partners.base import DESTINATION_HINT, Account, Fault, Message
from outputs.partners.registry import get
from outputs.services import check_credentials, clean_base_url, clean_output_settings
from tests.connections.factories import StaticAudienceFactory, add_members, sandbox_output
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY

PUBLIC_ONLY = "Audience Relay only sends to public addresses."
PUBLIC = "93.184.216.34"
SECRET = "whsec-destinations-s3cret"
INLINES = {"connections-TOTAL_FORMS": "0", "connections-INITIAL_FORMS": "0"}


@pytest.fixture
def guarded(settings):
    """Production's rule: only public addresses."""
    settings.ALLOW_PRIVATE_DESTINATIONS = False


@pytest.fixture
def resolver(monkeypatch):
    """Answers for host names: {name: [answer, answer, ...]}, each answer a list of addresses; the last repeats."""
    real = socket.getaddrinfo
    answers: dict[str, list[list[str]]] = {}
    calls: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        calls.append(host)
        queue = answers[host]
        addresses = queue.pop(0) if len(queue) > 1 else queue[0]
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0))
            if ":" in a
            else (socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers, calls


def inject(sandbox, **spec):
    """Inject a sandbox fault through its control API (the answer kinds take fields the client does not name)."""
    response = requests.post(f"{sandbox.url}/_sandbox/faults", json=spec, timeout=10)
    assert response.status_code == 201, response.text


def webhook_account(sandbox, url=None):
    sandbox.webhook_endpoint("crm", SECRET)
    return Account({"url": url or sandbox.webhook_url("crm"), "secret": SECRET})


def add(key, value="ada@example.com"):
    return Message(key, "add", "email", value, "Potential Parisians")


CONNECTION = {"identity_types": ["email"], "hash_identities": False}


# --- one refusal per kind of address ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "sentence"),
    [
        ("http://127.0.0.1:8000/hook", "The address 127.0.0.1 is a loopback address (this machine)"),
        ("http://10.0.0.5/hook", "The address 10.0.0.5 is on a private network"),
        ("http://172.16.0.1/hook", "The address 172.16.0.1 is on a private network"),
        ("http://192.168.1.1/hook", "The address 192.168.1.1 is on a private network"),
        ("http://169.254.1.1/hook", "The address 169.254.1.1 is link-local"),
        ("http://169.254.169.254/latest/meta-data/", "The address 169.254.169.254 is a cloud metadata service"),
        ("http://100.64.0.1/hook", "The address 100.64.0.1 is in the shared address space of a carrier's network"),
        ("http://224.0.0.1/hook", "The address 224.0.0.1 is a multicast address"),
        ("http://0.0.0.0:8000/hook", "The address 0.0.0.0 is the unspecified address (this machine)"),
        ("http://240.0.0.1/hook", "The address 240.0.0.1 is in a reserved range"),
        ("http://[::1]:8000/hook", "The address ::1 is a loopback address (this machine)"),
        ("http://[fd12:3456::1]/hook", "The address fd12:3456::1 is on a private network"),
        ("http://[fe80::1]/hook", "The address fe80::1 is link-local"),
        ("http://[fd00:ec2::254]/", "The address fd00:ec2::254 is a cloud metadata service"),
        (
            "http://[::ffff:10.0.0.1]/hook",
            "The address ::ffff:10.0.0.1 carries the IPv4 address 10.0.0.1, which is on a private network",
        ),
        (
            "http://[::ffff:127.0.0.1]/hook",
            "The address ::ffff:127.0.0.1 carries the IPv4 address 127.0.0.1, which is a loopback address "
            "(this machine)",
        ),
        (
            "http://[2002:a00:1::1]/hook",
            "The address 2002:a00:1::1 carries the IPv4 address 10.0.0.1, which is on a private network",
        ),
        (
            "http://[64:ff9b::a9fe:a9fe]/",
            "The address 64:ff9b::a9fe:a9fe carries the IPv4 address 169.254.169.254, which is a cloud metadata "
            "service",
        ),
        # Python 3.11 calls these global; they are not.
        ("http://[fec0::1]/hook", "The address fec0::1 is on a private network"),
        ("http://192.0.0.8/hook", "The address 192.0.0.8 is in a reserved range"),
        ("http://[3fff::1]/hook", "The address 3fff::1 is in a reserved range"),
    ],
    ids=[
        "v4-loopback",
        "v4-private-10",
        "v4-private-172.16",
        "v4-private-192.168",
        "v4-link-local",
        "v4-metadata",
        "v4-shared-100.64",
        "v4-multicast",
        "v4-unspecified",
        "v4-reserved",
        "v6-loopback",
        "v6-ula",
        "v6-link-local",
        "v6-metadata",
        "v4-mapped-private",
        "v4-mapped-loopback",
        "6to4-private",
        "nat64-metadata",
        "v6-site-local",
        "v4-ietf-protocol",
        "v6-documentation",
    ],
)
def test_it_refuses_an_address_that_is_not_public(guarded, url, sentence):
    assert netguard.refusal(url) == f"{sentence}; {PUBLIC_ONLY}"


def test_it_refuses_a_name_when_any_of_its_addresses_is_private(guarded, resolver):
    answers, _ = resolver
    answers["hooks.example.com"] = [[PUBLIC, "10.0.0.5"]]

    assert netguard.refusal("https://hooks.example.com/relay") == (
        f"The address 10.0.0.5 of hooks.example.com is on a private network; {PUBLIC_ONLY}"
    )


def test_it_refuses_a_metadata_service_by_its_name(guarded):
    assert netguard.refusal("http://metadata.google.internal/computeMetadata/v1/") == (
        f"metadata.google.internal is a cloud metadata service; {PUBLIC_ONLY}"
    )


def test_it_allows_a_name_whose_addresses_are_all_public(guarded, resolver):
    answers, _ = resolver
    answers["hooks.example.com"] = [[PUBLIC, "2606:2800:220:1:248:1893:25c8:1946"]]

    assert netguard.refusal("https://hooks.example.com/relay") == ""


def test_a_host_that_does_not_resolve_is_a_sentence(guarded, resolver):
    answers, _ = resolver
    answers["hooks.example.com"] = [[]]

    assert netguard.refusal("https://hooks.example.com/relay") == (
        "The host hooks.example.com could not be found; check the spelling of the URL."
    )


def test_a_host_name_idna_cannot_encode_is_a_sentence_not_a_crash(guarded, api):
    host = "é" * 60 + ".com"  # 60 characters pass URL validation; IDNA-encoded, the label is over 63
    body = {"kind": "mailchimp", "name": "Mailchimp", "base_url": f"http://{host}/", "settings": {}}

    assert netguard.refusal(f"http://{host}/") == f"The host {host} could not be found; check the spelling of the URL."
    response = api.post("/api/v1/outputs/", body, format="json")
    assert response.status_code == 400
    assert response.json()["base_url"] == [f"The host {host} could not be found; check the spelling of the URL."]


def test_no_proxy_from_the_environment_carries_requests_past_the_check(guarded, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")

    with pytest.raises(http.DestinationRefused, match="169.254.169.254 is a cloud metadata service"):
        http.call("GET", "http://169.254.169.254/latest/meta-data/")


@pytest.mark.parametrize("scheme", ["ftp", "file", "gopher"])
def test_it_refuses_other_schemes_than_http(guarded, scheme):
    assert netguard.refusal(f"{scheme}://files.example.com/audience") == (
        f"Only http:// and https:// addresses can be used, not {scheme}://."
    )


@pytest.mark.parametrize("scheme", ["ftp", "file", "gopher"])
def test_other_schemes_are_refused_even_where_private_addresses_are_allowed(scheme):
    assert netguard.refusal(f"{scheme}://127.0.0.1/x") == (
        f"Only http:// and https:// addresses can be used, not {scheme}://."
    )


# --- refused when saved ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_refuses_a_private_webhook_url_naming_the_setting(api, guarded):
    body = {"kind": "webhook", "name": "Hooks", "settings": {"url": "http://10.0.0.5/hook", "secret": SECRET}}

    response = api.post("/api/v1/outputs/", body, format="json")

    assert response.status_code == 400
    assert response.json() == {"settings": {"url": [f"The address 10.0.0.5 is on a private network; {PUBLIC_ONLY}"]}}
    assert not Output.objects.exists()


@pytest.mark.django_db
def test_the_api_refuses_a_private_base_url_naming_the_field(api, guarded):
    body = {
        "kind": "mailchimp",
        "name": "Mailchimp",
        "base_url": "http://169.254.169.254/latest/meta-data/",
        "settings": {"api_key": MAILCHIMP_KEY},
    }

    response = api.post("/api/v1/outputs/", body, format="json")

    assert response.status_code == 400
    assert response.json() == {"base_url": [f"The address 169.254.169.254 is a cloud metadata service; {PUBLIC_ONLY}"]}
    assert not Output.objects.exists()


@pytest.mark.django_db
def test_the_api_refuses_an_ftp_base_url(api):
    body = {"kind": "mailchimp", "name": "Mailchimp", "base_url": "ftp://ftp.example.com/", "settings": {}}
    body["settings"]["api_key"] = MAILCHIMP_KEY

    response = api.post("/api/v1/outputs/", body, format="json")

    assert response.status_code == 400
    assert response.json() == {"base_url": ["Only http:// and https:// addresses can be used, not ftp://."]}


@pytest.mark.django_db
def test_the_api_refuses_changing_an_output_to_a_private_url(api, guarded, resolver):
    answers, _ = resolver
    answers["hooks.example.com"] = [[PUBLIC], ["192.168.0.7"]]
    body = {"kind": "webhook", "name": "Hooks", "settings": {"url": "https://hooks.example.com/a", "secret": SECRET}}
    output_id = api.post("/api/v1/outputs/", body, format="json").json()["id"]

    change = {"settings": {"url": "https://hooks.example.com/b"}}
    response = api.patch(f"/api/v1/outputs/{output_id}/", change, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "settings": {"url": [f"The address 192.168.0.7 of hooks.example.com is on a private network; {PUBLIC_ONLY}"]}
    }
    assert Output.objects.get().settings["url"] == "https://hooks.example.com/a"


@pytest.mark.django_db
def test_the_admin_refuses_a_private_webhook_url(admin_client, guarded):
    response = admin_client.post(
        "/admin/outputs/output/add/?kind=webhook",
        {
            "name": "Hooks",
            "base_url": "",
            "setting__url": "http://[::1]:9000/hook",
            "setting__secret": SECRET,
            **INLINES,
        },
    )

    assert response.status_code == 200
    assert f"The address ::1 is a loopback address (this machine); {PUBLIC_ONLY}" in response.content.decode()
    assert not Output.objects.exists()


@pytest.mark.django_db
def test_the_admin_refuses_a_private_base_url(admin_client, guarded):
    response = admin_client.post(
        "/admin/outputs/output/add/?kind=mailchimp",
        {
            "name": "Mailchimp",
            "base_url": "http://10.1.2.3/mailchimp/{dc}",
            "setting__api_key": MAILCHIMP_KEY,
            "setting__email_type": "html",
            **INLINES,
        },
    )

    assert response.status_code == 200
    assert f"The address 10.1.2.3 is on a private network; {PUBLIC_ONLY}" in response.content.decode()
    assert not Output.objects.exists()


def test_the_services_refuse_what_the_api_and_the_admin_refuse(guarded):
    with pytest.raises(ValidationError) as settings_error:
        clean_output_settings("webhook", {"url": "http://172.20.0.9/hook", "secret": SECRET})
    with pytest.raises(ValidationError) as base_url_error:
        clean_base_url("http://127.0.0.1:8125/mailchimp/{dc}", "mailchimp")

    assert settings_error.value.message_dict == {
        "url": [f"The address 172.20.0.9 is on a private network; {PUBLIC_ONLY}"]
    }
    assert base_url_error.value.message_dict == {
        "base_url": [f"The address 127.0.0.1 is a loopback address (this machine); {PUBLIC_ONLY}"]
    }
    assert clean_base_url("", "mailchimp") == ""  # empty: the partner's real host


def test_every_url_setting_is_checked_not_only_the_webhooks(guarded, resolver):
    answers, _ = resolver
    answers["rest.iad-01.braze.com"] = [["10.0.0.9"]]

    with pytest.raises(ValidationError) as caught:
        clean_output_settings("braze", {"api_key": "braze-key", "rest_endpoint": "https://rest.iad-01.braze.com"})

    assert caught.value.message_dict == {
        "rest_endpoint": [f"The address 10.0.0.9 of rest.iad-01.braze.com is on a private network; {PUBLIC_ONLY}"]
    }


# --- refused when connecting ---------------------------------------------------------------------------------


def test_a_destination_refused_at_send_time_faults_the_batch(sandbox, guarded):
    account = webhook_account(sandbox)  # saved while private addresses were allowed

    result = get("webhook").send(account, CONNECTION, [add(1)])

    sentence = f"The address 127.0.0.1 is a loopback address (this machine); {PUBLIC_ONLY}"
    assert result.fault == Fault("destination", sentence, DESTINATION_HINT)
    assert sandbox.webhook_deliveries("crm") == []


@pytest.mark.django_db
def test_checking_a_refused_destination_says_why_in_one_sentence(sandbox, guarded):
    output = Output(kind="webhook", name="Hooks", settings={"url": sandbox.webhook_url("crm")})
    output.set_secrets({"secret": SECRET})
    output.save()

    check = check_credentials(output)

    assert (check.status, check.detail) == (
        "failing",
        f"Could not reach Webhook: The address 127.0.0.1 is a loopback address (this machine); {PUBLIC_ONLY}",
    )


@pytest.mark.django_db(transaction=True)
def test_a_refused_destination_stops_the_connection_and_keeps_its_messages(sandbox, settings):
    audience = StaticAudienceFactory(name="Potential Parisians")
    add_members(audience, emails=["ada@example.com", "alan@example.com"])
    conn = services.connect(audience, sandbox_output(sandbox), {"list_id": LIST_ID})
    settings.ALLOW_PRIVATE_DESTINATIONS = False

    report = drain(conn.pk)

    conn.refresh_from_db()
    assert conn.status == Connection.Status.FAULTED
    assert conn.status_reason == (
        f"The address 127.0.0.1 is a loopback address (this machine); {PUBLIC_ONLY} {DESTINATION_HINT}"
    )
    assert report.fault == conn.status_reason
    assert set(OutboxMessage.objects.filter(connection=conn).values_list("state", flat=True)) == {"pending"}
    assert sandbox.stats()["requests"]["mailchimp"] == 0
    assert sandbox.mailchimp_list_state(LIST_ID)["member_count"] == 0


def test_dns_rebinding_cannot_reach_a_private_address(sandbox, guarded, resolver, api, db):
    """The name was public when the output was saved; at send time it answers 127.0.0.1."""
    answers, _ = resolver
    answers["hooks.example.com"] = [[PUBLIC], ["127.0.0.1"]]
    port = sandbox.url.rsplit(":", 1)[1]
    url = f"http://hooks.example.com:{port}/webhook/crm"
    sandbox.webhook_endpoint("crm", SECRET)
    body = {"kind": "webhook", "name": "Hooks", "settings": {"url": url, "secret": SECRET}}
    assert api.post("/api/v1/outputs/", body, format="json").status_code == 201

    result = get("webhook").send(Output.objects.get().account(), CONNECTION, [add(1)])

    assert result.fault.message == (
        f"The address 127.0.0.1 of hooks.example.com is a loopback address (this machine); {PUBLIC_ONLY}"
    )
    assert sandbox.webhook_deliveries("crm") == []


def test_the_connection_goes_to_the_address_that_was_checked(sandbox, guarded, resolver, monkeypatch):
    """One resolution per connection: a second answer (127.0.0.1, the sandbox) is never asked for or used."""
    answers, calls = resolver
    answers["hooks.example.com"] = [[PUBLIC], ["127.0.0.1"]]
    port = int(sandbox.url.rsplit(":", 1)[1])
    sandbox.webhook_endpoint("crm", SECRET)
    connected_to = []

    def connect(sock, address):  # the OS's connect: nothing leaves this machine
        connected_to.append(address[:2])
        raise ConnectionRefusedError(111, "Connection refused")

    with monkeypatch.context() as patch:
        patch.setattr(socket.socket, "connect", connect)
        with pytest.raises(http.TransportError) as caught:
            http.call("POST", f"http://hooks.example.com:{port}/webhook/crm", json={})

    assert str(caught.value) == f"A connection error occurred: could not reach hooks.example.com:{port}."
    assert connected_to == [(PUBLIC, port)]
    assert calls == ["hooks.example.com"]
    assert sandbox.webhook_deliveries("crm") == []


def test_redirects_are_not_followed(sandbox):
    """A receiver redirecting to the metadata service: the redirect is reported, never taken."""
    metadata = "http://169.254.169.254/latest/meta-data/"
    inject(sandbox, partner="webhook", kind="answer", status=302, headers={"Location": metadata})
    account = webhook_account(sandbox)

    result = get("webhook").send(account, CONNECTION, [add(1)])

    assert result.fault.message == (
        "The webhook answered with a redirect (HTTP 302) to http://169.254.169.254/latest/meta-data/; "
        "redirects are not followed: use the final URL."
    )
    assert sandbox.stats()["requests"]["webhook"] == 1


# --- allowed for development and the sandbox -------------------------------------------------------------


def test_private_destinations_are_allowed_when_the_setting_is_on(sandbox, settings):
    settings.ALLOW_PRIVATE_DESTINATIONS = True
    account = webhook_account(sandbox)

    assert netguard.refusal(sandbox.webhook_url("crm")) == ""
    result = get("webhook").send(account, CONNECTION, [add(1)])

    assert result.fault is None and result.outcomes[1].status == "accepted"
    assert len(sandbox.webhook_deliveries("crm")) == 1


def test_private_destinations_are_off_in_production_settings():
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "a-production-like-secret-key-for-this-test-only",
        "SECRETS_ENCRYPTION_KEYS": "1yfiPGF-ZqAK_WsrZ-gke3X6P-Hwu1cgZlw_hE8EVKU=",
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    env.pop("ALLOW_PRIVATE_DESTINATIONS", None)
    code = "import django; django.setup(); from django.conf import settings; print(settings.ALLOW_PRIVATE_DESTINATIONS)"

    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True
    )

    assert out.stdout.strip() == "False", out.stderr
