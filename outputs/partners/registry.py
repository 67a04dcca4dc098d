"""Every partner, keyed by slug. Adding a partner: one module, one test file, one line here."""

from functools import cache
from importlib import import_module

from outputs.partners.base import Partner

PARTNERS = {
    "mailchimp": "outputs.partners.mailchimp.adapter.Mailchimp",
    "braze": "outputs.partners.braze.adapter.Braze",
    "xandr": "outputs.partners.xandr.adapter.Xandr",
    "facebook": "outputs.partners.facebook.adapter.FacebookCustomAudiences",
    "webhook": "outputs.partners.webhook.adapter.Webhook",
}

LABELS = {
    "mailchimp": "Mailchimp",
    "braze": "Braze",
    "xandr": "AppNexus / Xandr",
    "facebook": "Facebook Custom Audiences",
    "webhook": "Webhook",
}

CHOICES = list(LABELS.items())


@cache
def get(slug: str) -> Partner:
    try:
        dotted = PARTNERS[slug]
    except KeyError:
        raise KeyError(f"unknown partner '{slug}'; expected one of {', '.join(PARTNERS)}") from None
    module, _, name = dotted.rpartition(".")
    return getattr(import_module(module), name)()


def all_partners() -> list[Partner]:
    return [get(slug) for slug in PARTNERS]
