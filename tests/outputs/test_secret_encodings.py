"""A secret echoed back in another encoding is masked too, in every place it would be shown: the output's
credentials message, a connection's verification checks, the last error (connection and message) and the
delivery record. The sandbox's `echo` fault quotes our request back, as received, in each encoding."""

import base64
import json
from urllib.parse import quote, quote_plus

import pytest

from connections import services
from connections.drain import drain
from connections.models import Connection, Delivery, OutboxMessage
from connections.verification import verify
from outputs.models import Output
from outputs.services import check_credentials
from tests.audiences.factories import IdentityFactory, MembershipFactory, ProfileFactory
from tests.connections.factories import StaticAudienceFactory
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY

# Secrets that read differently once escaped or encoded: quotes, backslashes, spaces, non-ASCII.
XANDR_PASSWORD = 'pä"ss\\wörd €-1'
FB_TOKEN = 'EAAB tok+en/ä=1 "q"'
BRAZE_KEY = "braze key/ä+1"
# How each partner quotes an error, with the echo where its module reads the partner's words.
TEMPLATES = {
    "xandr": '{"response": {"status": "ERROR", "error_id": "SYNTAX", "error": "Could not read {request}"}}',
    "facebook": '{"error": {"message": "Could not read {request}", "type": "GraphMethodException", "code": 100}}',
    "mailchimp": '{"title": "Invalid Resource", "status": 400, "detail": "Could not read {request}"}',
    "braze": '{"message": "Could not read {request}"}',
}


def forms(secret: str, user: str = "") -> list[str]:
    """The secret as it may come back: as is, inside JSON, percent-encoded, and in a Basic header."""
    found = [secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]]
    found += [quote(secret, safe=""), quote_plus(secret, safe="")]
    # … and a second time by a partner quoting our request back: a form body, or JSON, percent-encoded again.
    found += [quote(quote_plus(secret, safe=""), safe=""), quote(json.dumps(secret)[1:-1], safe="")]
    if user:
        found.append(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return found


def assert_masked(text: str, secret: str, user: str = ""):
    assert text  # something was shown
    leaked = [form for form in forms(secret, user) if form in text]
    assert leaked == [], text


def output(kind, sandbox, settings, secrets, path):
    out = Output(kind=kind, name=kind.title(), base_url=f"{sandbox.url}/{path}", settings=settings)
    out.set_secrets(secrets)
    out.save()
    return out


def xandr(sandbox):
    sandbox.xandr_account("relay-api", XANDR_PASSWORD, 1234)
    sandbox.xandr_segment(1234, 5678)
    out = output("xandr", sandbox, {"username": "relay-api", "member_id": 1234}, {"password": XANDR_PASSWORD}, "xandr")
    return out, {"segment_id": 5678}, ("android_aaid", "00000000-0000-4000-8000-000000000001"), XANDR_PASSWORD, ""


def facebook(sandbox):
    sandbox.facebook_token(FB_TOKEN, "act_1001")
    sandbox.facebook_audience("23850000000000001", "act_1001", name="Potential Parisians")
    settings = {"ad_account_id": "act_1001", "api_version": "v21.0"}
    out = output("facebook", sandbox, settings, {"access_token": FB_TOKEN}, "facebook")
    return out, {"audience_id": "23850000000000001"}, ("email", "ada@example.com"), FB_TOKEN, ""


def mailchimp(sandbox):
    sandbox.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Potential Parisians")
    out = output("mailchimp", sandbox, {}, {"api_key": MAILCHIMP_KEY}, "mailchimp/{dc}")
    return out, {"list_id": LIST_ID}, ("email", "ada@example.com"), MAILCHIMP_KEY, "relay"


def braze(sandbox):
    sandbox.braze_key(BRAZE_KEY, ["users.track"])
    settings = {"rest_endpoint": "https://rest.iad-01.braze.com"}
    out = output("braze", sandbox, settings, {"api_key": BRAZE_KEY}, "braze")
    return out, {}, ("customer_id", "C-1"), BRAZE_KEY, ""


PARTNERS = {"xandr": xandr, "facebook": facebook, "mailchimp": mailchimp, "braze": braze}


def echo(sandbox, partner, encoding, path=None):
    sandbox.fault(partner, "echo", path=path, body=TEMPLATES[partner], encoding=encoding, count=10)


# Checks: Xandr quotes the sign-in request (password in a JSON body), Facebook the token in the query string.
CHECKS = [("xandr", "json"), ("xandr", "json-utf8"), ("facebook", "json"), ("facebook", "json-utf8")]


@pytest.mark.parametrize(("partner", "encoding"), CHECKS, ids=[f"{p}-{e}" for p, e in CHECKS])
@pytest.mark.django_db
def test_the_credentials_message_never_shows_the_secret_in_any_encoding(sandbox, partner, encoding):
    out, _, _, secret, user = PARTNERS[partner](sandbox)
    echo(sandbox, partner, encoding)

    check = check_credentials(out)

    out.refresh_from_db()
    assert check.status == "failing"
    assert_masked(out.credentials_message, secret, user)
    assert "[redacted]" in out.credentials_message


@pytest.mark.parametrize(("partner", "encoding"), CHECKS, ids=[f"{p}-{e}" for p, e in CHECKS])
@pytest.mark.django_db
def test_verification_checks_never_show_the_secret_in_any_encoding(sandbox, partner, encoding):
    out, settings, _, secret, user = PARTNERS[partner](sandbox)
    conn = Connection.objects.create(audience=StaticAudienceFactory(), output=out, settings=settings)
    echo(sandbox, partner, encoding)

    verify(conn)

    conn.refresh_from_db()
    shown = " ".join(f"{c['detail']} {c['hint']}" for c in conn.verification_checks)
    assert_masked(shown, secret, user)
    assert "[redacted]" in shown


# Sending: Mailchimp's key comes back in base64 (Basic auth), Braze's raw key from its Bearer header
# percent-encoded, Xandr's password and Facebook's token from their JSON and form bodies.
SENDS = [
    ("mailchimp", "json", "/lists/"),
    ("braze", "url", "/users/track"),
    ("braze", "url-plus", "/users/track"),
    ("xandr", "json", "/xandr/auth"),
    ("xandr", "json-utf8", "/xandr/auth"),
    ("facebook", "json", "/users"),
    ("facebook", "url", "/users"),
]


@pytest.mark.parametrize(("partner", "encoding", "path"), SENDS, ids=[f"{p}-{e}" for p, e, _ in SENDS])
@pytest.mark.django_db(transaction=True)
def test_last_errors_and_delivery_records_never_show_the_secret_in_any_encoding(sandbox, partner, encoding, path):
    out, settings, (identity_type, value), secret, user = PARTNERS[partner](sandbox)
    audience = StaticAudienceFactory(name="Potential Parisians")
    profile = ProfileFactory()
    IdentityFactory(profile=profile, type=identity_type, value=value)
    MembershipFactory(audience=audience, profile=profile)
    conn = services.connect(audience, out, settings)
    echo(sandbox, partner, encoding, path)

    drain(conn.pk)

    conn.refresh_from_db()
    message = OutboxMessage.objects.get(connection=conn)
    delivery = Delivery.objects.filter(connection=conn).latest("started_at")
    assert message.state == "rejected"  # the partner refused the request, in its own JSON
    for shown in (conn.last_error, message.last_error, delivery.error, delivery.response_excerpt):
        assert_masked(shown, secret, user)
