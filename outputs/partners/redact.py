"""Masks secrets and identities in partner answers before a delivery record keeps them.

A partner's answer is kept (as an excerpt) for troubleshooting, and partners echo what they were sent: an
API key in an "invalid key" message, the email address a member was refused for. The delivery record is
read by more people, and kept longer, than the outbox row of one message, so what it keeps is masked here,
in one place: the output's secrets, every identity value of the batch (as stored and as sent), and anything
that looks like an email address, a phone number, a device ID or a hashed identifier.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

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


def secrets(text: str, *values, mark: str = SECRET) -> str:
    """`text` without any of the secret `values`, nor the long parts of one (a Mailchimp key without its -us6)."""
    for value in values:
        value = str(value or "")
        if len(value) < SHORTEST_SECRET:
            continue
        for part in [value, *(p for p in value.split("-") if len(p) >= 8 and p != value)]:
            text = text.replace(part, mark)
    return text


def identities(text: str, values: Iterable[str] = ()) -> str:
    """`text` with the given identity values (compared case-insensitively) and identity-like words masked."""
    known = {v.lower() for v in values if v}
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

    Every attempt's excerpt loses the account's secrets and the batch's identities. An outcome reason the
    partner gave for several messages at once loses the identities too: it is shown on every one of those
    messages, and one member's address must not appear beside another's. A reason for one message keeps the
    value it is about, which is shown beside it anyway ("ada@example.com looks fake or invalid").
    """
    shared = Counter(o.reason for o in result.outcomes.values() if o.reason)
    shared = {reason for reason, n in shared.items() if n > 1}
    if not shared and not result.attempts:
        return
    values = _values(partner, messages)
    keys = [account.settings.get(s.name) for s in partner.output_settings if s.secret]
    for attempt in result.attempts:
        # A path may name a member too: Mailchimp's /members/{MD5 of the email}.
        attempt.path = identities(attempt.path, values)
        if attempt.response_excerpt:
            attempt.response_excerpt = identities(secrets(attempt.response_excerpt, *keys), values)
    if shared:
        masked = {reason: identities(reason, values) for reason in shared}
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
    values = set()
    for m in messages:
        values.add(m.value)
        shape = partner.identity_types.get(m.identity_type)
        if shape is not None:
            values.add(shape(m.value))
    return values
