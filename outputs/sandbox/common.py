"""Plain request/response values shared by the router, the partners and the control API.

Stdlib only, and nothing from Django or from ``outputs.partners``: the sandbox is written from the partners'
public API references, independently of our adapters.
"""

import json
import threading
import time
import uuid
from email.parser import BytesParser
from email.policy import HTTP
from http import HTTPStatus
from urllib.parse import parse_qs

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

# Answer a DROP and the connection is closed without a response (the "drop" fault).
DROP = object()


class BadJSON(ValueError):
    """The request body is not the JSON the endpoint needs."""


class Request:
    """One partner or control request, already read off the socket."""

    __slots__ = ("method", "path", "query", "headers", "body", "host", "ctx", "_json", "_form")

    def __init__(self, method, path, query, headers, body, host):
        self.method = method
        self.path = path  # without the query string, percent-encoding untouched
        self.query = query  # the raw query string
        self.headers = headers  # an http.client.HTTPMessage (case-insensitive .get)
        self.body = body
        self.host = host  # "127.0.0.1:54321", from the Host header or the server address
        self.ctx = {}
        self._json = None
        self._form = None

    def json(self):
        """The body as JSON; raises BadJSON when it is not."""
        if self._json is None:
            if not self.body:
                raise BadJSON("empty body")
            try:
                self._json = json.loads(self.body)
            except (ValueError, UnicodeDecodeError) as exc:
                raise BadJSON(str(exc)) from None
        return self._json

    def params(self):
        """Query string and form/JSON body fields merged (body wins), as single string-or-object values.

        The Graph API takes its parameters from any of these places, so the Facebook emulation reads them here.
        """
        if self._form is None:
            form = {k: v[-1] for k, v in parse_qs(self.query, keep_blank_values=True).items()}
            ctype = (self.headers.get("Content-Type") or "").lower()
            if self.body:
                if ctype.startswith("application/x-www-form-urlencoded"):
                    text = self.body.decode("utf-8", "replace")
                    form.update({k: v[-1] for k, v in parse_qs(text, keep_blank_values=True).items()})
                elif ctype.startswith("multipart/form-data"):
                    form.update(_multipart(self.body, self.headers.get("Content-Type")))
                elif ctype.startswith("application/json"):
                    try:
                        data = self.json()
                    except BadJSON:
                        data = None
                    if isinstance(data, dict):
                        form.update(data)
            self._form = form
        return self._form

    def query_params(self):
        return {k: v[-1] for k, v in parse_qs(self.query, keep_blank_values=True).items()}

    def base_url(self):
        return f"http://{self.host}"


def _multipart(body, content_type):
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    fields = {}
    if message.is_multipart():
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name:
                payload = part.get_payload(decode=True) or b""
                fields[name] = payload.decode("utf-8", "replace")
    return fields


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status, body=b"", headers=None):
        self.status = status
        self.body = body
        self.headers = headers or []


class Partial:
    """An answer that stops part-way: its head and the first ``sent`` bytes of its body, then, after ``hold``
    seconds, the connection is closed (a receiver that crashes or stalls while answering)."""

    __slots__ = ("response", "sent", "hold")

    def __init__(self, response, sent, hold=0.0):
        self.response, self.sent, self.hold = response, sent, hold


def json_response(status, payload, headers=None, content_type="application/json; charset=utf-8"):
    extra = [("Content-Type", content_type)]
    if headers:
        extra.extend(headers)
    return Response(status, _dumps(payload).encode("utf-8"), extra)


def empty_response(status=204, headers=None):
    return Response(status, b"", headers)


def dumps(payload):
    return _dumps(payload)


def new_id():
    return str(uuid.uuid4())


def now():
    return time.time()


def utc_stamp(ts=None):
    """'2012-05-21 16:42:29', the AppNexus/Xandr timestamp format (UTC)."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts if ts is not None else time.time()))


def iso_stamp(ts=None):
    """'2024-05-01T10:20:30+00:00', the Mailchimp timestamp format."""
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(ts if ts is not None else time.time()))


class Partner:
    """One emulated partner API. State lives in memory behind ``self.lock``.

    The router calls ``admit`` (auth and admission limits that must run before any injected fault, such as
    Mailchimp's 10 simultaneous connections), then applies a fault if one matches, then ``handle``; ``release``
    always runs afterwards. ``error_response`` builds the partner's own error body for an injected status.
    """

    name = ""

    def __init__(self, sandbox):
        self.sandbox = sandbox
        self.lock = threading.Lock()
        self.duplicates = 0
        self.reset()

    def reset(self):
        self.duplicates = 0

    def dump(self):  # pragma: no cover - every partner overrides it
        """What this partner holds, as JSON-safe values (the caller holds ``self.lock``). Counters of the
        sandbox's own (duplicates, rate windows, requests in flight) are not part of it."""
        raise NotImplementedError

    def load(self, state):  # pragma: no cover - every partner overrides it
        """Replace what this partner holds with a ``dump()`` (the caller holds ``self.lock``); a state of another
        shape raises KeyError, TypeError or ValueError."""
        raise NotImplementedError

    def admit(self, request):
        return None

    def release(self, request):
        pass

    def handle(self, request):  # pragma: no cover - every partner overrides it
        raise NotImplementedError

    def error_response(self, status, retry_after=None):  # pragma: no cover - every partner overrides it
        raise NotImplementedError

    # Whether ``revoke`` applies: POST /_sandbox/revoke names only partners with a credential to revoke.
    revocable = True

    def revoke(self, credential):
        return False

    def index(self, base):
        return {}

    def control_routes(self):
        """This partner's ``/_sandbox/<name>/...`` routes: (method, pattern after the name, handler(request, ...))."""
        return []

    def seed_demo(self, base):
        """Create this partner's demo account where missing (``POST /_sandbox/seed/demo``); return it with the URL
        an output points at. What the sandbox already holds is left as it is."""
        return {}

    def demo_summary(self, demo):
        """The demo account in a few words, for ``manage.py partner_sandbox --seed-demo``."""
        return ""


# --- what control routes answer --------------------------------------------------------------------------------


def control_body(action):
    """A control route taking a JSON object and answering 201 with what ``action(payload)`` returns."""

    def handler(request):
        try:
            payload = request.json() if request.body else {}
        except BadJSON:
            return json_response(400, {"error": "The request body is not valid JSON."})
        if not isinstance(payload, dict):
            return json_response(400, {"error": "The request body must be a JSON object."})
        try:
            return json_response(201, action(payload))
        except ValueError as exc:
            return json_response(400, {"error": str(exc)})

    return handler


def found(value, kind, ident):
    if value is None:
        return json_response(404, {"error": f"No {kind} '{ident}' in the sandbox."})
    return json_response(200, value)


def deleted(done, kind, ident):
    if not done:
        return json_response(404, {"error": f"No {kind} '{ident}' in the sandbox."})
    return json_response(200, {"deleted": ident})


def retry_after_header(retry_after):
    if retry_after is None:
        return []
    value = retry_after if isinstance(retry_after, int) else max(0, round(float(retry_after)))
    return [("Retry-After", str(value))]


def reason(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
