"""The one HTTP session every partner uses.

Every request has a timeout and a User-Agent, never follows a redirect, reads at most
PARTNER_MAX_ANSWER_BYTES of an answer, goes only to public addresses unless
ALLOW_PRIVATE_DESTINATIONS is on (outputs.netguard), and only to the hosts its partner declares
unless ALLOW_BASE_URL_OVERRIDE is on (outputs.partners.destinations); failures to get an answer become
fixed plain sentences. No retries here: the forwarding engine decides when to try again
(with backoff and the partner's Retry-After).
"""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import requests
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError

from outputs import netguard
from outputs.partners import destinations
from outputs.partners.base import Attempt

USER_AGENT = "AudienceRelay/1.0 (+https://github.com/audience-relay)"
EXCERPT_CHARS = 2000
CHUNK_BYTES = 64 * 1024


class TransportError(Exception):
    """No usable answer from the partner: the message is shown to people as it is."""


class DestinationRefused(TransportError):
    """The destination is not one we send to (a private address, a host the partner does not declare): a person
    must change the URL, so a retry cannot help."""


# --- connections that go only where netguard checked ------------------------------------------------------


class _Guarded:
    """Resolves the host once, checks every address, and connects to those addresses only.

    The name stays the connection's host, so the Host header, TLS SNI and the certificate check are for the
    name; only the socket is pointed at the checked address. Nothing resolves the name a second time, so a
    DNS answer that changes after the check (rebinding) is never used.
    """

    def _new_conn(self):
        name = self._dns_host
        try:
            answers = netguard.checked_addresses(name, self.port)
        except (OSError, UnicodeError) as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        failure = None
        for *_, sockaddr in answers:
            self._dns_host = sockaddr[0]
            try:
                return super()._new_conn()
            except ConnectTimeoutError as exc:  # NewConnectionError included: try the next checked address
                failure = exc
            finally:
                self._dns_host = name
        raise failure


class _GuardedHTTPConnection(_Guarded, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_Guarded, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(requests.adapters.HTTPAdapter):
    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}


class RelaySession(requests.Session):
    def __init__(self, timeout: float, guarded: bool = True):
        super().__init__()
        self.timeout = timeout
        # No proxy or .netrc from the environment: a proxy would connect for us, past the address check,
        # and .netrc would add credentials nobody configured on an output.
        self.trust_env = False
        self.headers["User-Agent"] = USER_AGENT
        adapter_class = _GuardedAdapter if guarded else requests.adapters.HTTPAdapter
        adapter = adapter_class(pool_connections=16, pool_maxsize=32, max_retries=0)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method, url, **kwargs):
        kwargs.setdefault("timeout", self.timeout)
        kwargs.setdefault("allow_redirects", False)
        return super().request(method, url, **kwargs)


# Two sessions, so a connection opened while private destinations were allowed is never reused once they
# are not: the guarded one (production) and the plain one (development, tests, the demo's sandbox), which
# costs nothing more per request than it did before the guard existed.
_session: RelaySession | None = None
_guarded_session: RelaySession | None = None


def session() -> RelaySession:
    global _session, _guarded_session
    if netguard.allowed_private():
        if _session is None:
            _session = RelaySession(settings.PARTNER_HTTP_TIMEOUT, guarded=False)
        return _session
    if _guarded_session is None:
        _guarded_session = RelaySession(settings.PARTNER_HTTP_TIMEOUT, guarded=True)
    return _guarded_session


# --- one request ----------------------------------------------------------------------------------------------


