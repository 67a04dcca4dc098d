"""Which destinations partner requests may go to: public http(s) addresses only (SSRF protection).

A webhook URL or a base URL is typed by a person, and whatever it names, the server will POST to it, from
inside our network. So an address on loopback, a private or link-local network, multicast, a reserved range
or a cloud metadata service is refused, for every address a host name resolves to, and for IPv6 forms that
embed such an IPv4 address (::ffff:10.0.0.1, 6to4, NAT64). `refusal` checks a URL when it is saved, and
`form_refusal` (how it is written) again before every request; `checked_addresses` is what the HTTP layer
connects to, so a DNS answer that changes between the check and the connection (DNS rebinding) cannot take
a request somewhere private.

ALLOW_PRIVATE_DESTINATIONS turns the address checks off (development, tests and the demo, whose partner
sandbox listens on 127.0.0.1); only how the URL is written is checked then.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

SCHEMES = ("http", "https")
PUBLIC_ONLY = "Audience Relay only sends to public addresses."
# Names of metadata services that are not (only) reached through 169.254.169.254.
METADATA_HOSTS = {
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
}
METADATA_ADDRESSES = {
    ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, OpenStack, DigitalOcean …
    ipaddress.ip_address("169.254.170.2"),  # AWS ECS task metadata
    ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
    ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
}
SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598): inside someone's network
# Not public, but Python 3.11's ipaddress calls them global: IETF protocol assignments (only 192.0.0.9 and
# .10 are anycast services, not worth a partner URL), IPv6 site-local (deprecated, still routed inside old
# networks) and the IPv6 documentation range of RFC 9637.
NOT_GLOBAL = [
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("fec0::/10"),
    ipaddress.ip_network("3fff::/20"),
]
NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the last 32 bits are an IPv4 address
V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d form


class Refused(Exception):
    """A destination we do not send to; the message is one sentence for people."""


def allowed_private() -> bool:
    return bool(getattr(settings, "ALLOW_PRIVATE_DESTINATIONS", False))


def refusal(url: str) -> str:
    """Why requests may not go to `url` (one sentence), or "" when they may."""
    problem = form_refusal(url)
    if problem or allowed_private():
        return problem
    parts = parse_url(url)
    host, port = parts.host.strip("[]"), parts.port or (443 if parts.scheme == "https" else 80)
    try:
        checked_addresses(host, port)
    except Refused as exc:
        return str(exc)
    except (OSError, UnicodeError):  # UnicodeError: a name IDNA cannot encode (a label over 63 characters)
        return f"The host {host} could not be found; check the spelling of the URL."
    return ""


def form_refusal(url: str) -> str:
    """What is wrong with how `url` is written (one sentence), or "": no name is looked up.

    The host is read with the parser the HTTP client uses (urllib3's, which requests prepares every URL
    with), and a URL that parsers read differently is refused: `http://127.0.0.1\\@1.1.1.1/` is 1.1.1.1 to
    Python's urlsplit but 127.0.0.1 to urllib3, so checking one and connecting with the other would let a
    private address through.
    """
    url = url or ""
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        shown = f"{scheme}://" if scheme else "a URL without a scheme"
        return f"Only http:// and https:// addresses can be used, not {shown}."
    if "\\" in url:
        return "The URL contains a backslash (\\), which programs read in different ways; use / instead."
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "The URL contains a space or a control character; remove it."
    split = urlsplit(url)
    try:
        split.port  # noqa: B018 - reading it is the check: ValueError for a port that is not one
    except ValueError:
        return "The port in this URL is not a number between 0 and 65535."
    try:
        parts = parse_url(url)
    except LocationParseError:  # a name IDNA cannot encode (a label over 63 characters)
        return f"The host {split.hostname} could not be found; check the spelling of the URL."
    if parts.auth is not None or "@" in split.netloc:
        return "Put no user name or password (nothing before an @) in the host part of the URL."
    if not parts.host:
        return "The URL needs a host name."
    return ""


def checked_addresses(host: str, port: int) -> list[tuple]:
    """Resolve `host` once and return getaddrinfo's answers, every one of them checked.

    Raises Refused when any address is not public (a name with one private address among public ones could
    be steered to it), and OSError (socket.gaierror) when the name does not resolve.
    """
    name = host.strip("[]").rstrip(".").lower()
    if name in METADATA_HOSTS:
        raise Refused(f"{host} is a cloud metadata service; {PUBLIC_ONLY}")
    answers = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    for *_, sockaddr in answers:
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])  # drop an IPv6 scope ("fe80::1%eth0")
        problem = describe(address)
        if problem:
            of = "" if address == _literal(name) else f" of {host}"
            raise Refused(f"The address {_shown(address)}{of} {problem}; {PUBLIC_ONLY}")
    if not answers:
        raise socket.gaierror(f"no address for {host}")
    return answers


def describe(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """What makes `address` not public ("is on a private network"), or "" for a public address."""
    if address in METADATA_ADDRESSES:
        return "is a cloud metadata service"
    if address.version == 6:
        embedded = _embedded_v4(address)
        if embedded is not None:
            problem = describe(embedded)
            return f"carries the IPv4 address {embedded}, which {problem}" if problem else ""
    if address.is_unspecified:
        return "is the unspecified address (this machine)"
    if address.is_loopback:
        return "is a loopback address (this machine)"
    if address.is_link_local:
        return "is link-local"
    if address.is_multicast:
        return "is a multicast address"
    if address.version == 4 and address in SHARED:
        return "is in the shared address space of a carrier's network"
    if address.is_reserved:
        return "is in a reserved range"
    if address.is_private or (address.version == 6 and address.is_site_local):
        return "is on a private network"
    if not address.is_global or any(address in net for net in NOT_GLOBAL if net.version == address.version):
        return "is in a reserved range"
    return ""


def _embedded_v4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64 or (address in V4_COMPATIBLE and int(address) > 1):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _shown(address) -> str:
    # Python writes ::ffff:10.0.0.1 as ::ffff:a00:1; people write (and recognise) the first form.
    if address.version == 6 and address.ipv4_mapped is not None:
        return f"::ffff:{address.ipv4_mapped}"
    return str(address)


def _literal(host: str):
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
