"""Links from one admin page to another, shown as links only to those who may open the other page.

The admin's read-only fields and display methods are handed an object, never the request, so on their own
they would link a Viewer to pages that answer 403 (a delivery's connection, an audit entry's user).
`CurrentRequest` keeps the request while it is served; `link` and `may_open` ask the other page's
ModelAdmin, the one place that decides who may open it.
"""

from contextvars import ContextVar

from django.contrib import admin
from django.contrib.admin.utils import quote
from django.urls import reverse
from django.utils.html import format_html

_request = ContextVar("admin_request", default=None)


class CurrentRequest:
    """Middleware: the request being served, for `may_open`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request.set(request)
        try:
            return self.get_response(request)
        finally:
            _request.reset(token)


def may_open(model, obj=None) -> bool:
    """Whether the user being served may open the model's list (or the object's page) in the admin."""
    request = _request.get()
    model_admin = admin.site._registry.get(model)
    return bool(request and model_admin and model_admin.has_view_or_change_permission(request, obj))


def change_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[quote(obj.pk)])


def link(obj, text=None, url: str = ""):
    """The object's name (or `text`) linking to its page (or `url`), as plain text to those who may not open it."""
    text = str(obj) if text is None else text
    if not may_open(type(obj), obj):
        return format_html("{}", text)
    return format_html('<a href="{}">{}</a>', url or change_url(obj), text)


def readonly_foreign_key_link(self, remote_field, remote_obj):
    """AdminReadonlyField.get_admin_url, linking only for those who may open the related object."""
    if not may_open(remote_field.model, remote_obj):
        return str(remote_obj)
    return _django_readonly_link(self, remote_field, remote_obj)


_django_readonly_link = None


def install():
    """Make every read-only foreign key on every admin page link only for those who may follow it."""
    global _django_readonly_link
    from django.contrib.admin import helpers

    if _django_readonly_link is None:
        _django_readonly_link = helpers.AdminReadonlyField.get_admin_url
        helpers.AdminReadonlyField.get_admin_url = readonly_foreign_key_link
