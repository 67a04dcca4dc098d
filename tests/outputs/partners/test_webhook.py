"""The signed webhook against the sandbox's receiver (and a tiny local one for redirects): real HTTP."""

import hashlib
import json
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from identities import IdentityType
from outputs.partners.base import Account, Message
from outputs.partners.registry import get
from outputs.partners.webhook.adapter import signature, verify_signature
from outputs.schema import clean_value

SECRET = "whsec-sandbox-s3cret-value"
CONNECTION = {"identity_types": ["email", "ios_idfa"], "hash_identities": False}
IDFA = "aebe52e7-03ee-455a-b3c4-e57283966239"


@pytest.fixture
def partner():
    return get("webhook")


@pytest.fixture
def account(sandbox):
    sandbox.webhook_endpoint("crm", SECRET)
    return Account({"url": sandbox.webhook_url("crm"), "secret": SECRET})


def deliveries(sandbox, name="crm"):
    return sandbox.webhook_deliveries(name)


def add(key, value="test@example.com", identity_type="email", audience="Potential Parisians"):
    return Message(key, "add", identity_type, value, audience)


def remove(key, value="test@example.com", identity_type="email", audience="Potential Parisians"):
    return Message(key, "remove", identity_type, value, audience)


@contextmanager
def receiver(status, body=b"", headers=()):
    """A one-route HTTP server answering every POST with `status`; yields its URL and the bodies it got."""
    bodies = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            bodies.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


# --- delivery ----------------------------------------------------------------------------------------------


def test_it_posts_a_signed_batch_the_receiver_verifies(sandbox, partner, account):
    result = partner.send(account, CONNECTION, [add(1), remove(2, IDFA, "ios_idfa")])

    assert result.fault is None
    assert {k: o.status for k, o in result.outcomes.items()} == {1: "accepted", 2: "accepted"}
    [delivery] = deliveries(sandbox)
    assert delivery["signature_valid"] is True
    assert delivery["timestamp_fresh"] is True
    assert delivery["headers"]["Content-Type"] == "application/json"
    assert delivery["body"] == {
        "audience": "Potential Parisians",
        "messages": [
            {"action": "add", "identity_type": "email", "value": "test@example.com"},
            {"action": "remove", "identity_type": "ios_idfa", "value": IDFA},
        ],
    }
    # A receiver using our helper agrees with the sandbox's own check.
    raw = json.dumps(delivery["body"], separators=(",", ":"), ensure_ascii=False).encode()
    headers = delivery["headers"]
    assert verify_signature(SECRET, headers["X-Relay-Timestamp"], raw, headers["X-Relay-Signature"])


def test_it_sends_sha256_of_the_value_when_asked(sandbox, partner, account):
    partner.send(account, {**CONNECTION, "hash_identities": True}, [add(1)])

    [delivery] = deliveries(sandbox)
    assert delivery["body"]["messages"][0]["value"] == hashlib.sha256(b"test@example.com").hexdigest()


def test_it_forwards_only_the_chosen_identity_types(sandbox, partner, account):
    assert partner.accepted_types(CONNECTION) == {"email", "ios_idfa"}

    result = partner.send(account, CONNECTION, [add(1), add(2, "+16505551212", "mobile_number")])

    assert result.outcomes[1].status == "accepted"
    assert (result.outcomes[2].status, result.outcomes[2].reason) == (
        "rejected",
        "This connection does not forward mobile_number.",
    )
    assert [m["identity_type"] for m in deliveries(sandbox)[0]["body"]["messages"]] == ["email"]


def test_it_sends_one_body_per_audience(sandbox, partner, account):
    partner.send(account, CONNECTION, [add(1, audience="A"), add(2, "b@example.com", audience="B")])

    assert [d["body"]["audience"] for d in deliveries(sandbox)] == ["A", "B"]


def test_it_posts_to_its_own_url_whatever_the_base_url(sandbox, partner, account):
    elsewhere = Account(account.settings, base_url="http://127.0.0.1:9/nowhere")

    result = partner.send(elsewhere, CONNECTION, [add(1)])

    assert result.outcomes[1].status == "accepted"
    assert len(deliveries(sandbox)) == 1


# --- signatures --------------------------------------------------------------------------------------------


