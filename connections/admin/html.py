"""Small pieces of HTML the connection pages share: the status word, the verification badge, tables.

A piece of one tag stays a `format_html` call here; anything larger is a template under
templates/admin/connections/, rendered with `render`.
"""

from django.template.loader import render_to_string
from django.utils.html import format_html

from connections.models import Connection
from staff import dates

Status = Connection.Status

STATUS_STYLE = {
    Status.ACTIVE: "color: var(--message-success-fg, #1f6e2e)",
    Status.PAUSED: "color: var(--body-quiet-color, #666); font-style: italic",
    Status.FAULTED: "color: var(--error-fg, #ba2121); font-weight: bold",
    Status.DISCONNECTING: "color: var(--body-quiet-color, #666); font-style: italic",
}


def status_html(conn: Connection):
    """The status word; its reason (why it is paused or faulted) shows on hover."""
    label = "Disconnecting" if conn.status == Status.DISCONNECTING else conn.get_status_display()
    return format_html('<span style="{}" title="{}">{}</span>', STATUS_STYLE[conn.status], conn.status_reason, label)


# Verification status as a badge: ok green, warning amber, failing red, unverified grey.
BADGE = {
    "ok": ("#1f7a34", "#fff"),
    "warning": ("#f0b400", "#2b2000"),
    "failing": ("#ba2121", "#fff"),
    "unverified": ("#7a7a7a", "#fff"),
    "checking": ("#417690", "#fff"),
}


def badge(status: str, text: str = "", title: str = ""):
    background, colour = BADGE[status]
    return format_html(
        '<span class="relay-badge" style="background: {}; color: {}; padding: 1px 8px; border-radius: 9px; '
        'font-weight: 600; font-size: 0.75rem; white-space: nowrap" title="{}">{}</span>',
        background,
        colour,
        title,
        text or status,
    )


def ago(at) -> str:
    return dates.ago(at, empty="at an unknown time")


def render(template: str, **context):
    """A template of templates/admin/connections/ as safe HTML for a read-only field."""
    return render_to_string(f"admin/connections/{template}", context)


def table(headers, rows, empty: str = "", extra_class: str = ""):
    """A table of already escaped or safe cells; `empty` is said instead when there are no rows."""
    return render("includes/table.html", headers=headers, rows=rows, empty=empty, extra_class=extra_class)
