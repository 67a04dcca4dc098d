"""The identity vocabulary: identity types, their nouns, and how each value is normalized before it is stored.

Every app imports it (audiences, the partners, connections); it imports none of them.

Normalization happens once, on the way in, so that `(type, value)` is unique
for real and every partner sees the same canonical value.
"""

import re
import uuid

import phonenumbers
from django.conf import settings
from django.db import models


class IdentityType(models.TextChoices):
    EMAIL = "email", "Email"
    CUSTOMER_ID = "customer_id", "Customer ID"
    MOBILE_NUMBER = "mobile_number", "Mobile number"
    IOS_IDFA = "ios_idfa", "iOS advertising ID (IDFA)"
    IOS_IDFV = "ios_idfv", "iOS vendor ID (IDFV)"
    ANDROID_AAID = "android_aaid", "Android advertising ID (AAID)"
    ANDROID_UUID = "android_uuid", "Android UUID"
    FACEBOOK_ID = "facebook_id", "Facebook ID"
    GOOGLE_ID = "google_id", "Google ID"
    MICROSOFT_ID = "microsoft_id", "Microsoft ID"
    OTHER = "other", "Other"


# Mobile device IDs, in the vocabulary's order; each is a UUID.
DEVICE_TYPES = ("ios_idfa", "ios_idfv", "android_aaid", "android_uuid")

ADVERTISING_TYPES = ("ios_idfa", "android_aaid")  # the resettable advertising IDs among them

# How a sentence names one identity of a type: "None has an email address."
SINGULARS = {
    "email": "an email address",
    "customer_id": "a customer ID",
    "mobile_number": "a mobile number",
    "ios_idfa": "an iOS advertising ID",
    "ios_idfv": "an iOS vendor ID",
    "android_aaid": "an Android advertising ID",
    "android_uuid": "an Android UUID",
    "facebook_id": "a Facebook ID",
    "google_id": "a Google ID",
    "microsoft_id": "a Microsoft ID",
    "other": "another identity",
}

# How a sentence names many identities of a type: "Braze accepts only customer IDs."
PLURALS = {
    "email": "email addresses",
    "customer_id": "customer IDs",
    "mobile_number": "mobile numbers",
    "ios_idfa": "iOS advertising IDs",
    "ios_idfv": "iOS vendor IDs",
    "android_aaid": "Android advertising IDs",
    "android_uuid": "Android UUIDs",
    "facebook_id": "Facebook IDs",
    "google_id": "Google IDs",
    "microsoft_id": "Microsoft IDs",
    "other": "other identities",
}


def plural_phrase(types) -> str:
    """ "email addresses, customer IDs or mobile numbers", in the vocabulary's order."""
    nouns = [PLURALS[t] for t in IdentityType.values if t in set(types)]
    if not nouns:
        return "no identities"
    return ", ".join(nouns[:-1]) + " or " + nouns[-1] if len(nouns) > 1 else nouns[0]


MAX_VALUE_LENGTH = 255

# Deliberately simple: one @, no spaces, a dot in the domain. Full RFC 5322
# parsing rejects nothing useful and accepts addresses no partner takes.
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")


class InvalidIdentity(ValueError):
    """A value that cannot be normalized for its type; the message says why."""


def normalize(identity_type: str, value) -> str:
    if identity_type not in IdentityType.values:
        raise InvalidIdentity(
            f"unknown identity type '{identity_type}'; expected one of {', '.join(IdentityType.values)}"
        )
    if not isinstance(value, str):
        raise InvalidIdentity("must be a string")
    value = value.strip()
    if not value:
        raise InvalidIdentity("must not be empty")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidIdentity("must not contain control characters")
    if identity_type == "email":
        value = value.lower()
        if not EMAIL_RE.match(value):
            raise InvalidIdentity(f"'{value}' is not a valid email address")
    elif identity_type in DEVICE_TYPES:
        try:
            value = str(uuid.UUID(value))
        except ValueError:
            raise InvalidIdentity(f"'{value}' is not a device ID (expected a UUID)") from None
    elif identity_type == "mobile_number":
        value = _to_e164(value)
    if len(value) > MAX_VALUE_LENGTH:
        raise InvalidIdentity(f"must be at most {MAX_VALUE_LENGTH} characters")
    return value


def _to_e164(raw: str) -> str:
    candidate = "+" + raw[2:] if raw.startswith("00") else raw
    try:
        number = phonenumbers.parse(candidate, settings.PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise InvalidIdentity(f"'{raw}' is not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidIdentity(f"'{raw}' is not a possible phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
