"""Bad answers from partners: garbage, HTML, wrong content types and huge bodies are one sentence, never a crash;
what delivery records keep of an answer shows neither secrets nor identities. Real HTTP against the sandbox."""

import pytest
import requests

from connections import services
from connections.drain import drain
from connections.models import Delivery
from outputs.models import Output
from outputs.partners.base import Account, Message, Outcome
from outputs.partners.http import HINTS
from outputs.partners.registry import get
from outputs.services import check_credentials
from tests.connections.factories import StaticAudienceFactory, add_members, sandbox_output
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY

SECRET = "whsec-answers-s3cret-value"
WEBHOOK = {"identity_types": ["email"], "hash_identities": False}
HOTEL_WIFI = "<!doctype html><html><body><h1>Welcome to the hotel Wi-Fi</h1></body></html>"


def inject(sandbox, **spec):
    """Inject a sandbox fault through its control API (the answer kinds take fields the client does not name)."""
    response = requests.post(f"{sandbox.url}/_sandbox/faults", json=spec, timeout=10)
    assert response.status_code == 201, response.text


def add(key, email="ada@example.com"):
    return Message(key, "add", "email", email, "Potential Parisians")


@pytest.fixture
def host(sandbox):
    return sandbox.url.removeprefix("http://")


@pytest.fixture
def mailchimp(sandbox):
    sandbox.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Potential Parisians")
    return Account({"api_key": MAILCHIMP_KEY}, f"{sandbox.url}/mailchimp/{{dc}}")


@pytest.fixture
def webhook(sandbox):
    sandbox.webhook_endpoint("crm", SECRET)
    return Account({"url": sandbox.webhook_url("crm"), "secret": SECRET})


def send_mailchimp(account, *messages):
    return get("mailchimp").send(account, {"list_id": LIST_ID}, list(messages) or [add(1)])


# --- Mailchimp: anything but its JSON is no answer --------------------------------------------------------


def test_mailchimp_answering_json_that_does_not_parse_is_retried_with_a_sentence(sandbox, mailchimp, host):
    inject(sandbox, partner="mailchimp", kind="answer", status=200, content_type="application/json", body="{")

    result = send_mailchimp(mailchimp)

    assert result.fault is None
    assert result.outcomes[1] == Outcome(
        "retry", f"{host} answered HTTP 200 with JSON that does not parse; the answer could not be read."
    )
    assert sandbox.mailchimp_list_state(LIST_ID)["member_count"] == 0


@pytest.mark.parametrize(
    ("content_type", "body", "what"),
    [
        ("text/html; charset=utf-8", HOTEL_WIFI, "an HTML page instead of JSON"),
        ("text/plain", "OK", "text/plain instead of JSON"),
    ],
    ids=["html-with-200", "wrong-content-type"],
)
def test_mailchimp_answering_a_page_faults_the_connection(sandbox, mailchimp, host, content_type, body, what):
    """Not Mailchimp answering (a captive portal, a proxy): a person must fix the path, a retry cannot."""
    inject(sandbox, partner="mailchimp", kind="answer", status=200, content_type=content_type, body=body)

    result = send_mailchimp(mailchimp)

    assert (result.fault.kind, result.fault.message, result.fault.hint) == (
        "destination",
        f"{host} answered HTTP 200 with {what}; the answer could not be read.",
        HINTS["content"],
    )
    assert sandbox.mailchimp_list_state(LIST_ID)["member_count"] == 0


def test_mailchimp_answering_a_huge_body_is_cut_off(sandbox, mailchimp, host):
    inject(sandbox, partner="mailchimp", kind="huge")  # 6 MiB, over the default 5 MiB cap

    result = send_mailchimp(mailchimp)

    assert result.outcomes[1] == Outcome("retry", f"{host} answered with more than 5 MB; the answer was not read.")
    assert (result.attempts[0].status, result.attempts[0].response_excerpt) == (200, "")


def test_the_answer_cap_is_a_setting(sandbox, mailchimp, host, settings):
    settings.PARTNER_MAX_ANSWER_BYTES = 2048
    inject(sandbox, partner="mailchimp", kind="huge", size=4096)

    result = send_mailchimp(mailchimp)

    assert result.outcomes[1].reason == f"{host} answered with more than 2 KB; the answer was not read."
    assert send_mailchimp(mailchimp).outcomes[1].status == "accepted"  # an ordinary answer fits


