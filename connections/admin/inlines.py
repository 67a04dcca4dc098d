"""What connections shows on an audience's and an output's page: their connections, through the seams the
audience and output admins declare (registered in ConnectionsConfig.ready())."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from connections.admin.html import status_html
from connections.models import Connection
from connections.queries import pending_of, with_pending


class ConnectionInline(admin.TabularInline):
    model = Connection
    extra = 0
    can_delete = False
    fields = ["other", "status_label", "pending", "sent", "accepted", "rejected", "failed", "last_delivery_at"]
    readonly_fields = fields
    verbose_name_plural = "connections"
    other_side = ""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return with_pending(super().get_queryset(request).select_related("audience", "variant", "output"))

    @admin.display(description="status")
    def status_label(self, conn):
        return status_html(conn)

    @admin.display(description="pending")
    def pending(self, conn):
        return f"{pending_of(conn):,}"

    @admin.display(description="sent")
    def sent(self, conn):
        return f"{conn.sent_count:,}"

    @admin.display(description="accepted")
    def accepted(self, conn):
        return f"{conn.accepted_count:,}"

    @admin.display(description="rejected")
    def rejected(self, conn):
        return f"{conn.rejected_count:,}"

    @admin.display(description="failed")
    def failed(self, conn):
        return f"{conn.failed_count:,}"


def _link(conn, text):
    return format_html('<a href="{}">{}</a>', reverse("admin:connections_connection_change", args=[conn.pk]), text)


class AudienceConnectionInline(ConnectionInline):
    @admin.display(description="output")
    def other(self, conn):
        return _link(conn, f"{conn.output.name} ({conn.output.partner.name})")


class OutputConnectionInline(ConnectionInline):
    @admin.display(description="audience")
    def other(self, conn):
        return _link(conn, conn.source_name)


def register() -> None:
    from audiences.admin import AudienceAdmin
    from outputs.admin import OutputAdmin

    for model_admin, inline in ((AudienceAdmin, AudienceConnectionInline), (OutputAdmin, OutputConnectionInline)):
        model_admin.seams.add_inline(inline)
        # Connection protects both ends: their delete pages say which connections to disconnect first.
        model_admin.seams.explain_protected_deletes(
            "admin/connections/delete_confirmation.html", "admin/connections/delete_selected_confirmation.html"
        )
