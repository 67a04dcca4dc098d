"""Every partner, one line each: adding a partner is its folder, its test file, its docs page and one line here.

A partner's slug and name are read from its class, so nothing else keeps a copy of them: the output's kind, the
admin's and the API's partner choices and the parametrized tests are all derived from this list.
"""

from functools import cache
from importlib import import_module

from outputs.partners.base import Partner

PARTNERS = (
    "outputs.partners.mailchimp.adapter.Mailchimp",
    "outputs.partners.braze.adapter.Braze",
    "outputs.partners.xandr.adapter.Xandr",
    "outputs.partners.facebook.adapter.FacebookCustomAudiences",
    "outputs.partners.google_ads.adapter.GoogleAdsCustomerMatch",
    "outputs.partners.webhook.adapter.Webhook",
    "outputs.partners.klaviyo.adapter.Klaviyo",
)


@cache
def _by_slug() -> dict[str, Partner]:
    found = {}
    for dotted in PARTNERS:
        module, _, name = dotted.rpartition(".")
        partner = getattr(import_module(module), name)()
        found[partner.slug] = partner
    return found


def slugs() -> list[str]:
    return list(_by_slug())


def get(slug: str) -> Partner:
    try:
        return _by_slug()[slug]
    except (KeyError, TypeError):
        raise KeyError(unknown(slug)) from None


def all_partners() -> list[Partner]:
    return list(_by_slug().values())


def choices() -> list[tuple[str, str]]:
    """(slug, name) of every partner, for the admin's and the API's choices."""
    return [(p.slug, p.name) for p in all_partners()]


def label(slug: str) -> str:
    """The partner's name, or the slug itself for a kind no partner has (any more)."""
    partner = _by_slug().get(slug)
    return partner.name if partner else slug


def unknown(slug) -> str:
    return f"unknown partner '{slug}'; expected one of {', '.join(slugs())}"


def validate_kind(value) -> None:
    """The output's kind names a partner of this list (a model validator: a new partner needs no migration)."""
    from django.core.exceptions import ValidationError

    if value not in _by_slug():
        raise ValidationError(unknown(value), code="unknown_partner")