def test_mailchimp_redirecting_is_no_answer(sandbox, mailchimp, host):
    inject(sandbox, partner="mailchimp", kind="answer", status=301, headers={"Location": "http://10.0.0.5/3.0/"})

    result = send_mailchimp(mailchimp)

    assert result.fault.message == (
        f"{host} answered with a redirect (HTTP 301) to http://10.0.0.5/3.0/; redirects are not followed."
    )
    assert sandbox.stats()["requests"]["mailchimp"] == 1


@pytest.mark.django_db
def test_checking_credentials_against_an_html_page_says_so(sandbox, mailchimp, host):
    output = Output(kind="mailchimp", name="Mailchimp", base_url=mailchimp.base_url)
    output.set_secrets({"api_key": MAILCHIMP_KEY})
    output.save()
    inject(sandbox, partner="mailchimp", kind="answer", status=200, body=HOTEL_WIFI)

    check = check_credentials(output)

    assert (check.status, check.detail, check.hint) == (
        "failing",
        f"{host} answered HTTP 200 with an HTML page instead of JSON; the answer could not be read.",
        HINTS["content"],
    )


# --- Webhook: a 2xx is acceptance whatever its body; other answers are sentences ------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", "{not json"), ("text/html", HOTEL_WIFI), ("text/plain", "OK")],
    ids=["not-json", "html-with-200", "wrong-content-type"],
)
def test_a_webhook_receiver_answering_2xx_accepts_whatever_its_body(sandbox, webhook, content_type, body):
    inject(sandbox, partner="webhook", kind="answer", status=200, content_type=content_type, body=body)

    result = get("webhook").send(webhook, WEBHOOK, [add(1)])

    assert (result.fault, result.outcomes[1]) == (None, Outcome("accepted"))


def test_a_webhook_receiver_refusing_with_an_html_page_is_one_sentence(sandbox, webhook):
    inject(sandbox, partner="webhook", kind="answer", status=400, body=HOTEL_WIFI)

    result = get("webhook").send(webhook, WEBHOOK, [add(1)])

    assert result.outcomes[1] == Outcome(
        "rejected", "The webhook receiver rejected the batch (HTTP 400) with an HTML page."
    )


def test_a_webhook_receiver_refusing_in_plain_text_is_quoted(sandbox, webhook):
    inject(sandbox, partner="webhook", kind="answer", status=422, content_type="text/plain", body="Unknown audience\n")

    result = get("webhook").send(webhook, WEBHOOK, [add(1)])

    assert result.outcomes[1] == Outcome(
        "rejected", "The webhook receiver rejected the batch (HTTP 422): Unknown audience"
    )


def test_a_webhook_receiver_answering_a_huge_body_is_cut_off(sandbox, webhook, host):
    inject(sandbox, partner="webhook", kind="huge", size=8 * 1024 * 1024)

    result = get("webhook").send(webhook, WEBHOOK, [add(1)])

    assert result.outcomes[1] == Outcome("retry", f"{host} answered with more than 5 MB; the answer was not read.")


# --- masking ---------------------------------------------------------------------------------------------------


def test_a_webhook_answer_echoing_the_batch_keeps_neither_identities_nor_the_secret(sandbox, webhook):
    echo = f"Refused ada@example.com and +33612345678 (signed with {SECRET})"
    inject(sandbox, partner="webhook", kind="answer", status=400, content_type="text/plain", body=echo)
    messages = [add(1), Message(2, "add", "mobile_number", "+33612345678", "Potential Parisians")]

    result = get("webhook").send(webhook, {**WEBHOOK, "identity_types": ["email", "mobile_number"]}, messages)

    masked = "Refused [identity] and [identity] (signed with [redacted])"
    assert result.attempts[0].response_excerpt == masked
    assert {o.reason for o in result.outcomes.values()} == {
        f"The webhook receiver rejected the batch (HTTP 400): {masked}"
    }


