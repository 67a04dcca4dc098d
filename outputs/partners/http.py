"""The one HTTP session every partner uses.

Every request has a timeout and a User-Agent, never follows a redirect, reads at most
PARTNER_MAX_ANSWER_BYTES of an answer, goes only to public addresses unless
ALLOW_PRIVATE_DESTINATIONS is on (outputs.netguard), and only to the hosts its partner declares
unless ALLOW_BASE_URL_OVERRIDE is on (outputs.partners.destinations); failures to get an answer become
fixed plain sentences. No retries here: the forwarding engine decides when to try again
(with backoff and the partner's Retry-After).
"""

from __future__ import annotations

import functools
import http.client
import time
from collections.abc import Collection
from urllib.parse import urljoin, urlsplit

import requests
import urllib3.exceptions
from django.conf import settings
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError

from outputs import netguard
from outputs.partners import destinations
from outputs.partners.base import Attempt, Fault

USER_AGENT = "AudienceRelay/1.0 (+https://github.com/audience-relay)"
EXCERPT_CHARS = 2000
CHUNK_BYTES = 64 * 1024


class TransportError(Exception):
    """No usable answer from the partner: the message is shown to people as it is."""


class DestinationRefused(TransportError):
    """The destination is not one we send to (a private address, a host the partner does not declare): a person
    must change the URL, so a retry cannot help."""


class DestinationAnswer(TransportError):
    """Something answered, but about the destination itself rather than about a member (a redirect, a
    missing or gone address, refused credentials, a web page where the partner's API answers JSON): no
    retry and no rejection can help, a person must fix the output or the connection."""

    def __init__(self, fault: Fault, response: requests.Response | None = None):
        super().__init__(fault.message)
        self.fault, self.response = fault, response


# Answers about where a request went, or with what credentials, never about one member: the connection faults
# and its messages stay pending. A partner module that reads one of these itself (its own wording for a bad
# key or a missing list, or a 404 that names a member) says so per request with `handles`.
ABOUT_DESTINATION = frozenset({401, 403, 404, 410})
HINTS = {
    "redirect": (
        "Redirects are not followed, so that credentials and member data go only where this output says. "
        "Check the URL (or base URL) of this output; if the new address is the partner's, put it there, "
        "then resume the connection."
    ),
    "credentials": "Check the credentials of this output, and that they may do this, then resume the connection.",
    "missing": (
        "Check the URL (or base URL) of this output and the IDs in this connection's settings, then resume the "
        "connection."
    ),
    "content": (
        "Something other than the partner's API answered (a proxy, a login page, a wrong address): check the URL "
        "(or base URL) of this output and the network path to the partner, then resume the connection."
    ),
}


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


def timeout() -> float:
    """Seconds a request waits to connect, and for each part of the answer: PARTNER_HTTP_TIMEOUT, read at each
    request, so a change of the setting (a test's, an operator's) holds from the next request on."""
    return settings.PARTNER_HTTP_TIMEOUT


class RelaySession(requests.Session):
    """A session whose every request has a timeout: none given is PARTNER_HTTP_TIMEOUT, and none at all is
    refused, since a partner that never answers would hold a worker for good."""

    def __init__(self, guarded: bool = True):
        super().__init__()
        # No proxy or .netrc from the environment: a proxy would connect for us, past the address check,
        # and .netrc would add credentials nobody configured on an output.
        self.trust_env = False
        self.headers["User-Agent"] = USER_AGENT
        adapter_class = _GuardedAdapter if guarded else requests.adapters.HTTPAdapter
        adapter = adapter_class(pool_connections=16, pool_maxsize=32, max_retries=0)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def request(self, method, url, **kwargs):
        if kwargs.setdefault("timeout", timeout()) is None:
            raise ValueError("Every request to a partner needs a timeout.")
        kwargs.setdefault("allow_redirects", False)
        return super().request(method, url, **kwargs)


def session() -> RelaySession:
    return _session(guarded=not netguard.allowed_private())


# One session of each kind for the life of the process, for its pooled connections; it holds no setting.
# Two, so a connection opened while private destinations were allowed is never reused once they are not: the
# guarded one (production) and the plain one (development, tests, the demo's sandbox), which costs nothing more
# per request than it did before the guard existed.
@functools.cache
def _session(guarded: bool) -> RelaySession:
    return RelaySession(guarded=guarded)


# --- one request ----------------------------------------------------------------------------------------------


