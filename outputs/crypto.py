"""Secrets at rest: Fernet tokens under keys from the environment.

MultiFernet encrypts with the first key and decrypts with any, which is the
rotation path: put a new key first in SECRETS_ENCRYPTION_KEYS, run
`python manage.py rotate_secrets`, then drop the old key.
"""

import base64
import hashlib
import json
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class SecretsUnreadable(Exception):
    """No configured key decrypts the stored secrets: a configuration problem, shown as this sentence everywhere."""


UNREADABLE = (
    "The stored secrets cannot be decrypted with SECRETS_ENCRYPTION_KEYS: none of its keys is the one they were "
    "encrypted with. Put that key back in SECRETS_ENCRYPTION_KEYS (the newest key first, older ones after it) and "
    "restart; to retire it, run python manage.py rotate_secrets before removing it."
)


@cache
def _fernet() -> MultiFernet:
    keys = list(settings.SECRETS_ENCRYPTION_KEYS)
    if not keys:
        # Development only (settings refuse to start without keys when DEBUG is off).
        digest = hashlib.sha256(("audience-relay-secrets:" + settings.SECRET_KEY).encode()).digest()
        keys = [base64.urlsafe_b64encode(digest).decode()]
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def reset_keys() -> None:
    """Forget the cached keys (after the setting changed, e.g. in a rotation or a test)."""
    _fernet.cache_clear()


def encrypt(values: dict) -> str:
    if not values:
        return ""
    return _fernet().encrypt(json.dumps(values, sort_keys=True).encode()).decode()


def decrypt(token: str) -> dict:
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode()))
    except InvalidToken:
        raise SecretsUnreadable(UNREADABLE) from None


def rotate(token: str) -> str:
    """Re-encrypt under the first key."""
    return _fernet().rotate(token.encode()).decode() if token else token
