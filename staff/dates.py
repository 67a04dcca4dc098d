"""How the admin writes a moment: one format (DATETIME_FORMAT, config/formats) in the server's time zone.

Every page that shows a time goes through here or through the `when` template filter, never through
`str(datetime)`, which reads "2026-12-03 04:01:03.411652+00:00".
"""

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.timesince import timesince


def when(moment, empty: str = "–") -> str:
    """ "3 Dec 2026, 04:01:03", or `empty` for no moment."""
    if moment is None:
        return empty
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def ago(moment, empty: str = "never") -> str:
    """ "just now", "5 minutes ago", or `empty` for no moment."""
    if moment is None:
        return empty
    text = timesince(moment, depth=1)
    return "just now" if text.startswith("0\xa0") else f"{text} ago"


def ago_html(moment, empty: str = "never"):
    """How long ago, with the moment itself on hover."""
    if moment is None:
        return empty
    return format_html('<span title="{}" style="white-space: nowrap">{}</span>', when(moment), ago(moment))
