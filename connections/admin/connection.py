"""The connection list and pages: the list's columns, the two-step add, the change page and the operations."""

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from audiences.permissions import HIDDEN, can_see_identities
from connections import last_problem, reverify, services, timing
from connections.admin.change_page import ChangePageParts
from connections.admin.filters import HasErrorFilter, PartnerFilter
from connections.admin.forms import PREFIX, form_for
from connections.admin.html import ago, badge, status_html
from connections.admin.operations import OPERATIONS, VERIFY_PERMISSION, operation_action
from connections.models import Connection, Delivery, OutboxMessage
from connections.queries import pending_of, states_of, with_pending
from identities import plural_phrase
from outputs.models import Output
from staff import audit, cells, dates, links

Status = Connection.Status
VERIFY_MESSAGE_LEVEL = {"ok": messages.SUCCESS, "warning": messages.WARNING, "failing": messages.ERROR}


@admin.register(Connection)
class ConnectionAdmin(ChangePageParts, admin.ModelAdmin):
    list_display = [
        "connection", "status_label", "pending", "accepted", "rejected", "failed", "last_delivery", "error",
    ]  # fmt: skip
    # From 1280 px up every column is on screen: the audience and output share a column, the status carries the
    # verification badge, and "sent" (accepted + rejected + failed, and what is on its way) is on the page.
    list_display_links = ["connection"]
    list_select_related = ["audience", "output"]
    list_filter = ["status", "verification_status", PartnerFilter, HasErrorFilter]
    search_fields = ["audience__name", "output__name"]
    search_help_text = "An audience or output name."
    actions = ["verify_selected", "sync_selected", "pause_selected", "resume_selected", "retry_failed_selected",
               "disconnect_remove_selected", "disconnect_keep_selected"]  # fmt: skip
    change_form_template = "admin/connections/connection/change_form.html"

    # -- list ---------------------------------------------------------------------------------------------

    def get_queryset(self, request):
        return with_pending(super().get_queryset(request).select_related("audience", "variant", "output"))

    @admin.display(description="connection", ordering="audience__name")
    def connection(self, conn):
        return format_html("{} → {}<br><small>{}</small>", conn.source_name, conn.output.name, conn.output.partner.name)

    @admin.display(description="status", ordering="status")
    def status_label(self, conn):
        """What it does, and under it how its last verification went: one column, so the list fits 1280 px."""
        return format_html("{}<br>{}", status_html(conn), self.verification(conn))

    def verification(self, conn):
        """The badge; hovering shows what needs attention, or when it was verified."""
        status = conn.verification_status
        if status == Connection.Verification.UNVERIFIED:
            return badge(status, "unverified", "Never verified.")
        if reverify.is_stale(conn):
            return badge(status, "re-checking…", reverify.waiting_sentence(conn))
        attention = [f"{c['name']}: {c['detail']}" for c in conn.verification_checks if c["status"] != "ok"]
        return badge(status, status, " ".join(attention) or f"Verified {ago(conn.verified_at)}.")

    @admin.display(description="pending", ordering="pending")
    def pending(self, conn):
        return f"{pending_of(conn):,}"

    @admin.display(description="accepted", ordering="accepted_count")
    def accepted(self, conn):
        return f"{conn.accepted_count:,}"

    @admin.display(description="rejected", ordering="rejected_count")
    def rejected(self, conn):
        return f"{conn.rejected_count:,}"

    @admin.display(description="failed", ordering="failed_count")
    def failed(self, conn):
        return f"{conn.failed_count:,}"

    @admin.display(description="last delivery", ordering="last_delivery_at")
    def last_delivery(self, conn):
        return dates.ago_html(conn.last_delivery_at)

    @admin.display(description="last error")
    def error(self, conn):
        problem = last_problem.of(conn)
        if problem is None:
            return ""
        if problem.current:
            return cells.clip(problem.text, 14)
        return format_html('<span class="relay-quiet-text" title="{}">resolved</span>', problem.sentence())

    # -- add and change -----------------------------------------------------------------------------------

    def _output(self, request, obj):
        if obj is not None:
            return obj.output
        raw = request.GET.get("output") or request.POST.get("output")
        return Output.objects.filter(pk=raw).first() if raw and str(raw).isdigit() else None

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = form_for(self._output(request, obj))
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        partner = self._output(request, obj).partner
        settings = [PREFIX + s.name for s in partner.connection_settings]
        delivery = ["delivery_mode", "interval_minutes", "interval_messages"]
        if obj is None:
            return [
                (None, {"fields": ["output_name", "audience", "variant"]}),
                (f"{partner.name} settings", {"fields": settings}),
                ("Delivery", {"fields": delivery, "classes": ["collapse"]}),
            ]
        if not self.has_change_permission(request, obj):
            settings = ["settings_values"]  # view only: the values as stored, not empty form fields
        ops = ["operations"] if getattr(obj, "operations_allowed", None) else []
        uploads = ["last_upload_at", "next_upload"] if obj.delivery_mode == Connection.Mode.INTERVAL else []
        return [
            (None, {"fields": ["audience_link", "output_link", "status_detail", *ops]}),
            ("Verification", {"fields": ["verification_detail", "size_funnel"]}),
            ("Counters", {"fields": ["counters", "last_delivery_at", *uploads, "last_error_full"]}),
            (f"{partner.name} settings", {"fields": settings}),
            ("Delivery", {"fields": delivery}),
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ["output_name"]
        return ["audience_link", "output_link", "status_detail", "operations", "verification_detail", "size_funnel",
                "counters", "last_delivery_at", "last_upload_at", "next_upload", "last_error_full",
                "settings_values"]  # fmt: skip

    def has_change_permission(self, request, obj=None):
        # A connection being disconnected only sends its removals; nothing about it can change any more.
        if obj is not None and obj.status == Status.DISCONNECTING:
            return False
        return super().has_change_permission(request, obj)

    def add_view(self, request, form_url="", extra_context=None):
        # Before the first step too: its buttons lead only to the second, which would refuse.
        if not self.has_add_permission(request):
            raise PermissionDenied
        output = self._output(request, None)
        if output is None:
            outputs = Output.objects.annotate(n_connections=Count("connections")).order_by("name")
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Add connection: choose the output",
                "outputs": [(o, o.partner, plural_phrase(o.partner.identity_types)) for o in outputs],
                "audience": request.GET.get("audience", ""),
                "can_add_output": request.user.has_perm("outputs.add_output"),
            }
            return render(request, "admin/connections/connection/choose_output.html", context)
        context = {**(extra_context or {}), "chosen_output": output, "show_save_and_add_another": False}
        # Posted to the bare add URL (the output travels in a hidden field), as outputs do.
        return super().add_view(request, form_url or reverse("admin:connections_connection_add"), context)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.pop("output", None)
        return initial

    def change_view(self, request, object_id, form_url="", extra_context=None):
        conn = self.get_object(request, object_id)
        if conn is not None:
            states = states_of(conn)
            sees = can_see_identities(request.user)
            recent = list(conn.messages.order_by("-id")[:50]) if sees else None
            for m in recent or []:
                m.next_text = timing.message_next(conn, m, pending_of(conn))
            extra_context = {
                **(extra_context or {}),
                "deliveries": conn.deliveries.order_by("-started_at", "-id")[:20],
                # One row per identity value: without the permission the section says why it is missing.
                "recent_messages": recent,
                "identities_hidden": None if sees else HIDDEN,
                "may_open_messages": links.may_open(OutboxMessage),
                "may_open_deliveries": links.may_open(Delivery),
                "states": [(label, states.get(value, 0), value) for value, label in OutboxMessage.State.choices],
                "messages_url": reverse("admin:connections_outboxmessage_changelist") + f"?connection={conn.pk}",
                "deliveries_url": reverse("admin:connections_delivery_changelist") + f"?connection={conn.pk}",
                "verify_url": reverse("admin:connections_connection_verify", args=[conn.pk])
                if self.may(request, "verify", conn)
                else None,
                "show_save_and_add_another": False,
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        mode, minutes, messages_ = form.delivery_values()
        if not change:
            conn = services.connect(
                obj.audience, form.output, form.settings_values(), mode, minutes, messages_, variant=obj.variant
            )
            for field in Connection._meta.concrete_fields:
                setattr(obj, field.attname, getattr(conn, field.attname))
            obj._state.adding = False
            self.message_user(request, services.connected(conn), messages.SUCCESS)
            return
        conn = Connection.objects.get(pk=obj.pk)
        queued = services.update_connection(conn, form.settings_values(), mode, minutes, messages_)
        if queued or conn.status in (Status.PAUSED, Status.FAULTED):
            level = messages.INFO if conn.status == Status.ACTIVE else messages.WARNING
            self.message_user(request, services.updated(conn, queued), level)

    def response_add(self, request, obj, post_url_continue=None):
        # The change page shows the backfill going out; Django's own "added" message would repeat ours.
        return HttpResponseRedirect(reverse("admin:connections_connection_change", args=[obj.pk]))

    # -- operations ---------------------------------------------------------------------------------------

    def may(self, request, op: str, conn=None) -> bool:
        """Whether this user may run the operation (op: a key of OPERATIONS, or "verify") on the connection.

        The permission is the model's, not the object's: a connection being disconnected cannot be changed,
        yet its removals can still be sent now (whether an operation fits a state is `Operation.applies`)."""
        permission = VERIFY_PERMISSION if op == "verify" else OPERATIONS[op].permission
        return self.has_view_permission(request, conn) and getattr(self, f"has_{permission}_permission")(request)

    def get_object(self, request, object_id, from_field=None):
        # The page's read-only parts see only the object: it carries what this user may run on it.
        conn = super().get_object(request, object_id, from_field)
        if conn is not None:
            conn.operations_allowed = [op for op in OPERATIONS if self.may(request, op, conn)]
        return conn

    def get_urls(self):
        view = self.admin_site.admin_view(self.operate_view)
        verify = self.admin_site.admin_view(require_POST(self.verify_view))
        return [
            path("<int:pk>/operate/<slug:op>/", view, name="connections_connection_operate"),
            path("<int:pk>/verify/", verify, name="connections_connection_verify"),
            *super().get_urls(),
        ]

    def verify_view(self, request, pk):
        """Verifying changes nothing at the partner, so the button posts here directly, without a confirmation."""
        conn = get_object_or_404(Connection.objects.select_related("audience", "variant", "output"), pk=pk)
        if not self.may(request, "verify", conn):
            raise PermissionDenied
        self._verify(request, [conn])
        return HttpResponseRedirect(reverse("admin:connections_connection_change", args=[pk]))

    def _verify(self, request, conns):
        for conn in conns:
            sentence = services.verify(conn)
            audit.record(request.user, conn, sentence)
            self.message_user(request, sentence, VERIFY_MESSAGE_LEVEL[conn.verification_status])

    def operate_view(self, request, pk, op):
        conn = get_object_or_404(
            with_pending(Connection.objects.select_related("audience", "variant", "output")), pk=pk
        )
        if op not in OPERATIONS or not self.may(request, op, conn):
            raise PermissionDenied
        if request.method == "POST":
            self._perform(request, op, [conn])
            if Connection.objects.filter(pk=pk).exists():
                return HttpResponseRedirect(reverse("admin:connections_connection_change", args=[pk]))
            return HttpResponseRedirect(reverse("admin:connections_connection_changelist"))
        return self._confirm(request, op, [conn], action=None)

    def _perform(self, request, op, conns):
        for conn in conns:
            pk = conn.pk
            try:
                sentence = OPERATIONS[op].run(conn)
                audit.record(
                    request.user, conn, sentence, "delete" if op == "disconnect-keep" else "change", object_id=pk
                )
                self.message_user(request, sentence, messages.SUCCESS)
            except services.Refused as exc:
                self.message_user(request, str(exc), messages.WARNING)

    def _confirm(self, request, op, conns, action):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"{OPERATIONS[op].title}: are you sure?",
            "operation": OPERATIONS[op],
            "connections": conns,
            "action": action,
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "cancel_url": reverse("admin:connections_connection_change", args=[conns[0].pk])
            if action is None
            else reverse("admin:connections_connection_changelist"),
        }
        return render(request, "admin/connections/connection/confirm_operation.html", context)

    def _bulk(self, request, queryset, op, action):
        conns = list(queryset)
        if request.POST.get("post") == "yes":
            self._perform(request, op, conns)
            return None
        return self._confirm(request, op, conns, action)

    @admin.action(description="Verify", permissions=[VERIFY_PERMISSION])
    def verify_selected(self, request, queryset):
        self._verify(request, queryset.select_related("audience", "variant", "output"))

    @operation_action("sync")
    def sync_selected(self, request, queryset):
        return self._bulk(request, queryset, "sync", "sync_selected")

    @operation_action("pause")
    def pause_selected(self, request, queryset):
        return self._bulk(request, queryset, "pause", "pause_selected")

    @operation_action("resume")
    def resume_selected(self, request, queryset):
        return self._bulk(request, queryset, "resume", "resume_selected")

    @operation_action("retry-failed", "Retry failed messages")
    def retry_failed_selected(self, request, queryset):
        return self._bulk(request, queryset, "retry-failed", "retry_failed_selected")

    @operation_action("disconnect-remove")
    def disconnect_remove_selected(self, request, queryset):
        return self._bulk(request, queryset, "disconnect-remove", "disconnect_remove_selected")

    @operation_action("disconnect-keep")
    def disconnect_keep_selected(self, request, queryset):
        return self._bulk(request, queryset, "disconnect-keep", "disconnect_keep_selected")

    def get_actions(self, request):
        # Deleting a connection is a choice about the members at the partner: the two disconnect actions make it.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def delete_view(self, request, object_id, extra_context=None):
        # Deleting a connection is disconnecting it, which needs an answer about the members at the partner.
        conn = get_object_or_404(
            with_pending(Connection.objects.select_related("audience", "variant", "output")), pk=object_id
        )
        if not self.has_delete_permission(request, conn):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Disconnect: what happens to the members at the partner?",
            "conn": conn,
            "choices": [
                (op, OPERATIONS[op])
                for op in ("disconnect-remove", "disconnect-keep")
                if OPERATIONS[op].applies(conn) and self.may(request, op, conn)
            ],
        }
        return render(request, "admin/connections/connection/disconnect.html", context)
