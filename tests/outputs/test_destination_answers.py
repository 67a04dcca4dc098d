"""An answer about the destination itself never drops a message: the connection faults with a sentence, every
message stays pending, and after the fault is fixed and the connection resumed they are all delivered.

Only a rejection the partner attributes to one member is final. A redirect, 401, 403, 404, 410 or a web page
where the partner's API answers JSON is about where the request went or with what credentials, so it stops the
connection for a person instead. Real HTTP against the sandbox, through the forwarding engine, for every partner.
"""

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from audiences.models import Identity
from connections import services
from connections.drain import drain
from connections.models import Connection, OutboxMessage
from outputs.models import Output
from tests.audiences.factories import IdentityFactory, MembershipFactory, ProfileFactory
from tests.connections.factories import StaticAudienceFactory
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY

pytestmark = pytest.mark.django_db(transaction=True)

HOTEL_WIFI = "<!doctype html><html><body><h1>Welcome to the hotel Wi-Fi</h1></body></html>"
ELSEWHERE = "https://elsewhere.example/v2/"
BRAZE_KEY = "5b1e2c3d-braze-answers-key"
XANDR = {"username": "relay-api", "password": "xandr-answers-pass", "member_id": 1234, "segment_id": 5678}
FB_TOKEN, FB_ACT, FB_AUDIENCE = "EAAB-answers-token", "act_1001", "23850000000000001"
HOOK_SECRET = "whsec-answers"


@dataclass
class Setup:
    output: Output
    settings: dict  # the connection's
    identity_type: str
    values: list[str]
    path: str  # where the send request goes: the injected answer replaces the partner's there
    held: Callable[[], int]  # how many members the partner holds


def aaid(n):
    return f"00000000-0000-4000-8000-{n:012d}"


def output(kind, base_url, settings, secrets):
    out = Output(kind=kind, name=kind.title(), base_url=base_url, settings=settings)
    out.set_secrets(secrets)
    out.save()
    return out


def mailchimp(sandbox):
    sandbox.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Potential Parisians")
    out = output("mailchimp", f"{sandbox.url}/mailchimp/{{dc}}", {}, {"api_key": MAILCHIMP_KEY})
    held = lambda: sandbox.mailchimp_list_state(LIST_ID)["member_count"]  # noqa: E731
    emails = [f"u{i}@example.com" for i in range(3)]
    return Setup(out, {"list_id": LIST_ID}, "email", emails, f"/lists/{LIST_ID}", held)


def braze(sandbox):
    sandbox.braze_key(BRAZE_KEY, ["users.track"])
    out = output(
        "braze", f"{sandbox.url}/braze", {"rest_endpoint": "https://rest.iad-01.braze.com"}, {"api_key": BRAZE_KEY}
    )
    held = lambda: len(sandbox.braze_users()["users"])  # noqa: E731
    return Setup(out, {}, "customer_id", ["C-1", "C-2", "C-3"], "/users/track", held)


def xandr(sandbox):
    sandbox.xandr_account(XANDR["username"], XANDR["password"], XANDR["member_id"])
    sandbox.xandr_segment(XANDR["member_id"], XANDR["segment_id"])
    settings = {"username": XANDR["username"], "member_id": XANDR["member_id"]}
    out = output("xandr", f"{sandbox.url}/xandr", settings, {"password": XANDR["password"]})
    held = lambda: sandbox.xandr_segment_state(XANDR["segment_id"])["count"]  # noqa: E731
    aaids = [aaid(i) for i in range(3)]
    return Setup(out, {"segment_id": XANDR["segment_id"]}, "android_aaid", aaids, "/xandr/segment?", held)


def facebook(sandbox):
    sandbox.facebook_token(FB_TOKEN, FB_ACT)
    sandbox.facebook_audience(FB_AUDIENCE, FB_ACT, name="Potential Parisians")
    settings = {"ad_account_id": FB_ACT, "api_version": "v21.0"}
    out = output("facebook", f"{sandbox.url}/facebook", settings, {"access_token": FB_TOKEN})
    held = lambda: sandbox.facebook_audience_state(FB_AUDIENCE)["count"]  # noqa: E731
    emails = [f"u{i}@example.com" for i in range(3)]
    return Setup(out, {"audience_id": FB_AUDIENCE}, "email", emails, f"/{FB_AUDIENCE}/users", held)


def webhook(sandbox):
    sandbox.webhook_endpoint("crm", HOOK_SECRET)
    out = output("webhook", "", {"url": sandbox.webhook_url("crm")}, {"secret": HOOK_SECRET})
    held = lambda: sum(len(d["body"]["messages"]) for d in sandbox.webhook_deliveries("crm"))  # noqa: E731
    settings = {"identity_types": ["email"], "hash_identities": False}
    emails = [f"u{i}@example.com" for i in range(3)]
    return Setup(out, settings, "email", emails, "/webhook/crm", held)


