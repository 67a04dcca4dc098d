"""The one HTTP session every partner uses.

Every request has a timeout and a User-Agent; failures to get an answer become
fixed plain sentences. No retries here: the forwarding engine decides when to
try again (with backoff and the partner's Retry-After).
"""

from __future__ import annotations

import time

import requests
from django.conf import settings

from outputs.partners.base import Attempt

USER_AGENT = "AudienceRelay/1.0 (+https://github.com/audience-relay)"
EXCERPT_CHARS = 2000


class TransportError(Exception):
    """No usable answer from the partner: the message is shown to people as it is."""


class RelaySession(requests.Session):
    def __init__(self, timeout: float):
        super().__init__()
        self.timeout = timeout
        self.headers["User-Agent"] = USER_AGENT
        adapter = requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=32, max_retries=0)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method, url, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("allow_redirects", False)
        return super().request(method, url, **kwargs)


_session: RelaySession | None = None


def session() -> RelaySession:
    global _session
    if _session is None:
        _session = RelaySession(settings.PARTNER_HTTP_TIMEOUT)
    return _session


def call(method: str, url: str, attempts: list[Attempt] | None = None, **kwargs) -> requests.Response:
    """Make one request; record it in `attempts`; raise TransportError with a plain sentence on no answer."""
    started = time.monotonic()
    path = requests.utils.urlparse(url).path
    try:
        response = session().request(method, url, **kwargs)
    except requests.Timeout:
        _record(attempts, method, path, None, started)
        raise TransportError(f"The request timed out after {session().timeout:g} seconds.") from None
    except requests.ConnectionError:
        _record(attempts, method, path, None, started)
        host = requests.utils.urlparse(url).netloc
        raise TransportError(f"A connection error occurred: could not reach {host}.") from None
    except requests.RequestException as exc:
        _record(attempts, method, path, None, started)
        raise TransportError(f"The request failed: {type(exc).__name__}.") from None
    _record(attempts, method, path, response.status_code, started, response.text[:EXCERPT_CHARS])
    return response


def _record(attempts, method, path, status, started, excerpt=""):
    if attempts is not None:
        duration = int((time.monotonic() - started) * 1000)
        attempts.append(Attempt(method, path, status, duration, excerpt))


def retry_after(response: requests.Response, default: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form); `default` when absent or unreadable."""
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def json_or_empty(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
