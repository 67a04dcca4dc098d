from django import template
from django.urls import reverse

from audiences.permissions import can_see_identities
from connections import dashboard

register = template.Library()


@register.inclusion_tag("admin/dashboard/dashboard.html", takes_context=True)
def relay_dashboard(context):
    """The dashboard above the app list, for staff who may see connections."""
    request = context["request"]
    user = request.user
    if not user.has_perm("connections.view_connection"):
        return {"dashboard": None}
    return {
        "dashboard": dashboard.build(user),
        "can_trace": user.has_perm("audiences.view_profile") and can_see_identities(user),
        "trace_url": reverse("relay-trace"),
        "connections_url": reverse("admin:connections_connection_changelist"),
        "add_connection_url": reverse("admin:connections_connection_add"),
        "can_add_connection": user.has_perm("connections.add_connection"),
        "audiences_url": reverse("admin:audiences_audience_changelist"),
    }
