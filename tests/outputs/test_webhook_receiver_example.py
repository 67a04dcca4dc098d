"""The receiver the README shows (examples/webhook_receiver.py), run as its own process, against our sender.

It must accept what the webhook output sends, refuse a tampered body, a wrong secret and a replay of a
captured request after its 5-minute tolerance, and apply a batch delivered twice only once.
"""

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from outputs.partners.base import Account, Message
from outputs.partners.registry import get
from outputs.partners.webhook.adapter import signature

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec-example-0123456789"
CONNECTION = {"identity_types": ["email"], "hash_identities": False}


@pytest.fixture
def receiver():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "webhook_receiver.py"), "--port", str(port)],
        env={"WEBHOOK_SECRET": SECRET, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().startswith("Listening on")
    yield f"http://127.0.0.1:{port}/", proc
    proc.kill()
    proc.wait()


def lines(proc, count):
    return [proc.stdout.readline().strip() for _ in range(count)]


def post(url, body: bytes, timestamp: int, secret=SECRET):
    headers = {"X-Relay-Timestamp": str(timestamp), "X-Relay-Signature": signature(secret, timestamp, body)}
    return requests.post(url, data=body, headers=headers, timeout=5)


def test_the_example_receiver_verifies_and_applies_what_the_webhook_output_sends(receiver):
    url, proc = receiver
    account = Account({"url": url, "secret": SECRET})
    messages = [Message(1, "add", "email", "a@example.com", "VIP"), Message(2, "add", "email", "b@example.com", "VIP")]

    result = get("webhook").send(account, CONNECTION, messages)
    again = get("webhook").send(account, CONNECTION, messages)  # at least once: the same batch twice

    assert {o.status for o in result.outcomes.values()} == {"accepted"}
    assert {o.status for o in again.outcomes.values()} == {"accepted"}
    assert lines(proc, 2) == ["VIP: 2 change(s), 2 member(s)", "VIP: 2 change(s), 2 member(s)"]


def test_the_example_receiver_refuses_tampering_a_wrong_secret_and_stale_replays(receiver):
    url, proc = receiver
    body = json.dumps({"audience": "VIP", "messages": [{"action": "add", "identity_type": "email", "value": "x"}]})
    body = body.encode()
    now = int(time.time())

    tampered = requests.post(
        url,
        data=body.replace(b'"x"', b'"y"'),
        headers={"X-Relay-Timestamp": str(now), "X-Relay-Signature": signature(SECRET, now, body)},
        timeout=5,
    )
    assert tampered.status_code == 401
    assert post(url, body, now, secret="another-secret").status_code == 401
    assert post(url, body, now - 301).status_code == 401  # captured more than 5 minutes ago
    assert post(url, body, now - 240).status_code == 204  # late, but within the tolerance
    assert lines(proc, 4) == [
        "refused (401): bad or stale signature",
        "refused (401): bad or stale signature",
        "refused (401): bad or stale signature",
        "VIP: 1 change(s), 1 member(s)",
    ]
