"""Webhook: audience membership as signed JSON to a URL of your own.

Each batch is one POST of {"audience": name, "messages": [{"action", "identity_type",
"value"}]}, signed like Stripe's and Slack's webhooks: X-Relay-Timestamp carries the
unix time, and X-Relay-Signature is "v1=" + hex HMAC-SHA256 of "{timestamp}.{body}"
with the output's secret. A receiver checks it with `verify_signature` below.
Redirects are never followed: a redirect to another host would carry the data,
and the signature, somewhere nobody configured.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import urljoin, urlsplit

from identities import IdentityType
from outputs.partners import http
from outputs.partners.base import (
    ACCEPTED,
    Account,
    Check,
    Fault,
    Message,
    Outcome,
    Partner,
    SendResult,
    Setting,
    raw,
    sha256_hex,
)
from outputs.partners.plumbing import TRANSIENT_HINT

SIGNATURE_VERSION = "v1"

HINTS = {
    "signature": "Check that it uses the same signing secret as this output.",
    "url": "Check the URL of this output: the receiver must accept POST requests there.",
    "redirect": "Put the address the receiver redirects to in this output's URL: redirects are not followed, so "
    "that the data and its signature go only where you configured.",
    "identity_types": "Choose at least one identity type in this connection's settings.",
    "transient": TRANSIENT_HINT,
}


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The X-Relay-Signature value for a body sent at `timestamp`."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify_signature(secret: str, timestamp, body, signature_header: str, tolerance: int = 300, now=None) -> bool:
    """True when `signature_header` signs `body` at `timestamp` with `secret`, and the timestamp is recent.

    For receivers: pass the raw request body (bytes, before any JSON parsing), the
    X-Relay-Timestamp and X-Relay-Signature headers, and reject the request when this
    is False. `tolerance` (seconds) bounds how old or early a timestamp may be, so a
    captured request cannot be replayed later.
    """
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance:
        return False
    if isinstance(body, str):
        body = body.encode("utf-8")
    expected = signature(secret, sent, body)
    return hmac.compare_digest(expected.encode(), str(signature_header or "").strip().encode())


def _http_only(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return f"Only http:// and https:// URLs can receive webhooks, not {parts.scheme or 'a URL without a scheme'}."
    if not parts.hostname:
        return "The URL needs a host name."
    if parts.username or parts.password:
        return "Put no user name or password in the URL: requests are authenticated by the signing secret."
    return ""  # the address itself is checked for every URL setting (outputs.schema, outputs.netguard)


def _where(url: str) -> str:
    """A URL as we may show it: scheme, host and path (a query string may carry a receiver's token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}"


class Webhook(Partner):
    slug = "webhook"
    sandbox_demo = ({"secret": "whsec-demo"}, {"identity_types": ["email"]})
    name = "Webhook"
    pattern = "direct"
    docs_url = "https://github.com/audience-relay/audience-relay#webhook-output"
    identity_types = {t: raw for t in IdentityType.values}
    output_settings = (
        Setting(
            "url",
            "URL",
            "Where batches are POSTed: http:// or https://, on a public address (see ALLOW_PRIVATE_DESTINATIONS).",
            kind="url",
            validate=_http_only,
            destination=True,
        ),
        Setting(
            "secret",
            "Signing secret",
            "Shared with the receiver, which checks X-Relay-Signature with it.",
            kind="secret",
        ),
    )
    connection_settings = (
        Setting(
            "identity_types",
            "Identity types",
            "Only identities of these types are forwarded.",
            kind="multichoice",
            choices=tuple(IdentityType.choices),
        ),
        Setting(
            "hash_identities",
            "Hash identities",
            "Send the SHA-256 hex digest of each (normalized) value instead of the value itself.",
            kind="bool",
            required=False,
            default=False,
        ),
    )
    batch_size = 500
    max_concurrency = 4

    def accepted_types(self, connection_settings: dict) -> set[str]:
        return set(connection_settings.get("identity_types") or ()) & set(self.identity_types)

    def base_url(self, account: Account) -> str:
        # The output's URL is the destination itself; a base-URL override has no meaning here.
        return account.settings.get("url", "")

    def sandbox_destination(self, sandbox_url: str) -> dict[str, str]:
        # The sandbox receives at /webhook/<endpoint>; `partner_sandbox --seed-demo` creates the endpoint "demo"
        # (others: POST /_sandbox/webhook/endpoints). The URL is the destination: no base URL override.
        return {"url": f"{sandbox_url}/{self.slug}/demo"}

    # --- checks ----------------------------------------------------------------

    def _check_credentials(self, account: Account) -> Check:
        result = SendResult()
        outcome = self._post(account, {"audience": None, "messages": [], "test": True}, result)
        status = result.attempts[-1].status if result.attempts else None
        if result.fault:
            return Check("receiver", "failing", result.fault.message, result.fault.hint)
        if outcome.status == "retry":
            if status is None:  # no answer: the caller words it the same way for every partner
                raise http.TransportError(outcome.reason)
            return Check("receiver", "warning", f"Could not check the receiver: {outcome.reason}", TRANSIENT_HINT)
        if outcome.status != "accepted":
            return Check("receiver", "failing", outcome.reason, HINTS["url"])
        return Check("receiver", "ok", f"The webhook receiver accepted a signed test request (HTTP {status}).")

    def _verify(self, account: Account, connection_settings: dict) -> list[Check]:
        checks = [self._check_credentials(account)]
        types = sorted(self.accepted_types(connection_settings))
        if types:
            form = "SHA-256 hashes of " if connection_settings.get("hash_identities") else ""
            checks.append(Check("identity types", "ok", f"This connection forwards {form}{', '.join(types)}."))
        else:
            detail = "This connection forwards no identity types."
            checks.append(Check("identity types", "failing", detail, HINTS["identity_types"]))
        return checks

    # --- sending ---------------------------------------------------------------

    def _send(self, account: Account, connection_settings: dict, messages: list[Message]) -> SendResult:
        result = SendResult()
        accepted = self.accepted_types(connection_settings)
        shape = sha256_hex if connection_settings.get("hash_identities") else raw
        by_audience: dict[str, list[Message]] = {}
        for m in messages:
            if m.identity_type in accepted:
                by_audience.setdefault(m.audience, []).append(m)
            else:
                result.outcomes[m.key] = Outcome("rejected", f"This connection does not forward {m.identity_type}.")
        waiting = None  # once the receiver is down or busy, the other audiences wait with this one
        for audience, group in by_audience.items():
            if waiting:
                result.mark_all(group, waiting)
                continue
            rows = [{"action": m.action, "identity_type": m.identity_type, "value": shape(m.value)} for m in group]
            outcome = self._post(account, {"audience": audience, "messages": rows}, result)
            if result.fault:
                break
            result.mark_all(group, outcome)
            waiting = outcome if outcome.status == "retry" else None
        return result

    def _post(self, account: Account, payload: dict, result: SendResult) -> Outcome:
        """POST one signed body; the outcome for its messages, or a fault set on `result`."""
        url, secret = account.settings.get("url", ""), account.settings.get("secret", "")
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Relay-Timestamp": str(timestamp),
            "X-Relay-Signature": signature(secret, timestamp, body),
        }
        try:
            # The receiver's 401/403 (the signature) and 404/410 (the URL) are worded below; a redirect is a
            # fault too (outputs.partners.http), worded here as a webhook's.
            response = http.call("POST", url, result.attempts, handles=(401, 403, 404, 410), data=body, headers=headers)
        except http.DestinationAnswer as exc:
            result.fault = _redirect(exc.response, url) or exc.fault
            return Outcome("retry", result.fault.message)
        except http.TransportError as exc:
            return Outcome("retry", str(exc))
        status = response.status_code
        if 200 <= status < 300:
            return ACCEPTED
        if status in (401, 403):
            message = f"The webhook receiver refused the request (HTTP {status})."
            result.fault = Fault("credentials", message, HINTS["signature"])
        elif status in (404, 410):
            message = f"The webhook URL {_where(url)} does not exist on the receiver (HTTP {status})."
            result.fault = Fault("destination", message, HINTS["url"])
        elif status == 429:
            return Outcome(
                "retry", "The webhook receiver asked us to slow down (HTTP 429).", http.retry_after(response, 60.0)
            )
        elif status >= 500:
            return Outcome("retry", f"The webhook receiver answered with HTTP {status}, a temporary error.")
        else:
            reason = f"The webhook receiver rejected the batch (HTTP {status})"
            if "html" in (response.headers.get("Content-Type") or "").lower():
                return Outcome("rejected", f"{reason} with an HTML page.")  # its markup would read as noise
            detail = self.scrub(account, " ".join(response.text.split()))[:200]
            return Outcome("rejected", reason + (f": {detail}" if detail else "."))
        return Outcome("retry", result.fault.message)


def _redirect(response, url: str) -> Fault | None:
    if response is None or not 300 <= response.status_code < 400:
        return None
    target = _where(urljoin(url, response.headers.get("Location", "")))
    message = (
        f"The webhook answered with a redirect (HTTP {response.status_code}) to {target}; "
        "redirects are not followed: use the final URL."
    )
    return Fault("destination", message, HINTS["redirect"])
