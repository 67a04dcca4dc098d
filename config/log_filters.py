"""Keep identities and secrets out of the logs.

Our own log lines name connections and outputs by id, never a member, but a log line is also written by
Django (a 400's path), django-q2 (a failed task's exception), requests and our tracebacks, and any of them
may quote a value that came from outside. This filter, on every handler, rewrites each record at INFO and
above before it is formatted: e-mail addresses, phone numbers, device and advertising IDs (UUIDs), long
hex or base64 strings that look like keys, API tokens and Authorization values become `[email]`, `[phone]`,
`[id]`, `[secret]`. DEBUG records are left alone: they are for a developer's own machine.

A request line quotes its URL as sent (`?q=victim%40example.com`, `?phone=%2B1415…`), where none of these
shapes appears: each run of URL characters holding a percent escape is decoded first (a doubly encoded one
too) and, when its decoded form holds something to mask, written masked in that decoded form.

Customer IDs have no shape to recognise, so the rule for them is in the code: no log call formats a
message's value (see the tests in tests/ops/test_log_masking.py).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

from outputs.partners.redact import DEVICE_ID, EMAIL, PHONE

_PATTERNS = [
    # Authorization headers and our API tokens first: their values would otherwise look like other things.
    (re.compile(r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 [secret]"),
    (re.compile(r"\bar_[A-Za-z0-9]+_[A-Za-z0-9_-]+"), "[secret]"),
    (re.compile(r"(?i)\b(api[_-]?key|apikey|access_token|password|secret|key)=([^&\s\"']+)"), r"\1=[secret]"),
    (EMAIL, "[email]"),
    (DEVICE_ID, "[id]"),
    # Mailchimp keys (hex-dc), Braze keys, Fernet tokens, SHA-256 hashes of identities: long runs of key
    # alphabet. 24 characters leaves room for the words, paths and numbers a log line normally holds.
    (re.compile(r"\b[0-9a-fA-F]{24,}(-[a-z]{2,4}\d{1,3})?\b"), "[secret]"),
    (re.compile(r"\b[A-Za-z0-9_-]{40,}={0,2}"), "[secret]"),
    (PHONE, "[phone]"),
]


# A run of characters a URL may hold (up to a space, a quote or a bracket) with at least one percent escape.
_ENCODED = re.compile(r"[^\s\"'<>]*%[0-9A-Fa-f]{2}[^\s\"'<>]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


# django-q2 names its processes "Process-" and a uuid4's hex ("Process-3f0c…"): a name in every worker line,
# not a key, so it is kept as it is while the rest of the line is masked.
_PROCESS_NAME = re.compile(r"\bProcess-[0-9a-f]{32}\b")


def _mask_plain(text: str) -> str:
    pieces = _PROCESS_NAME.split(text)
    names = _PROCESS_NAME.findall(text)
    masked = []
    for i, piece in enumerate(pieces):
        for pattern, replacement in _PATTERNS:
            piece = pattern.sub(replacement, piece)
        masked.append(piece + (names[i] if i < len(names) else ""))
    return "".join(masked)


def _mask_encoded(match: re.Match) -> str:
    token = plain = match.group(0)
    for _ in range(3):  # `%2540` is `%40` encoded once more; deeper nesting is not something a client sends
        decoded = unquote(plain)
        if decoded == plain:
            break
        plain = decoded
    masked = _mask_plain(plain)
    if masked == plain:
        return token  # nothing to hide: the line keeps the URL exactly as it was sent
    # A decoded line break would let a URL write a log line of its own: control characters stay escaped.
    return _CONTROL.sub(lambda c: f"%{ord(c.group()):02X}", masked)


def mask(text: str) -> str:
    return _mask_plain(_ENCODED.sub(_mask_encoded, text))


class MaskIdentities(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.INFO:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: log what there is rather than lose the line
            message = str(record.msg)
        record.msg, record.args = mask(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True