def test_identity_like_values_outside_the_batch_are_masked_too(sandbox, webhook):
    echo = "Known: grace@example.org, +44 20 7946 0958, aebe52e7-03ee-455a-b3c4-e57283966239"
    inject(sandbox, partner="webhook", kind="answer", status=400, content_type="text/plain", body=echo)

    result = get("webhook").send(webhook, WEBHOOK, [add(1)])

    assert result.attempts[0].response_excerpt == "Known: [email], [phone], [device id]"


@pytest.mark.django_db(transaction=True)
def test_the_delivery_record_shows_neither_the_email_nor_the_api_key_the_partner_echoed(sandbox):
    audience = StaticAudienceFactory(name="Potential Parisians")
    add_members(audience, emails=["ada@example.com", "alan@example.com"])
    conn = services.connect(audience, sandbox_output(sandbox), {"list_id": LIST_ID})
    echo = {"title": "Invalid Resource", "status": 400, "detail": f"ada@example.com refused for key {MAILCHIMP_KEY}"}
    sandbox.fault("mailchimp", "status", status=400, body=echo)

    drain(conn.pk)

    delivery = Delivery.objects.get(connection=conn)
    stored = f"{delivery.response_excerpt} {delivery.error}"
    assert delivery.rejected == 2
    assert "ada@example.com" not in stored
    assert MAILCHIMP_KEY.split("-")[0] not in stored
    assert delivery.error == "Mailchimp refused the request (HTTP 400): [identity] refused for key …"
    assert "[identity] refused for key …" in delivery.response_excerpt


# --- Braze and Facebook: their APIs answer JSON, so an HTML page in its place is no answer ---------------


def test_braze_and_facebook_answering_an_html_page_fault_the_connection(sandbox, host):
    sandbox.braze_key("8d2f6a1c-4b7e-4e0a-9c3d-5f1e2a7b9c0d", ["users.track"])
    braze = Account(
        {"api_key": "8d2f6a1c-4b7e-4e0a-9c3d-5f1e2a7b9c0d", "rest_endpoint": "https://rest.iad-01.braze.com"},
        f"{sandbox.url}/braze",
    )
    sandbox.facebook_token("EAAB-answers-token", "act_1001")
    sandbox.facebook_audience("23850000000000001", "act_1001", name="Potential Parisians")
    facebook = Account(
        {"access_token": "EAAB-answers-token", "ad_account_id": "act_1001", "api_version": "v21.0"},
        sandbox.facebook_url(version=None),
    )
    sentence = f"{host} answered HTTP 200 with an HTML page instead of JSON; the answer could not be read."

    for partner, account, connection, message in [
        ("braze", braze, {}, Message(1, "add", "customer_id", "C-1", "Potential Parisians")),
        ("facebook", facebook, {"audience_id": "23850000000000001"}, add(1)),
    ]:
        inject(sandbox, partner=partner, kind="answer", status=200, content_type="text/html", body=HOTEL_WIFI)
        result = get(partner).send(account, connection, [message])

        assert (result.fault.kind, result.fault.message) == ("destination", sentence), partner


@pytest.mark.django_db(transaction=True)
def test_the_delivery_record_does_not_name_a_removed_member_by_the_hash_in_mailchimps_path(sandbox):
    """Mailchimp addresses a member as /members/{MD5 of the email}: an unsalted hash is an identity too."""
    import hashlib

    from audiences.static import change_static_members

    audience = StaticAudienceFactory(name="Potential Parisians")
    (ada,) = add_members(audience, emails=["ada@example.com"])
    output = sandbox_output(sandbox)
    output.settings = {**output.settings, "delete_on_subscription_end": True}  # removals are DELETE /members/…
    output.save()
    conn = services.connect(audience, output, {"list_id": LIST_ID})
    drain(conn.pk)
    change_static_members(audience, [ada.pk], add=False)
    drain(conn.pk)

    removal = Delivery.objects.filter(connection=conn).latest("started_at")
    digest = hashlib.md5(b"ada@example.com").hexdigest()
    assert removal.response_excerpt.startswith(f"DELETE /mailchimp/us6/3.0/lists/{LIST_ID}/members/[")
    assert digest not in removal.response_excerpt