def connected(sandbox, setup: Setup) -> Connection:
    audience = StaticAudienceFactory(name="Potential Parisians")
    for value in setup.values:
        profile = ProfileFactory()
        IdentityFactory(profile=profile, type=setup.identity_type, value=value)
        MembershipFactory(audience=audience, profile=profile)
    assert Identity.objects.count() == len(setup.values)
    return services.connect(audience, setup.output, setup.settings)


# The answers, and the sentence each partner stops the connection with. A redirect names where it points; a 401,
# 403 or 404 that a partner module reads itself keeps the partner's own words and hint.
REDIRECT = {"kind": "answer", "status": 302, "headers": {"Location": ELSEWHERE}}
PAGE = {"kind": "answer", "status": 200, "content_type": "text/html; charset=utf-8", "body": HOTEL_WIFI}
GENERIC = {
    "redirect": "{host} answered with a redirect (HTTP 302) to https://elsewhere.example/v2/; redirects are not "
    "followed.",
    "410": "{host} answered HTTP 410: the partner's API is not at this address.",
    "page": "{host} answered HTTP 200 with an HTML page instead of JSON; the answer could not be read.",
}
ANSWERS = {
    "redirect": REDIRECT,
    "401": {"kind": "status", "status": 401},
    "403": {"kind": "status", "status": 403},
    "404": {"kind": "status", "status": 404},
    "410": {"kind": "status", "status": 410},
    "page": PAGE,
}
SENTENCES = {
    "mailchimp": {
        **GENERIC,
        "401": "Mailchimp rejected the API key: Your API key may be invalid, or you've attempted to access the wrong "
        "datacenter.",
        "403": "Mailchimp rejected the API key: You don't have permission to access this resource.",
        "404": f"Mailchimp has no list with ID '{LIST_ID}' in this account.",
    },
    "braze": {
        **GENERIC,
        "401": "Braze rejected the API key.",
        "403": "Braze refused the API key for /users/track (HTTP 403).",
        "404": "Braze has no /users/track endpoint at {host}.",
    },
    "xandr": {
        **GENERIC,
        "401": "Xandr refused the username and password of this output.",
        "403": "Xandr does not allow this user to upload segment data for member 1234.",
        "404": "Xandr segment 5678 was not found in member 1234.",
    },
    "facebook": {
        **GENERIC,
        "401": "Facebook did not accept the access token of this output.",
        "403": "The Facebook token has no permission to manage audiences of ad account act_1001.",
        "404": f"Facebook audience {FB_AUDIENCE} does not exist, or this token cannot see it.",
    },
    "webhook": {
        # A receiver's 2xx accepts the batch whatever its body: a page is not a wrong answer from a webhook.
        "redirect": "The webhook answered with a redirect (HTTP 302) to https://elsewhere.example/v2/; redirects are "
        "not followed: use the final URL.",
        "401": "The webhook receiver refused the request (HTTP 401).",
        "403": "The webhook receiver refused the request (HTTP 403).",
        "404": "The webhook URL {url} does not exist on the receiver (HTTP 404).",
        "410": "The webhook URL {url} does not exist on the receiver (HTTP 410).",
    },
}
PARTNERS = {"mailchimp": mailchimp, "braze": braze, "xandr": xandr, "facebook": facebook, "webhook": webhook}
CASES = [(partner, answer) for partner, sentences in SENTENCES.items() for answer in sentences]


@pytest.mark.parametrize(("partner", "answer"), CASES, ids=[f"{p}-{a}" for p, a in CASES])
def test_an_answer_about_the_destination_faults_the_connection_and_keeps_every_message(sandbox, partner, answer):
    setup = PARTNERS[partner](sandbox)
    conn = connected(sandbox, setup)
    # Enough answers for a partner that tries again on its own (Xandr signs in again after a 401).
    sandbox.fault(setup.output.kind, path=setup.path, count=5, **ANSWERS[answer])

    report = drain(conn.pk)

    conn.refresh_from_db()
    host = sandbox.url.removeprefix("http://")
    sentence = SENTENCES[partner][answer].format(host=host, url=sandbox.webhook_url("crm"))
    assert conn.status == Connection.Status.FAULTED
    assert conn.status_reason.startswith(sentence + " "), conn.status_reason  # then the hint
    assert report.fault == conn.status_reason
    states = list(OutboxMessage.objects.filter(connection=conn).values_list("state", flat=True))
    assert states == ["pending"] * len(setup.values)  # nothing rejected, nothing lost
    assert setup.held() == 0

    sandbox.clear_faults()  # the person fixes what the sentence says …
    services.resume(conn)  # … and resumes the connection
    drain(conn.pk)

    conn.refresh_from_db()
    assert conn.status == Connection.Status.ACTIVE
    states = list(OutboxMessage.objects.filter(connection=conn).values_list("state", flat=True))
    assert states == ["delivered"] * len(setup.values)
    assert setup.held() == len(setup.values)
