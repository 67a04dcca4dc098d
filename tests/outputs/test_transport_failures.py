"""Every transport failure is a sentence, never a 500: a receiver that cuts its answer, stalls in the middle of it
or sends broken gzip; stored secrets no configured key decrypts; a search with a NUL in it. Real HTTP against
the sandbox, through the API, the admin and the forwarding engine."""

import pytest
from cryptography.fernet import Fernet

from connections import services
from connections.drain import drain
from connections.models import Connection, OutboxMessage
from outputs import crypto
from outputs.partners import http
from outputs.partners.base import ACCEPTED, Account, Message, Outcome
from outputs.partners.registry import get
from tests.connections.factories import StaticAudienceFactory, add_members, sandbox_output
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY

TIMEOUT = 0.5
# The sandbox fault, and what is left of the answer, in words (after "{host} ").
BROKEN = {
    "cut": ({"kind": "cut"}, "closed the connection before its answer was complete."),
    "stall": ({"kind": "stall", "delay": 3}, f"stopped sending its answer for more than {TIMEOUT:g} seconds."),
    "bad_gzip": ({"kind": "bad_gzip"}, "sent an answer that could not be decompressed."),
}


@pytest.fixture(autouse=True)
def short_timeout(settings):
    settings.PARTNER_HTTP_TIMEOUT = TIMEOUT  # a stalled answer gives up quickly: read at each request


@pytest.fixture
def host(sandbox):
    return sandbox.url.removeprefix("http://")


@pytest.mark.parametrize("broken", BROKEN, ids=list(BROKEN))
@pytest.mark.django_db
def test_checking_an_output_against_a_broken_answer_is_a_sentence(sandbox, api, admin_client, host, broken):
    output = sandbox_output(sandbox)
    fault, what = BROKEN[broken]
    sentence = f"Could not reach Mailchimp: {host} {what}"

    sandbox.fault("mailchimp", **fault)
    response = api.post(f"/api/v1/outputs/{output.pk}/check/")
    assert (response.status_code, response.json()["status"], response.json()["detail"]) == (200, "failing", sentence)

    sandbox.fault("mailchimp", **fault)
    page = admin_client.post(f"/admin/outputs/output/{output.pk}/check/", follow=True)
    assert page.status_code == 200
    assert f"{output.name}: {sentence}" in page.content.decode()
    output.refresh_from_db()
    assert output.credentials_message == sentence


@pytest.mark.parametrize("broken", BROKEN, ids=list(BROKEN))
@pytest.mark.django_db
def test_verifying_a_connection_against_a_broken_answer_is_a_sentence(sandbox, api, host, broken):
    audience = StaticAudienceFactory()
    conn = Connection.objects.create(audience=audience, output=sandbox_output(sandbox), settings={"list_id": LIST_ID})
    fault, what = BROKEN[broken]
    sandbox.fault("mailchimp", **fault)

    response = api.post(f"/api/v1/connections/{conn.pk}/verify/")

    assert response.status_code == 200
    partner = response.json()["checks"][0]
    assert (partner["name"], partner["status"], partner["detail"]) == (
        "partner",
        "warning",
        f"Could not reach Mailchimp: {host} {what}",
    )


@pytest.mark.parametrize("broken", BROKEN, ids=list(BROKEN))
def test_sending_into_a_broken_answer_is_retried_with_a_sentence(sandbox, host, broken):
    sandbox.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Potential Parisians")
    account = Account({"api_key": MAILCHIMP_KEY}, f"{sandbox.url}/mailchimp/{{dc}}")
    fault, what = BROKEN[broken]
    sandbox.fault("mailchimp", **fault)

    result = get("mailchimp").send(account, {"list_id": LIST_ID}, [Message(1, "add", "email", "ada@example.com", "A")])

    assert result.fault is None
    assert result.outcomes[1] == Outcome("retry", f"{host} {what}")


def test_it_waits_as_long_as_the_timeout_says_at_the_time_of_the_request(sandbox, host, settings):
    sandbox.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Potential Parisians")
    account = Account({"api_key": MAILCHIMP_KEY}, f"{sandbox.url}/mailchimp/{{dc}}")
    mailchimp, message = get("mailchimp"), Message(1, "add", "email", "ada@example.com", "A")
    assert mailchimp.send(account, {"list_id": LIST_ID}, [message]).outcomes[1] == ACCEPTED

    settings.PARTNER_HTTP_TIMEOUT = 0.2  # changed after requests were made
    sandbox.fault("mailchimp", kind="stall", delay=3)
    result = mailchimp.send(account, {"list_id": LIST_ID}, [message])

    assert result.outcomes[1] == Outcome("retry", f"{host} stopped sending its answer for more than 0.2 seconds.")


def test_it_refuses_a_partner_request_without_a_timeout(sandbox):
    with pytest.raises(ValueError, match="Every request to a partner needs a timeout."):
        http.session().request("GET", f"{sandbox.url}/mailchimp/us6/3.0/ping", timeout=None)


# --- stored secrets no configured key decrypts ----------------------------------------------------------------


@pytest.fixture
def lost_key(settings):
    """Outputs saved under one key, then SECRETS_ENCRYPTION_KEYS replaced by another (the old key dropped)."""

    def drop():
        settings.SECRETS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
        crypto.reset_keys()

    settings.SECRETS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    crypto.reset_keys()
    yield drop
    crypto.reset_keys()


@pytest.mark.django_db
def test_the_api_names_the_configuration_problem_when_stored_secrets_cannot_be_decrypted(sandbox, api, lost_key):
    output = sandbox_output(sandbox)
    lost_key()

    listing = api.get("/api/v1/outputs/")
    check = api.post(f"/api/v1/outputs/{output.pk}/check/")

    assert (listing.status_code, listing.json()) == (503, {"detail": crypto.UNREADABLE})
    assert (check.status_code, check.json()["status"], check.json()["detail"]) == (200, "failing", crypto.UNREADABLE)


@pytest.mark.django_db
def test_the_admin_names_the_configuration_problem_when_stored_secrets_cannot_be_decrypted(
    sandbox, admin_client, lost_key
):
    output = sandbox_output(sandbox)
    lost_key()

    page = admin_client.get(f"/admin/outputs/output/{output.pk}/change/")

    assert page.status_code == 503
    assert crypto.UNREADABLE in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_forwarding_stops_with_the_sentence_and_keeps_the_messages_when_secrets_cannot_be_decrypted(sandbox, lost_key):
    audience = StaticAudienceFactory(name="Potential Parisians")
    add_members(audience, emails=["ada@example.com", "alan@example.com"])
    conn = services.connect(audience, sandbox_output(sandbox), {"list_id": LIST_ID})
    lost_key()

    report = drain(conn.pk)

    conn.refresh_from_db()
    assert (conn.status, conn.status_reason, report.fault) == (
        Connection.Status.FAULTED,
        crypto.UNREADABLE,
        crypto.UNREADABLE,
    )
    assert sorted(OutboxMessage.objects.filter(connection=conn).values_list("state", flat=True)) == ["pending"] * 2


# --- the identity trace ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_trace_search_with_a_nul_in_it_is_a_sentence(admin_client):
    page = admin_client.get("/admin/trace/?q=ada%00@example.com")

    assert page.status_code == 200
    assert (
        "The search contains a control character (such as NUL), which no identity value holds; type the value again."
        in page.content.decode()
    )