def test_verify_signature_accepts_a_valid_signature_and_nothing_else():
    body = b'{"audience":"A","messages":[]}'
    header = signature(SECRET, 1_700_000_000, body)

    assert header.startswith("v1=") and len(header) == 3 + 64
    assert verify_signature(SECRET, "1700000000", body, header, now=1_700_000_010)
    assert verify_signature(SECRET, 1_700_000_000, body.decode(), header, now=1_700_000_299)
    assert not verify_signature(SECRET, "1700000000", body + b" ", header, now=1_700_000_010)  # tampered body
    assert not verify_signature(SECRET, "1700000001", body, header, now=1_700_000_010)  # tampered timestamp
    assert not verify_signature(SECRET, "1700000000", body, header, now=1_700_000_301)  # stale
    assert not verify_signature(SECRET, "1700000000", body, header, now=1_699_999_000)  # from the future
    assert not verify_signature("another-secret", "1700000000", body, header, now=1_700_000_010)
    assert not verify_signature(SECRET, "yesterday", body, header, now=1_700_000_010)
    assert not verify_signature(SECRET, "1700000000", body, "", now=1_700_000_010)


# --- failures ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_it_faults_when_the_receiver_refuses_the_request(sandbox, partner, account, status):
    sandbox.webhook_endpoint("crm", SECRET, status=status)

    result = partner.send(account, CONNECTION, [add(1)])

    assert result.outcomes == {}
    assert result.fault.kind == "credentials"
    assert f"{result.fault.message} {result.fault.hint}" == (
        f"The webhook receiver refused the request (HTTP {status}). "
        "Check that it uses the same signing secret as this output."
    )


def test_it_faults_when_the_url_does_not_exist(sandbox, partner, account):
    gone = Account({**account.settings, "url": f"{sandbox.base_url}/webhook/nope?token=abc"})

    result = partner.send(gone, CONNECTION, [add(1)])

    assert result.fault.kind == "destination"
    assert (
        result.fault.message
        == f"The webhook URL {sandbox.base_url}/webhook/nope does not exist on the receiver (HTTP 404)."
    )
    assert result.fault.hint == "Check the URL of this output: the receiver must accept POST requests there."


def test_it_faults_when_the_receiver_says_gone(sandbox, partner, account):
    sandbox.webhook_endpoint("crm", SECRET, status=410)

    result = partner.send(account, CONNECTION, [add(1)])

    assert (result.fault.kind, result.fault.message) == (
        "destination",
        f"The webhook URL {sandbox.base_url}/webhook/crm does not exist on the receiver (HTTP 410).",
    )


def test_it_retries_on_429_with_retry_after(sandbox, partner, account):
    sandbox.fault(partner="webhook", kind="status", status=429, retry_after=12)

    result = partner.send(account, CONNECTION, [add(1), add(2, "b@example.com", audience="B")])

    for outcome in result.outcomes.values():
        assert (outcome.status, outcome.reason, outcome.retry_after) == (
            "retry",
            "The webhook receiver asked us to slow down (HTTP 429).",
            12,
        )
    assert len(result.attempts) == 1  # the second audience waits too


def test_it_retries_on_a_server_error(sandbox, partner, account):
    sandbox.fault(partner="webhook", kind="status", status=503)

    result = partner.send(account, CONNECTION, [add(1)])

    assert (result.outcomes[1].status, result.outcomes[1].reason) == (
        "retry",
        "The webhook receiver answered with HTTP 503, a temporary error.",
    )


def test_it_retries_on_a_timeout(sandbox, partner, account, settings, monkeypatch):
    settings.PARTNER_HTTP_TIMEOUT = 0.5
    sandbox.fault(partner="webhook", kind="timeout", delay=2)

    result = partner.send(account, CONNECTION, [add(1)])

    assert (result.outcomes[1].status, result.outcomes[1].reason) == (
        "retry",
        "The request timed out after 0.5 seconds.",
    )


def test_it_retries_on_a_dropped_connection(sandbox, partner, account):
    sandbox.fault(partner="webhook", kind="drop")

    result = partner.send(account, CONNECTION, [add(1)])

    host = sandbox.base_url.removeprefix("http://")
    assert result.outcomes[1].reason == f"A connection error occurred: could not reach {host}."


def test_it_rejects_a_batch_the_receiver_refuses(sandbox, partner, account):
    sandbox.webhook_endpoint("crm", SECRET, status=422)

    result = partner.send(account, CONNECTION, [add(1)])

    assert (result.outcomes[1].status, result.outcomes[1].reason) == (
        "rejected",
        'The webhook receiver rejected the batch (HTTP 422): {"error":"Unprocessable Entity"}',
    )


