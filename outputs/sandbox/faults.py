"""Fault injection: the next N matching partner requests (or a seeded random share of them) misbehave.

Kinds:
- ``status``: answer that status with the partner's own error body for it (and ``Retry-After`` when given);
- ``timeout``: hold the request ``delay`` seconds (default 30, at most 60), then answer normally;
- ``drop``: close the connection without an answer;
- ``slow``: wait ``delay`` seconds (default 1), then answer normally;
- ``answer``: answer ``status`` (default 200) with ``body`` (default empty) as ``content_type`` (default
  ``text/html; charset=utf-8``) and any ``headers`` ({name: value}, a ``Location`` say): what a proxy, a
  captive portal or a broken partner answers instead of the partner's JSON;
- ``huge``: answer ``status`` (default 200) with a JSON body of ``size`` bytes (default 6 MiB, at most 64 MiB);
- ``cut``: answer ``status`` (default 200) declaring a JSON body but send only its first half, then hang up;
- ``stall``: the same, but hold the connection ``delay`` seconds (default 30, at most 60) before hanging up;
- ``bad_gzip``: answer ``status`` (default 200) with ``Content-Encoding: gzip`` and a body that is not gzip;
- ``echo``: answer ``status`` (default 400) with ``body`` (a template, default ``{"error": "Could not read:
  {request}"}``, as ``content_type``, default ``application/json``) where ``{request}`` is what the request
  carried as it was received (its Authorization header, query string and body) written as ``encoding``:
  ``json`` (inside a JSON string, non-ASCII as \\u escapes; the default), ``json-utf8`` (inside a JSON string,
  non-ASCII kept), ``url`` (percent-encoded, a space as %20), ``url-plus`` (a space as +) or ``raw``: what a
  partner quoting our request back in its error does.
"""

import json
import random
import threading
from urllib.parse import quote, quote_plus

from .common import Partial, Response

KINDS = ("status", "timeout", "drop", "slow", "answer", "huge", "cut", "stall", "bad_gzip", "echo")
# Faults that replace the partner's answer with one of their own.
ANSWERS = ("answer", "huge", "cut", "stall", "bad_gzip", "echo")
ECHO_BODY = '{"error": "Could not read: {request}"}'
ECHO_ENCODINGS = {
    "json": lambda text: json.dumps(text)[1:-1],
    "json-utf8": lambda text: json.dumps(text, ensure_ascii=False)[1:-1],
    "url": lambda text: quote(text, safe=""),
    "url-plus": lambda text: quote_plus(text, safe=""),
    "raw": lambda text: text,
}
# The JSON body a cut or stalled answer declares; half of it is sent.
PARTIAL_BODY = b'{"status":"ok","padding":"' + b"x" * 2048 + b'"}'
MAX_DELAY = 60.0
HUGE_DEFAULT = 6 * 1024 * 1024
HUGE_MAX = 64 * 1024 * 1024


class FaultError(ValueError):
    """A fault specification that cannot be used; the message names the field."""


class Fault:
    __slots__ = (
        "id",
        "partner",
        "path",
        "kind",
        "status",
        "retry_after",
        "delay",
        "remaining",
        "probability",
        "rng",
        "body",
        "seed",
        "applied",
        "content_type",
        "headers",
        "size",
        "encoding",
    )

    def describe(self):
        out = {"id": self.id, "partner": self.partner, "path": self.path, "kind": self.kind, "applied": self.applied}
        if self.kind == "status":
            out["status"] = self.status
            if self.retry_after is not None:
                out["retry_after"] = self.retry_after
            if self.body is not None:
                out["body"] = self.body
        if self.kind in ("timeout", "slow"):
            out["delay"] = self.delay
        if self.kind == "answer":
            out.update(status=self.status, content_type=self.content_type, headers=self.headers, body=self.body)
        if self.kind == "huge":
            out.update(status=self.status, size=self.size)
        if self.kind in ("cut", "stall", "bad_gzip"):
            out["status"] = self.status
        if self.kind == "stall":
            out["delay"] = self.delay
        if self.kind == "echo":
            out.update(status=self.status, content_type=self.content_type, body=self.body, encoding=self.encoding)
        if self.probability is None:
            out["remaining"] = self.remaining
        else:
            out["probability"] = self.probability
            out["seed"] = self.seed
        return out


def _answer_spec(fault, spec):
    status = spec.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise FaultError(f"'status' must be an HTTP status between 200 and 599, not {status!r}.")
    fault.status = status
    fault.content_type = spec.get("content_type", "text/html; charset=utf-8")
    if not isinstance(fault.content_type, str):
        raise FaultError("'content_type' must be a string.")
    fault.headers = spec.get("headers") or {}
    if not isinstance(fault.headers, dict) or not all(isinstance(v, str) for v in fault.headers.values()):
        raise FaultError("'headers' must be an object of header names and string values.")
    if fault.body is not None and not isinstance(fault.body, str):
        raise FaultError("'body' must be a string.")
    fault.size = int(_number(spec, "size", HUGE_DEFAULT, minimum=1, maximum=HUGE_MAX))