def call(
    method: str,
    url: str,
    attempts: list[Attempt] | None = None,
    expect_json: bool = False,
    handles: Collection[int] = (),
    **kwargs,
) -> requests.Response:
    """Make one request; record it in `attempts`; raise TransportError with a plain sentence on no usable answer.

    An answer about the destination itself raises DestinationAnswer (a fault): any redirect, and 401, 403,
    404 and 410 unless the caller `handles` that status itself on this request.

    `expect_json`: below 500, the answer must be a JSON body (or empty); an HTML page or another content type
    is the answer of something other than the partner (DestinationAnswer), and JSON that does not parse is no
    answer at all (TransportError, retried).
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
    response = None
    seconds = timeout()
    try:
        response = session().request(method, url, stream=True, timeout=seconds, **kwargs)
        _read(response, host, seconds)
    except netguard.Refused as exc:
        _record(attempts, method, path, None, started, refused=str(exc))
        raise DestinationRefused(str(exc)) from None
    except TransportError:
        _record(attempts, method, path, response.status_code, started)
        raise
    except requests.Timeout:
        _record(attempts, method, path, None, started)
        raise TransportError(f"The request timed out after {seconds:g} seconds.") from None
    except requests.ConnectionError:
        _record(attempts, method, path, None, started)
        raise TransportError(f"A connection error occurred: could not reach {host}.") from None
    except requests.RequestException as exc:
        _record(attempts, method, path, None, started)
        raise TransportError(f"The request failed: {type(exc).__name__}.") from None
    except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
        # Raised while reading the body, which requests does not wrap when it is read as a stream (requests'
        # own errors, OSErrors too, are worded above).
        _record(attempts, method, path, response.status_code if response is not None else None, started)
        raise TransportError(_broken_answer(exc, host, seconds)) from None
    _record(attempts, method, path, response.status_code, started, _excerpt(response))
    fault = _about_destination(response, host, url, expect_json, handles)
    if fault is not None:
        if attempts is not None:
            attempts[-1].fault = fault
        raise DestinationAnswer(fault, response)
    if expect_json:
        _require_json(response, host)
    return response


def _broken_answer(exc: Exception, host: str, seconds: float) -> str:
    if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
        return f"{host} stopped sending its answer for more than {seconds:g} seconds."
    if isinstance(exc, urllib3.exceptions.DecodeError):
        return f"{host} sent an answer that could not be decompressed."
    return f"{host} closed the connection before its answer was complete."


def _about_destination(response: requests.Response, host: str, url: str, expect_json: bool, handles) -> Fault | None:
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("Location")
        where = f"to {_shown(urljoin(url, location))}" if location else "without a Location"
        message = f"{host} answered with a redirect (HTTP {status}) {where}; redirects are not followed."
        return Fault("destination", message, HINTS["redirect"])
    if status in ABOUT_DESTINATION and status not in handles:
        if status in (401, 403):
            message = f"{host} refused the credentials of this output (HTTP {status})."
            return Fault("credentials", message, HINTS["credentials"])
        message = f"{host} answered HTTP {status}: the partner's API is not at this address."
        return Fault("destination", message, HINTS["missing"])
    if expect_json and status < 500 and status != 429:
        what = _not_json(response)
        if what:
            message = f"{host} answered HTTP {status} with {what}; the answer could not be read."
            return Fault("destination", message, HINTS["content"])
    return None


def _shown(url: str) -> str:
    """A URL as we may show it: scheme, host and path (a query string may carry a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


def _not_json(response: requests.Response) -> str:
    """What the answer is instead of JSON when it is plainly something else (a page, text); "" otherwise."""
    if not response.content.strip():
        return ""
    kind = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if kind == "text/html" or response.content.lstrip()[:1] == b"<":
        return "an HTML page instead of JSON"
    if kind and "json" not in kind:
        try:
            _parsed(response)
        except ValueError:
            return f"{kind} instead of JSON"
    return ""


def _read(response: requests.Response, host: str, seconds: float) -> None:
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
    deadline = time.monotonic() + 4 * seconds
    raw = response.raw
    # read1: what has arrived, up to CHUNK_BYTES (iter_content would wait for a whole chunk, past the deadline).
    while chunk := raw.read1(CHUNK_BYTES, decode_content=True):
        body += chunk
        if len(body) > limit:
            response.close()
            raise too_big
        if time.monotonic() > deadline:
            response.close()
            raise TransportError(f"{host} took more than {4 * seconds:g} seconds to send its answer.")
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
    """A 2xx answer in JSON that does not parse (cut short, garbled) is no answer: the batch is retried."""
    status = response.status_code
    if status >= 300 or not response.content.strip():
        return
    try:
        _parsed(response)
    except ValueError:
        raise TransportError(
            f"{host} answered HTTP {status} with JSON that does not parse; the answer could not be read."
        ) from None


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