def test_it_does_not_follow_a_redirect(sandbox, partner, account):
    final = f"{sandbox.base_url}/webhook/crm"
    with receiver(302, headers=[("Location", final + "?key=abc")]) as (url, bodies):
        result = partner.send(Account({"url": url, "secret": SECRET}), CONNECTION, [add(1)])

    assert len(bodies) == 1
    assert deliveries(sandbox) == []  # the redirect target never heard from us
    assert (result.fault.kind, result.fault.message) == (
        "destination",
        f"The webhook answered with a redirect (HTTP 302) to {final}; redirects are not followed: use the final URL.",
    )


def test_it_keeps_the_secret_out_of_attempts_and_sentences(sandbox, partner, account):
    echo = json.dumps({"error": f"bad signature for secret {SECRET}"}).encode()
    with receiver(400, body=echo) as (url, _):
        result = partner.send(Account({"url": url, "secret": SECRET}), CONNECTION, [add(1)])

    assert result.outcomes[1].status == "rejected"
    assert "[redacted]" in result.outcomes[1].reason
    texts = [result.outcomes[1].reason] + [a.path + a.response_excerpt for a in result.attempts]
    assert SECRET not in "\n".join(texts)


# --- checks and settings -----------------------------------------------------------------------------------


def test_it_verifies_with_a_signed_test_request(sandbox, partner, account):
    checks = partner.verify(account, CONNECTION)

    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("receiver", "ok", "The webhook receiver accepted a signed test request (HTTP 200)."),
        ("identity types", "ok", "This connection forwards email, ios_idfa."),
    ]
    [ping] = deliveries(sandbox)
    assert ping["body"] == {"audience": None, "messages": [], "test": True}
    assert ping["signature_valid"] is True


def test_it_verify_reports_a_refused_signature(sandbox, partner, account):
    sandbox.webhook_endpoint("crm", SECRET, status=401)

    check = partner.check_credentials(account)

    assert (check.status, check.detail, check.hint) == (
        "failing",
        "The webhook receiver refused the request (HTTP 401).",
        "Check that it uses the same signing secret as this output.",
    )


def test_it_takes_only_http_and_https_urls(partner):
    url = partner.output_settings[0]

    assert url.validate("ftp://example.com/hook") == "Only http:// and https:// URLs can receive webhooks, not ftp."
    assert url.validate("https://example.com/hook") == ""
    with pytest.raises(ValueError, match=r"^Must be an http:// or https:// URL\.$"):
        clean_value(url, "ftp://example.com/hook")
    with pytest.raises(ValueError, match="^Put no user name or password in the URL"):
        clean_value(url, "https://user:pass@example.com/hook")
    assert clean_value(url, " https://example.com/hook ") == "https://example.com/hook"


def test_it_declares_every_identity_type_raw(partner):
    assert set(partner.identity_types) == set(IdentityType.values)
    assert all(normalize("Raw Value") == "Raw Value" for normalize in partner.identity_types.values())
    types = partner.connection_settings[0]
    assert (types.kind, types.required, types.choices) == ("multichoice", True, tuple(IdentityType.choices))
    with pytest.raises(ValueError, match="^This setting is required"):
        clean_value(types, [])
    assert [s.name for s in partner.output_settings if s.secret] == ["secret"]
    assert (partner.batch_size, partner.max_concurrency) == (500, 4)


def test_a_receiver_dripping_its_answer_is_cut_off_at_four_timeouts(partner, settings, monkeypatch):
    """The timeout bounds each wait for bytes; a receiver sending a byte just inside it must not hold a worker."""
    settings.PARTNER_HTTP_TIMEOUT = 0.5

    class Dripping(BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                time.sleep(0.2)
                self.wfile.write(b" ")
                self.wfile.flush()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Dripping)
    server.block_on_close = False  # the dripping handler goes on for 20 s; the test does not wait for it
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        account = Account({"url": f"http://127.0.0.1:{server.server_port}/hook", "secret": SECRET})
        result = partner.send(account, CONNECTION, [add(1)])
    finally:
        server.shutdown()
        server.server_close()

    assert (result.outcomes[1].status, result.outcomes[1].reason) == (
        "retry",
        f"127.0.0.1:{server.server_port} took more than 2 seconds to send its answer.",
    )  # a whole answer takes the receiver 20 s: a retry here means the send was cut off before it came