def call(
    method: str, url: str, attempts: list[Attempt] | None = None, expect_json: bool = False, **kwargs
) -> requests.Response:
    """Make one request; record it in `attempts`; raise TransportError with a plain sentence on no usable answer.

    `expect_json`: a 2xx or 3xx answer must be a JSON body (or empty); an HTML page, plain text or broken
    JSON is no answer at all, rather than a success with nothing in it.
    """
    started = time.monotonic()
    parts = urlsplit(url)
    path, host = parts.path, parts.netloc
    # How the URL is written and whose host it names are checked before every request, not only when an output
    # is saved: a URL stored before a rule existed, or one a partner's answer names, is held to it too.
    problem = netguard.form_refusal(url) or destinations.current_refusal(url)
    if problem:
        _record(attempts, method, path, None, started, refused=problem)
        raise DestinationRefused(problem)
    try:
        response = session().request(method, url, stream=True, **kwargs)
        _read(response, host)
    except netguard.Refused as exc:
        _record(attempts, method, path, None, started, refused=str(exc))
        raise DestinationRefused(str(exc)) from None
    except TransportError:
        _record(attempts, method, path, response.status_code, started)
        raise
    except requests.Timeout:
        _record(attempts, method, path, None, started)
        raise TransportError(f"The request timed out after {session().timeout:g} seconds.") from None
    except requests.ConnectionError:
        _record(attempts, method, path, None, started)
        raise TransportError(f"A connection error occurred: could not reach {host}.") from None
    except requests.RequestException as exc:
        _record(attempts, method, path, None, started)
        raise TransportError(f"The request failed: {type(exc).__name__}.") from None
    _record(attempts, method, path, response.status_code, started, _excerpt(response))
    if expect_json:
        _require_json(response, host)
    return response


def _read(response: requests.Response, host: str) -> None:
    """Read the body into the response, refusing one bigger than PARTNER_MAX_ANSWER_BYTES."""
    limit = settings.PARTNER_MAX_ANSWER_BYTES
    too_big = TransportError(f"{host} answered with more than {_size(limit)}; the answer was not read.")
    try:
        declared = int(response.headers.get("Content-Length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        response.close()  # the connection is dropped rather than drained of a body we will not read
        raise too_big
    body = bytearray()
    # The timeout bounds each wait for bytes; this bounds the whole answer, so a partner dripping a byte
    # every few seconds cannot hold a worker until the task is killed.
    deadline = time.monotonic() + 4 * session().timeout
    raw = response.raw
    # read1: what has arrived, up to CHUNK_BYTES (iter_content would wait for a whole chunk, past the deadline).
    while chunk := raw.read1(CHUNK_BYTES, decode_content=True):
        body += chunk
        if len(body) > limit:
            response.close()
            raise too_big
        if time.monotonic() > deadline:
            response.close()
            raise TransportError(f"{host} took more than {4 * session().timeout:g} seconds to send its answer.")
    response._content = bytes(body)  # what requests does itself once a streamed body is read in full
    raw.release_conn()  # read in full: the connection goes back to the pool for the next request


def _excerpt(response: requests.Response) -> str:
    # The start of the body only: decoding (and guessing the charset of) megabytes to keep 2,000 characters
    # would cost more than the request.
    head = response.content[: EXCERPT_CHARS * 4]
    try:
        return head.decode(response.encoding or "utf-8", "replace")[:EXCERPT_CHARS]
    except LookupError:  # a charset Python does not know
        return head.decode("utf-8", "replace")[:EXCERPT_CHARS]


def _require_json(response: requests.Response, host: str) -> None:
    status = response.status_code
    if 300 <= status < 400:
        raise TransportError(f"{host} answered with a redirect (HTTP {status}); redirects are not followed.")
    if status >= 300 or not response.content.strip():
        return
    try:
        _parsed(response)
    except ValueError:
        kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if kind == "text/html" or response.content.lstrip()[:1] == b"<":
            what = "an HTML page instead of JSON"
        elif kind and "json" not in kind:
            what = f"{kind} instead of JSON"
        else:
            what = "JSON that does not parse"
        raise TransportError(f"{host} answered HTTP {status} with {what}; the answer could not be read.") from None


def _size(limit: int) -> str:
    if limit >= 1024 * 1024:
        return f"{limit / (1024 * 1024):g} MB"
    if limit >= 1024:
        return f"{limit / 1024:g} KB"
    return f"{limit} bytes"


def _record(attempts, method, path, status, started, excerpt="", refused=""):
    if attempts is not None:
        duration = int((time.monotonic() - started) * 1000)
        attempts.append(Attempt(method, path, status, duration, excerpt, refused))


def retry_after(response: requests.Response, default: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds form); `default` when absent or unreadable."""
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


def json_or_empty(response: requests.Response) -> dict:
    try:
        body = _parsed(response)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _parsed(response: requests.Response):
    """The answer's JSON, parsed once: the JSON check in `call` and the partner module's reading share it
    (a Mailchimp answer about 500 members is parsed on every batch)."""
    if not hasattr(response, "_relay_json"):
        response._relay_json = response.json()
    return response._relay_json
