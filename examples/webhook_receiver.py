"""A webhook receiver for Audience Relay's webhook output, standard library only.

It checks every request's signature before reading it: X-Relay-Signature is "v1=" + hex
HMAC-SHA256 of "<X-Relay-Timestamp>.<raw body>" with the output's signing secret, and a timestamp
more than 5 minutes away from now is refused, so a captured request cannot be replayed later.
Delivery is at least once: the same batch may arrive twice, so applying it must be idempotent
(here: members are a set per audience).

    WEBHOOK_SECRET=your-signing-secret python examples/webhook_receiver.py --port 9000

Answers: 204 when applied, 401 for a bad or stale signature, 400 for a body that is not a batch.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOLERANCE_SECONDS = 5 * 60


def verify(secret: bytes, timestamp: str | None, body: bytes, signature: str | None, now: float | None = None) -> bool:
    """True when `signature` signs `body` sent at `timestamp` with `secret`, within the tolerance."""
    try:
        sent = int(timestamp or "")
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > TOLERANCE_SECONDS:
        return False
    expected = "v1=" + hmac.new(secret, f"{sent}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), (signature or "").strip().encode())


class Receiver(BaseHTTPRequestHandler):
    secret: bytes = b""
    members: dict[str, set[tuple[str, str]]] = {}

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if not verify(self.secret, self.headers.get("X-Relay-Timestamp"), body, self.headers.get("X-Relay-Signature")):
            return self.answer(401, "bad or stale signature")
        try:
            batch = json.loads(body)
            audience, messages = batch["audience"], batch["messages"]
            changes = [(m["action"], (m["identity_type"], m["value"])) for m in messages]
        except (ValueError, KeyError, TypeError):
            return self.answer(400, "not an Audience Relay batch")
        members = self.members.setdefault(audience, set())
        for action, identity in changes:
            (members.add if action == "add" else members.discard)(identity)
        print(f"{audience}: {len(changes)} change(s), {len(members)} member(s)", flush=True)
        self.answer(204)

    def answer(self, status: int, reason: str = ""):
        self.send_response(status)
        self.send_header("Content-Length", str(len(reason)))
        self.end_headers()
        self.wfile.write(reason.encode())
        if reason:
            print(f"refused ({status}): {reason}", flush=True)

    def log_message(self, *args):  # the lines above say what happened; no per-request access log
        pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    secret = os.environ.get("WEBHOOK_SECRET", "")
    if not secret:
        print("Set WEBHOOK_SECRET to the output's signing secret.", file=sys.stderr)
        return 2
    Receiver.secret = secret.encode("utf-8")
    server = ThreadingHTTPServer((args.host, args.port), Receiver)
    print(f"Listening on http://{args.host}:{server.server_port}/", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
