"""Which identities Google Ads Customer Match takes and how each is shaped, as data.

A UserIdentifier holds one of hashed_email, hashed_phone_number, mobile_id, third_party_user_id (and address_info,
which we do not hold): https://developers.google.com/google-ads/api/reference/rpc/v17/UserIdentifier. Emails are
trimmed and lower-cased before SHA-256 (https://developers.google.com/google-ads/api/docs/remarketing/audience-types/
customer-match); phone numbers are E.164, "+" included, before SHA-256.
"""

from outputs.partners.base import sha256_hex

# How each identity type becomes a UserIdentifier: its field and the steps that shape the value (mobile IDs and
# our own customer IDs go as they are).
IDENTIFIERS = {
    "email": ("hashedEmail", ("trim", "lowercase", "sha256")),
    "mobile_number": ("hashedPhoneNumber", ("e164", "sha256")),
    "customer_id": ("thirdPartyUserId", ("trim",)),
    "ios_idfa": ("mobileId", ("trim",)),
    "android_aaid": ("mobileId", ("trim",)),
}
# A Customer Match list holds one kind of key ("Mixed data types are not allowed on the same list").
KEY_TYPES = {
    "CONTACT_INFO": ("email", "mobile_number"),
    "CRM_ID": ("customer_id",),
    "MOBILE_ADVERTISING_ID": ("ios_idfa", "android_aaid"),
}
KEY_LABELS = {
    "CONTACT_INFO": "contact info (email addresses and phone numbers)",
    "CRM_ID": "CRM IDs (your customer IDs)",
    "MOBILE_ADVERTISING_ID": "mobile advertising IDs",
}


def _e164(value: str) -> str:
    # Stored numbers are E.164 already (identities); Google hashes them with their "+".
    return "+" + "".join(ch for ch in value if ch.isdigit())


STEPS = {"trim": str.strip, "lowercase": str.lower, "sha256": sha256_hex, "e164": _e164}


def shaper(steps):
    def shape(value: str) -> str:
        for step in steps:
            value = STEPS[step](value)
        return value

    return shape


def list_key_type(connection_settings: dict) -> str:
    value = connection_settings.get("upload_key_type") or "CONTACT_INFO"
    return value if value in KEY_TYPES else "CONTACT_INFO"
