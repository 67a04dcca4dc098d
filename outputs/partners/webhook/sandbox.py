"""A receiver for our signed webhook, under ``/webhook/{endpoint}``.

Every delivery is recorded (headers, body, time) and its signature checked: ``X-Relay-Timestamp`` (unix seconds)
and ``X-Relay-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}.{raw body}")>`` (several comma-separated
``v1=`` values are accepted, for secret rotation). The endpoint answers its configured status (200 by default).
"""

import hashlib
import hmac
import json
import time

from outputs.sandbox.common import Partner, control_body, found, json_response, reason, retry_after_header

# The demo account (POST /_sandbox/seed/demo).
DEMO = {"name": "demo", "secret": "whsec-demo"}

FRESH_SECONDS = 300
MAX_DELIVERIES = 10_000  # per endpoint; the oldest are dropped first


def sign(secret, timestamp, body):
    """The signature header value for a body, as a sender should compute it."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"v1={digest}"


class Webhook(Partner):
    name = "webhook"

    def reset(self):
        super().reset()
        self.endpoints = {}  # name -> {"secret", "status", "deliveries": [...], "digests": set()}

    def dump(self):
        return {
            name: {
                "secret": e["secret"],
                "status": e["status"],
                "deliveries": e["deliveries"],
                "digests": sorted(e["digests"]),
            }
            for name, e in self.endpoints.items()
        }

    def load(self, state):
        self.endpoints = {
            name: {
                "secret": saved["secret"],
                "status": int(saved["status"]),
                "deliveries": list(saved["deliveries"]),
                "digests": set(saved["digests"]),
            }
            for name, saved in state.items()
        }

    def add_endpoint(self, name, secret, status=200):
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError("'name' is required and may not contain '/'.")
        if not isinstance(secret, str) or not secret:
            raise ValueError("'secret' is required.")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError("'status' must be an HTTP status code.")
        with self.lock:
            existing = self.endpoints.get(name)
            self.endpoints[name] = {
                "secret": secret,
                "status": status,
                "deliveries": existing["deliveries"] if existing else [],
                "digests": existing["digests"] if existing else set(),
            }
        return {"name": name, "status": status}

    def inspect(self, name):
        with self.lock:
            endpoint = self.endpoints.get(name)
            if endpoint is None:
                return None
            return {"name": name, "status": endpoint["status"], "deliveries": list(endpoint["deliveries"])}

    revocable = False  # the signing secret is ours to change, not the endpoint's to revoke

    def control_routes(self):
        return [
            (
                "POST",
                r"endpoints",
                control_body(lambda b: self.add_endpoint(b.get("name"), b.get("secret"), b.get("status", 200))),
            ),
            ("GET", r"endpoints/(?P<ident>[^/]+)", lambda r, ident: found(self.inspect(ident), "endpoint", ident)),
        ]

    def seed_demo(self, base):
        if DEMO["name"] not in self.endpoints:
            self.add_endpoint(DEMO["name"], DEMO["secret"])
        return {**DEMO, "url": f"{base}/webhook/{DEMO['name']}"}

    def demo_summary(self, demo):
        return f"endpoint {demo['name']}, signing secret {demo['secret']}"

    def index(self, base):
        return {"prefix": f"{base}/webhook/{{endpoint}}"}

    def error_response(self, status, retry_after=None):
        return json_response(status, {"error": reason(status)}, retry_after_header(retry_after))

    def handle(self, request):
        name = request.path.strip("/")
        endpoint = self.endpoints.get(name)
        if endpoint is None or "/" in name:
            return json_response(404, {"error": f"No webhook endpoint named '{name}'."})
        if request.method != "POST":
            return json_response(405, {"error": "Method Not Allowed"}, [("Allow", "POST")])
        timestamp = request.headers.get("X-Relay-Timestamp") or ""
        signature = request.headers.get("X-Relay-Signature") or ""
        expected = sign(endpoint["secret"], timestamp, request.body)
        valid = bool(timestamp) and any(hmac.compare_digest(expected, s.strip()) for s in signature.split(",") if s)
        try:
            fresh = abs(time.time() - int(timestamp)) <= FRESH_SECONDS
        except ValueError:
            fresh = False
        try:
            body = json.loads(request.body) if request.body else None
        except (ValueError, UnicodeDecodeError):
            body = request.body.decode("utf-8", "replace")
        delivery = {
            "headers": dict(request.headers.items()),
            "body": body,
            "signature_valid": valid,
            "timestamp_fresh": fresh,
            "received_at": time.time(),
        }
        digest = hashlib.sha256(request.body).hexdigest()
        with self.lock:
            if digest in endpoint["digests"]:
                self.duplicates += 1
            endpoint["digests"].add(digest)
            endpoint["deliveries"].append(delivery)
            if len(endpoint["deliveries"]) > MAX_DELIVERIES:
                del endpoint["deliveries"][0]
            status = endpoint["status"]
        if status >= 400:
            return json_response(status, {"error": reason(status)})
        return json_response(status, {"received": True, "signature_valid": valid})
