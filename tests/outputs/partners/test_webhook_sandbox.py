import hashlib
import hmac
import json
import time

import requests


def _post(demo, body, secret="whsec-demo", timestamp=None):
    raw = json.dumps(body).encode()
    timestamp = str(int(time.time())) if timestamp is None else timestamp
    signature = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    return requests.post(
        demo["webhook"]["url"],
        data=raw,
        headers={
            "Content-Type": "application/json",
            "X-Relay-Timestamp": timestamp,
            "X-Relay-Signature": f"v1={signature}",
        },
        timeout=5,
    )


def test_it_records_deliveries_and_checks_their_signature(demo, client):
    assert _post(demo, {"audience": "VIP", "add": ["a@example.com"]}).status_code == 200
    assert _post(demo, {"audience": "VIP", "add": ["b@example.com"]}, secret="wrong-secret").status_code == 200
    deliveries = client.webhook_deliveries("demo")
    assert [d["signature_valid"] for d in deliveries] == [True, False]
    assert deliveries[0]["body"] == {"audience": "VIP", "add": ["a@example.com"]}
    assert deliveries[0]["headers"]["X-Relay-Timestamp"].isdigit()
    assert deliveries[0]["received_at"] > 0


def test_it_answers_the_configured_status_and_counts_repeats(demo, client):
    client.webhook_endpoint("flaky", "s3cret", status=503)
    demo["webhook"]["url"] = client.webhook_url("flaky")
    body = {"audience": "VIP", "remove": ["a@example.com"]}
    assert _post(demo, body, secret="s3cret", timestamp="1700000000").status_code == 503
    assert _post(demo, body, secret="s3cret", timestamp="1700000000").status_code == 503
    assert client.stats()["duplicates"]["webhook"] == 1
    assert requests.post(client.webhook_url("nobody"), json={}, timeout=5).status_code == 404
