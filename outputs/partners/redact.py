"""Masks secrets and identities in partner answers before a delivery record keeps them.

A partner's answer is kept (as an excerpt) for troubleshooting, and partners echo what they were sent: an
API key in an "invalid key" message, the email address a member was refused for. The delivery record is
read by more people, and kept longer, than the outbox row of one message, so what it keeps is masked here,
in one place: the output's secrets, every identity value of the batch (as stored and as sent), and anything
that looks like an email address, a phone number, a device ID or a hashed identifier.
"""

from __future__ import annotations

import binascii
import functools
import json
import re
from base64 import b64decode
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from urllib.parse import quote, quote_plus

SECRET = "[redacted]"
IDENTITY = "[identity]"
SHORTEST_SECRET = 4  # replacing a shorter one would garble ordinary words rather than hide anything

# The shapes of identities, shared with the log filter (config.log_filters), which marks them its own way.
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
DEVICE_ID = re.compile(r"\b[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}\b")  # IDFA, AAID
PHONE = re.compile(r"\+\d[\d ().-]{6,}\d")

_PATTERNS = (
    (EMAIL, "[email]"),
    (DEVICE_ID, "[device id]"),
    (re.compile(r"\b[0-9A-Fa-f]{32,}\b"), "[hash]"),  # MD5/SHA-256 of an identity, or a key or token
    (PHONE, "[phone]"),
    (re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/=-]{8,}"), rf"\1\2{SECRET}"),
)
# A word of an answer, as identity values appear in JSON, form data and prose.
_WORD = re.compile(r"""[^\s"',;<>(){}\[\]=&|\\]+""")

# How a secret we sent can come back written: inside a JSON string (escaped ASCII-only, as requests and Python
# write JSON, or keeping other characters), percent-encoded in a query or form (%20 or + for a space). A partner
# quoting our request inside its own JSON or form writes one of these over another, so two layers are undone.
_ENCODINGS = (
    lambda v: json.dumps(v)[1:-1],
    lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
    lambda v: quote(v, safe=""),
    lambda v: quote_plus(v, safe=""),
    lambda v: quote(v),
)
# A run of base64, such as the credentials of a Basic Authorization header ("user:secret", encoded).
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")


@functools.lru_cache(maxsize=256)
def _forms(value: str) -> tuple[str, ...]:
    """Every way `value` can be written back to us, longest first (so a longer form is replaced whole)."""
    forms = {value}
    for _ in range(2):
        forms |= {encode(form) for form in forms for encode in _ENCODINGS}
    return tuple(sorted(forms, key=len, reverse=True))


def _decodes_to(run: str, values: list[bytes]) -> bool:
    padded = run.rstrip("=") + "=" * (-len(run.rstrip("=")) % 4)
    for alphabet in (None, b"-_"):
        try:
            decoded = b64decode(padded, altchars=alphabet, validate=True)
        except (binascii.Error, ValueError):
            continue
        if any(v in decoded for v in values):
            return True
    return False


def secrets(text: str, *values, mark: str = SECRET) -> str:
    """`text` without any of the secret `values` in any form it can come back in (JSON-escaped, percent-encoded,
    in base64 as in a Basic Authorization header), nor the long parts of one (a Mailchimp key without its -us6)."""
    found = []
    for value in values:
        value = str(value or "")
        if len(value) < SHORTEST_SECRET:
            continue
        found.append(value.encode("utf-8"))
        # A part that is a plain word ("not-the-password") would garble our own sentences, not hide anything.
        parts = [p for p in value.split("-") if len(p) >= 8 and p != value and not p.isalpha()]
        for part in [value, *parts]:
            for form in _forms(part):
                text = text.replace(form, mark)
    if found and text:
        # A run decodes to three bytes per four characters: one too short to hold the shortest secret is left
        # alone undecoded (a Mailchimp answer holds hundreds of short runs, member IDs and the like).
        shortest = -(-4 * min(map(len, found)) // 3)

        def mask(match):
            run = match.group(0)
            return mark if len(run) >= shortest and _decodes_to(run, found) else run

        text = _BASE64.sub(mask, text)
    return text


def account_secrets(partner, account) -> list:
    """The secret settings of an output as the partner module was handed them."""
    return [account.settings.get(s.name) for s in partner.output_settings if s.secret]


def identities(text: str, values: Iterable[str] = ()) -> str:
    """`text` with the given identity values (compared case-insensitively) and identity-like words masked."""
    return _identities(text, {v.lower() for v in values if v})


def _identities(text: str, known: set[str]) -> str:
    """`identities`, given the values lower-cased (a batch's are lower-cased once for all its texts)."""
    if known:

        def mask(match):
            word = match.group(0)
            core = word.rstrip(".!?:")
            return IDENTITY + word[len(core) :] if core.lower() in known else word

        text = _WORD.sub(mask, text)
    for pattern, mark in _PATTERNS:
        text = pattern.sub(mark, text)
    return text


def batch(result, partner, account, messages) -> None:
    """Mask, in place, what a batch's SendResult keeps of the partner's answers.

    Every attempt's excerpt loses the account's secrets and the batch's identities. Every outcome reason and
    the fault lose the secrets: they become the messages' and the connection's last error. An outcome reason
    the partner gave for several messages at once loses the identities too: it is shown on every one of those
    messages, and one member's address must not appear beside another's. A reason for one message keeps the
    value it is about, which is shown beside it anyway ("ada@example.com looks fake or invalid").
    """
    keys = account_secrets(partner, account)
    if result.fault is not None:
        result.fault = replace(result.fault, message=secrets(result.fault.message, *keys))
    counts = Counter(o.reason for o in result.outcomes.values() if o.reason)
    if not counts and not result.attempts:
        return
    values = _values(partner, messages)
    known = {v.lower() for v in values if v}
    for attempt in result.attempts:
        # A path may name a member too: Mailchimp's /members/{MD5 of the email}.
        attempt.path = _identities(attempt.path, known)
        if attempt.response_excerpt:
            # One pass: the secrets as the partner marks them (`Partner.scrub`), then the identities.
            clean = secrets(attempt.response_excerpt, *keys, mark=partner.secret_mark)
            attempt.response_excerpt = _identities(clean, known)
    masked = {}
    for reason, n in counts.items():
        clean = secrets(reason, *keys)
        masked[reason] = _identities(clean, known) if n > 1 else clean
    masked = {reason: clean for reason, clean in masked.items() if clean != reason}
    if masked:
        result.outcomes = {
            key: replace(o, reason=masked[o.reason]) if o.reason in masked else o for key, o in result.outcomes.items()
        }


def member_reason(reason: str, partner, identity_type: str, value: str) -> str:
    """A reason the partner gave about one member, fit for a place that is not that member's message.

    The connection's last error and its delivery records are read by staff who may not see identities, so
    the member's value (as stored and as sent) and anything shaped like an identity are masked there.
    """
    values = {value}
    shape = partner.identity_types.get(identity_type)
    if shape is not None:
        values.add(shape(value))
    return identities(reason, values)


def _values(partner, messages) -> set[str]:
    """The batch's identity values as we store them and as the partner was sent them."""
    from outputs.partners.base import raw  # base imports this module

    values = {m.value for m in messages}
    shapes = partner.identity_types
    for identity_type in {m.identity_type for m in messages}:
        shape = shapes.get(identity_type)
        if shape is not None and shape is not raw:  # raw sends the value as stored
            values.update([shape(m.value) for m in messages if m.identity_type == identity_type])
    return values