def answer(fault, request=None):
    """The response an answer fault gives instead of the partner's."""
    if fault.kind in ("cut", "stall"):
        response = Response(fault.status, PARTIAL_BODY, [("Content-Type", "application/json")])
        return Partial(response, len(PARTIAL_BODY) // 2, fault.delay or 0.0)
    if fault.kind == "bad_gzip":
        headers = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")]
        return Response(fault.status, b"this is not gzip data at all", headers)
    if fault.kind == "echo":
        carried = _carried(request)
        body = (fault.body or ECHO_BODY).replace("{request}", ECHO_ENCODINGS[fault.encoding](carried))
        return Response(fault.status, body.encode("utf-8"), [("Content-Type", fault.content_type)])
    if fault.kind == "huge":
        filler = b"x" * max(0, fault.size - len(b'{"padding":""}'))
        return Response(fault.status, b'{"padding":"' + filler + b'"}', [("Content-Type", "application/json")])
    headers = [("Content-Type", fault.content_type), *fault.headers.items()]
    return Response(fault.status, (fault.body or "").encode("utf-8"), headers)


def _carried(request):
    """What a request carried, as received: its Authorization header, its query string and its body."""
    parts = []
    if request.headers.get("Authorization"):
        parts.append(f"Authorization: {request.headers.get('Authorization')}")
    if request.query:
        parts.append(f"?{request.query}")
    if request.body:
        parts.append(request.body.decode("utf-8", "replace"))
    return "\n".join(parts)


def _status(fault, spec, default):
    status = spec.get("status", default)
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise FaultError(f"'status' must be an HTTP status between 200 and 599, not {status!r}.")
    fault.status = status


def _echo_spec(fault, spec):
    _status(fault, spec, 400)
    fault.content_type = spec.get("content_type", "application/json")
    if not isinstance(fault.content_type, str):
        raise FaultError("'content_type' must be a string.")
    if fault.body is not None and not isinstance(fault.body, str):
        raise FaultError("'body' must be a string.")
    fault.encoding = spec.get("encoding", "json")
    if fault.encoding not in ECHO_ENCODINGS:
        raise FaultError(f"'encoding' must be one of {', '.join(ECHO_ENCODINGS)}, not {fault.encoding!r}.")


def _number(spec, field, default, minimum=0.0, maximum=None):
    value = spec.get(field, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise FaultError(f"'{field}' must be a number, not {value!r}.")
    if value < minimum:
        raise FaultError(f"'{field}' must be at least {minimum}, not {value!r}.")
    if maximum is not None:
        value = min(value, maximum)
    return value


class FaultBook:
    def __init__(self, partners):
        self.partners = partners  # the names a fault may target
        self._lock = threading.Lock()
        self._faults = []
        self._next_id = 1

    def add(self, spec):
        if not isinstance(spec, dict):
            raise FaultError("The fault must be a JSON object.")
        partner = spec.get("partner", "*")
        if partner not in self.partners and partner != "*":
            raise FaultError(f"'partner' must be one of {', '.join(self.partners)} (or '*'), not {partner!r}.")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise FaultError(f"'kind' must be one of {', '.join(KINDS)}, not {kind!r}.")
        path = spec.get("path") or ""
        if not isinstance(path, str):
            raise FaultError("'path' must be a string (a substring of the request path).")
        fault = Fault()
        fault.partner, fault.kind, fault.path, fault.applied = partner, kind, path, 0
        fault.status = None
        fault.retry_after = None
        fault.body = spec.get("body")
        fault.delay = None
        fault.content_type, fault.headers, fault.size, fault.encoding = None, None, None, None
        if kind == "status":
            status = spec.get("status", 503)
            if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
                raise FaultError(f"'status' must be an HTTP error status between 400 and 599, not {status!r}.")
            fault.status = status
            fault.retry_after = _number(spec, "retry_after", None)
        elif kind == "timeout":
            fault.delay = _number(spec, "delay", 30.0, maximum=MAX_DELAY)
        elif kind == "slow":
            fault.delay = _number(spec, "delay", 1.0, maximum=MAX_DELAY)
        elif kind == "echo":
            _echo_spec(fault, spec)
        elif kind in ("cut", "stall", "bad_gzip"):
            _status(fault, spec, 200)
            if kind == "stall":
                fault.delay = _number(spec, "delay", 30.0, maximum=MAX_DELAY)
        elif kind in ANSWERS:
            _answer_spec(fault, spec)
        probability = spec.get("probability")
        if probability is None:
            count = spec.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise FaultError(f"'count' must be a positive integer, not {count!r}.")
            fault.remaining, fault.probability, fault.rng, fault.seed = count, None, None, None
        else:
            if isinstance(probability, bool) or not isinstance(probability, (int, float)) or not 0 <= probability <= 1:
                raise FaultError(f"'probability' must be a number between 0 and 1, not {probability!r}.")
            seed = spec.get("seed")
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, str))):
                raise FaultError(f"'seed' must be an integer or a string, not {seed!r}.")
            fault.remaining, fault.probability, fault.seed = None, float(probability), seed
            fault.rng = random.Random(seed)
        with self._lock:
            fault.id = self._next_id
            self._next_id += 1
            self._faults.append(fault)
        return fault.describe()

    def clear(self):
        with self._lock:
            cleared = len(self._faults)
            self._faults = []
        return cleared

    def describe(self):
        with self._lock:
            return [f.describe() for f in self._faults]

    def take(self, partner, target):
        """The fault to apply to this request, if any; count-based faults are used up here."""
        if not self._faults:  # the common case costs no lock
            return None
        with self._lock:
            for fault in self._faults:
                if fault.partner != "*" and fault.partner != partner:
                    continue
                if fault.path and fault.path not in target:
                    continue
                if fault.probability is None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                elif fault.rng.random() >= fault.probability:
                    continue
                fault.applied += 1
                return fault
        return None
