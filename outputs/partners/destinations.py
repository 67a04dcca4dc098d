"""Which hosts a partner's credentials and member data may go to: the ones its real API lives on.

Each partner declares its hosts (`Partner.hosts`). A base URL override elsewhere (the partner sandbox, a
staging copy) is accepted only where ALLOW_BASE_URL_OVERRIDE is on, which follows DEBUG: whoever can point
an output somewhere else would receive its API key or password there. The rule holds twice: when an output
is saved (`base_url_refusal`, `outputs.services`) and for every request (`outputs.partners.http.call` asks
`current_refusal`), for the partner whose method is running (`working_for`, set by the Partner base), so an
override stored before the rule, or an address a partner's answer names, never carries credentials away.

Who may change a destination at all is another rule: outputs.permissions.
"""

from __future__ import annotations

import contextlib
import contextvars
from urllib.parse import urlsplit

from django.conf import settings
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

_partner: contextvars.ContextVar = contextvars.ContextVar("partner", default=None)


def overrides_allowed() -> bool:
    return bool(getattr(settings, "ALLOW_BASE_URL_OVERRIDE", False))


def declares(partner, host: str) -> bool:
    """Whether `host` is one `partner` declares; "*.example.com" stands for any name under example.com."""
    host = (host or "").rstrip(".").lower()
    for pattern in partner.hosts:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def listed(partner) -> str:
    """The declared hosts as a person reads them; a long list is cut ("… and 9 more")."""
    hosts = list(partner.hosts)
    if len(hosts) <= 3:
        return ", ".join(hosts)
    return f"{', '.join(hosts[:2])} and {len(hosts) - 2} more"


def refusal(partner, url: str) -> str:
    """Why `partner`'s requests may not go to `url` in this deployment (one sentence), or "" when they may."""
    if overrides_allowed() or not partner.hosts:  # no host of its own: the destination setting is the place
        return ""
    host = _host(url)
    if declares(partner, host):
        return ""
    return (
        f"{partner.name} credentials are sent only to {partner.name}'s own hosts ({listed(partner)}), not to "
        f"{host or 'this URL'}: base URL overrides are off in this deployment (ALLOW_BASE_URL_OVERRIDE)."
    )


def base_url_refusal(partner, url: str) -> str:
    """Why an output of `partner` may not be saved with this base URL override, or ""."""
    if not url or overrides_allowed():
        return ""
    if not partner.hosts:
        return f"{partner.name} sends to the URL in its settings: leave the base URL empty."
    return refusal(partner, url)


@contextlib.contextmanager
def working_for(partner):
    """Requests made inside are `partner`'s: `current_refusal` checks them against its hosts."""
    token = _partner.set(partner)
    try:
        yield
    finally:
        _partner.reset(token)


def current_refusal(url: str) -> str:
    partner = _partner.get()
    return refusal(partner, url) if partner is not None else ""


def _host(url: str) -> str:
    # The parser the HTTP client uses (requests prepares every URL with urllib3's), so the host checked is
    # the host connected to.
    try:
        return (parse_url(url).host or "").strip("[]")
    except LocationParseError:
        return ""


def shown(url: str) -> str:
    """A destination as a history may name it: scheme, host, port and path. A query string or a user name
    may carry a receiver's token, so neither is kept."""
    if not url:
        return ""
    parts = urlsplit(url)
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname or ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
