from dataclasses import dataclass

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from audiences.admin import AudienceAdmin
from audiences.identity_types import IdentityType, plural_phrase
from audiences.permissions import HIDDEN, IdentityPagesAdmin, can_see_identities
from connections import last_problem, operations, reverify, services, timing
from connections.api.filters import candidate_values, duplicate_of, pending_of, with_pending
from connections.models import Connection, Delivery, OutboxMessage
from outputs import schema
from outputs.admin import OutputAdmin
from outputs.models import Output
from outputs.partners import registry
from staff import audit, cells, dates, links

PREFIX = "setting__"
Status = Connection.Status


# --- forms -----------------------------------------------------------------------------------------------


class ConnectionFormBase(forms.ModelForm):
    """The partner's connection settings are added per output by `form_for`; `services` validates them."""

    output: Output

    class Meta:
        model = Connection
        fields = ["audience", "delivery_mode", "interval_minutes", "interval_messages"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance.pk:
            self.instance.output = self.output
        if "audience" in self.fields:
            self.fields["audience"].help_text = (
                f"Its current members are queued for {self.output.partner.name} when you save (the backfill); "
                f"later membership changes follow."
            )
        if self.instance.pk:
            for name, value in self.instance.settings.items():
                if PREFIX + name in self.fields:
                    self.initial[PREFIX + name] = value
        default = self.output.partner.delivery
        if "delivery_mode" in self.fields:
            self.fields["delivery_mode"] = forms.ChoiceField(
                label="Delivery mode",
                required=False,
                choices=[("", f"{self.output.partner.name}'s default: {default.describe()}"), *Connection.Mode.choices],
                help_text="Interval: messages are queued and uploaded every N minutes or as soon as N are waiting.",
            )
        for name, limit, unit in (("interval_minutes", default.every_minutes, "minutes"),
                                  ("interval_messages", default.every_messages, "messages")):  # fmt: skip
            if name in self.fields and limit:
                partner = self.output.partner.name
                self.fields[name].help_text = f"Interval mode only. At most {limit:,} {unit} ({partner})."

    def settings_values(self) -> dict:
        return {k[len(PREFIX) :]: v for k, v in self.cleaned_data.items() if k.startswith(PREFIX)}

    def delivery_values(self) -> tuple:
        data = self.cleaned_data
        return data.get("delivery_mode") or None, data.get("interval_minutes"), data.get("interval_messages")

    def clean(self):
        data = super().clean()
        existing = Connection.objects.get(pk=self.instance.pk) if self.instance.pk else None
        try:
            cleaned, *_ = services.clean_connection(self.output, self.settings_values(), *self.delivery_values(),
                                                    existing=existing)  # fmt: skip
        except ValidationError as exc:
            for key, problems in exc.message_dict.items():
                field = PREFIX + key.removeprefix("settings.") if key.startswith("settings.") else key
                self.add_error(field if field in self.fields else None, problems)
            return data
        if existing is None and data.get("audience"):
            twin = duplicate_of(data["audience"], self.output, cleaned)
            if twin is not None:
                self.add_error(None, f"{operations.label(twin)} already exists with these settings.")
        return data


def form_for(output: Output):
    partner = output.partner
    fields = {}
    for setting in partner.connection_settings:
        field = schema.form_field(setting)
        field.label = f"{setting.label}{' *' if setting.required else ''}"
        fields[PREFIX + setting.name] = field
    name = f"{partner.name.replace(' ', '')}ConnectionForm"
    return type(name, (ConnectionFormBase,), {**fields, "output": output})


# --- list filters ------------------------------------------------------------------------------------------


class PartnerFilter(admin.SimpleListFilter):
    title = "partner"
    parameter_name = "partner"

    def lookups(self, request, model_admin):
        return registry.CHOICES

    def queryset(self, request, queryset):
        return queryset.filter(output__kind=self.value()) if self.value() else queryset


class HasErrorFilter(admin.SimpleListFilter):
    title = "last error"
    parameter_name = "has_error"

    def lookups(self, request, model_admin):
        return [("yes", "Has a current error"), ("no", "No current error")]

    def queryset(self, request, queryset):
        # An error deliveries have succeeded since is history (connections/last_problem.py), not a current one.
        if self.value() == "yes":
            return queryset.filter(last_problem.current_errors())
        if self.value() == "no":
            return queryset.exclude(last_problem.current_errors())
        return queryset


class IdentityTypeFilter(admin.SimpleListFilter):
    """Every identity type, without a DISTINCT scan of the outbox."""

    title = "identity type"
    parameter_name = "identity_type"

    def lookups(self, request, model_admin):
        return IdentityType.choices

    def queryset(self, request, queryset):
        return queryset.filter(identity_type=self.value()) if self.value() else queryset


class ConnectionListFilter(admin.SimpleListFilter):
    """The connections by name, in one query (the stock related filter would query each one's audience)."""

    title = "connection"
    parameter_name = "connection"

    def lookups(self, request, model_admin):
        return [(c.pk, str(c)) for c in Connection.objects.select_related("audience", "output")]

    def queryset(self, request, queryset):
        return queryset.filter(connection_id=self.value()) if self.value() else queryset


# --- operations: one confirmation page for the buttons and the bulk actions --------------------------------


@dataclass(frozen=True)
class Operation:
    title: str
    button: str
    explain: str  # what will happen, shown before anyone confirms
    # The ModelAdmin permission it needs ("change" or "delete"): the view, the button and the bulk action all
    # read it here, so a button is shown exactly to those the view lets through.
    permission: str = "change"


OPERATIONS = {
    "sync": Operation(
        "Sync now",
        "Yes, send now",
        "The messages waiting for these connections are sent now, even for an interval upload or a message "
        "that is backing off after an error.",
    ),
    "pause": Operation(
        "Pause",
        "Yes, pause",
        "Sending stops. Membership changes keep queueing and go out when you resume.",
    ),
    "resume": Operation(
        "Resume",
        "Yes, resume",
        "Sending starts again after a pause or a fault: the waiting messages go out now.",
    ),
    "retry-failed": Operation(
        "Retry failed",
        "Yes, retry them",
        "Messages that failed (their retry window ran out) are queued again with a new window. Rejected messages "
        "stay rejected: the partner refused them.",
    ),
    "disconnect-remove": Operation(
        "Disconnect (remove members from partner)",
        "Yes, remove the members and disconnect",
        "Every current member of the audience is removed at the partner; the connection is deleted once those "
        "removals are sent. Later membership changes are no longer forwarded.",
        permission="delete",
    ),
    "disconnect-keep": Operation(
        "Disconnect (keep members at partner)",
        "Yes, disconnect and keep the members",
        "The connection is deleted now. The audience's members stay at the partner as they are; later "
        "membership changes are no longer forwarded.",
        permission="delete",
    ),
}
# Verifying changes nothing at the partner, so it has no confirmation page; it needs what the operations need.
VERIFY_PERMISSION = "change"


def operation_action(op: str, description: str = ""):
    """The bulk action of an operation: its title, and the permission the operation declares."""
    return admin.action(description=description or OPERATIONS[op].title, permissions=[OPERATIONS[op].permission])


def _run(op: str, conn: Connection) -> str:
    if op == "sync":
        return operations.sync(conn)
    if op == "pause":
        return operations.pause(conn)
    if op == "resume":
        return operations.resume(conn)
    if op == "retry-failed":
        return operations.retry_failed(conn)[1]
    return operations.disconnect(conn, remove_from_partner=op == "disconnect-remove")[1]


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
VERIFY_MESSAGE_LEVEL = {"ok": messages.SUCCESS, "warning": messages.WARNING, "failing": messages.ERROR}


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


def _ago(at) -> str:
    return dates.ago(at, empty="at an unknown time")


def _table(headers, rows, empty: str, extra_class: str = ""):
    if not rows:
        return format_html("<p>{}</p>", empty)
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join(
        "", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((cell,) for cell in row)),) for row in rows)
    )
    return format_html(
        '<table class="relay-table {}"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', extra_class, head, body
    )


# --- connections -----------------------------------------------------------------------------------------


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
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
        return with_pending(super().get_queryset(request).select_related("audience", "output"))

    @admin.display(description="connection", ordering="audience__name")
    def connection(self, conn):
        return format_html(
            "{} → {}<br><small>{}</small>", conn.audience.name, conn.output.name, conn.output.partner.name
        )

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
        return badge(status, status, " ".join(attention) or f"Verified {_ago(conn.verified_at)}.")

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
                (None, {"fields": ["output_name", "audience"]}),
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
            states = dict(conn.messages.order_by().values_list("state").annotate(n=Count("pk")))
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
            conn = services.connect(obj.audience, form.output, form.settings_values(), mode, minutes, messages_)
            for field in Connection._meta.concrete_fields:
                setattr(obj, field.attname, getattr(conn, field.attname))
            obj._state.adding = False
            self.message_user(request, operations.connected(conn), messages.SUCCESS)
            return
        conn = Connection.objects.get(pk=obj.pk)
        queued = services.update_connection(conn, form.settings_values(), mode, minutes, messages_)
        if queued or conn.status in (Status.PAUSED, Status.FAULTED):
            level = messages.INFO if conn.status == Status.ACTIVE else messages.WARNING
            self.message_user(request, operations.updated(conn, queued), level)

    def response_add(self, request, obj, post_url_continue=None):
        # The change page shows the backfill going out; Django's own "added" message would repeat ours.
        return HttpResponseRedirect(reverse("admin:connections_connection_change", args=[obj.pk]))

    # -- read-only parts of the change page ---------------------------------------------------------------

    @admin.display(description="output")
    def output_name(self, conn):
        another = reverse("admin:connections_connection_add")
        return format_html('{} ({}) <a href="{}">choose another output</a>', conn.output.name,
                           conn.output.partner.name, another)  # fmt: skip

    @admin.display(description="audience")
    def audience_link(self, conn):
        return format_html("{} ({} members)", links.link(conn.audience), f"{conn.audience.size:,}")

    @admin.display(description="output")
    def output_link(self, conn):
        return format_html("{} ({})", links.link(conn.output), conn.output.partner.name)

    @admin.display(description="status")
    def status_detail(self, conn):
        if not conn.status_reason:
            return status_html(conn)
        return format_html("{} — {}", status_html(conn), conn.status_reason)

    @admin.display(description="settings")
    def settings_values(self, conn):
        rows = [(s.label, conn.settings.get(s.name) or "—") for s in conn.partner.connection_settings]
        return format_html(
            "<table><tbody>{}</tbody></table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
        )

    @admin.display(description="operations")
    def operations(self, conn):
        links = [(reverse("admin:connections_connection_operate", args=[conn.pk, op]), OPERATIONS[op].title)
                 for op in getattr(conn, "operations_allowed", ()) if self._applies(op, conn)]  # fmt: skip
        return format_html_join(" ", '<a class="button" href="{}">{}</a>', links)

    def may(self, request, op: str, conn=None) -> bool:
        """Whether this user may run the operation (op: a key of OPERATIONS, or "verify") on the connection.

        The permission is the model's, not the object's: a connection being disconnected cannot be changed,
        yet its removals can still be sent now (whether an operation fits a state is `_applies`)."""
        permission = VERIFY_PERMISSION if op == "verify" else OPERATIONS[op].permission
        return self.has_view_permission(request, conn) and getattr(self, f"has_{permission}_permission")(request)

    def get_object(self, request, object_id, from_field=None):
        # The page's read-only parts see only the object: it carries what this user may run on it.
        conn = super().get_object(request, object_id, from_field)
        if conn is not None:
            conn.operations_allowed = [op for op in OPERATIONS if self.may(request, op, conn)]
        return conn

    @staticmethod
    def _applies(op, conn) -> bool:
        return {
            "sync": conn.status in (Status.ACTIVE, Status.DISCONNECTING),
            "pause": conn.status == Status.ACTIVE,
            "resume": conn.status in (Status.PAUSED, Status.FAULTED),
            "disconnect-remove": conn.status != Status.DISCONNECTING,
        }.get(op, True)

    @admin.display(description="status")
    def verification_detail(self, conn):
        # The "Verify now" button is among the page's object tools, outside the change form (see the template).
        status = conn.verification_status
        if status == Connection.Verification.UNVERIFIED:
            return format_html("<p>{} Not verified yet.</p>", badge(status))
        if reverify.is_stale(conn):
            # The last verdict judged settings or a state that changed since: it is not shown as the current one.
            return format_html("<p>{} {}</p>", badge(status, "re-checking…"), reverify.waiting_sentence(conn))
        when = dates.when(conn.verified_at)
        rows = [
            [format_html("<strong>{}</strong>", c["name"]), badge(c["status"]), c["detail"], c["hint"] or "–"]
            for c in conn.verification_checks
        ]
        return format_html(
            "<p>{} Verified {} ({}).</p>{}",
            badge(status),
            _ago(conn.verified_at),
            when,
            _table(["check", "status", "what it found", "what to do"], rows, "No checks ran.", "relay-checks"),
        )

    @admin.display(description="size funnel")
    def size_funnel(self, conn):
        """Why the partner holds fewer than the audience, step by step, with a bar per step."""
        funnel = operations.funnel(conn)
        top = max(funnel.steps[0].count or 0, 1)
        rows = []
        for step in funnel.steps:
            if step.count is None:
                count, bar = "–", ""
            else:
                count = f"{step.count:,}"
                width = min(100, round(100 * step.count / top))
                bar = format_html(
                    '<div style="width: 160px; background: var(--darkened-bg, #f0f0f0)">'
                    '<div style="width: {}%; height: 10px; background: var(--primary, #79aec8)"></div></div>',
                    width,
                )
            lost = f"−{step.lost:,}" if step.lost else ""
            rows.append([step.name, bar, count, lost, step.reason])
        table = _table(["step", "", "count", "lost", "why"], rows, "", "relay-funnel")
        return format_html("<p>{}</p>{}", funnel.summary, table)

    @admin.display(description="messages")
    def counters(self, conn):
        headers = ["pending", "sent", "accepted", "rejected", "failed", "no accepted identity"]
        row = [pending_of(conn), conn.sent_count, conn.accepted_count, conn.rejected_count, conn.failed_count,
               conn.unaccepted_count]  # fmt: skip
        return _table(headers, [[f"{n:,}" for n in row]], "")

    @admin.display(description="next upload")
    def next_upload(self, conn):
        return timing.next_upload(conn, pending_of(conn))

    @admin.display(description="last error")
    def last_error_full(self, conn):
        problem = last_problem.of(conn)
        if problem is None:
            return "None."
        if problem.current:
            return format_html("{}<br><small>{}</small>", problem.text, problem.at)
        return format_html(
            '<span class="relay-quiet-text">None now: {}.</span><br><small>Last problem, {}: {}</small>',
            problem.since[0].upper() + problem.since[1:],
            problem.at,
            problem.text,
        )

    # -- operations ---------------------------------------------------------------------------------------

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
        conn = get_object_or_404(Connection.objects.select_related("audience", "output"), pk=pk)
        if not self.may(request, "verify", conn):
            raise PermissionDenied
        self._verify(request, [conn])
        return HttpResponseRedirect(reverse("admin:connections_connection_change", args=[pk]))

    def _verify(self, request, conns):
        for conn in conns:
            sentence = operations.verify(conn)
            audit.record(request.user, conn, sentence)
            self.message_user(request, sentence, VERIFY_MESSAGE_LEVEL[conn.verification_status])

    def operate_view(self, request, pk, op):
        conn = get_object_or_404(with_pending(Connection.objects.select_related("audience", "output")), pk=pk)
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
                sentence = _run(op, conn)
                audit.record(
                    request.user, conn, sentence, "delete" if op == "disconnect-keep" else "change", object_id=pk
                )
                self.message_user(request, sentence, messages.SUCCESS)
            except operations.Refused as exc:
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
        self._verify(request, queryset.select_related("audience", "output"))

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
        conn = get_object_or_404(with_pending(Connection.objects.select_related("audience", "output")), pk=object_id)
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
                if self._applies(op, conn) and self.may(request, op, conn)
            ],
        }
        return render(request, "admin/connections/connection/disconnect.html", context)


# --- outbox messages and deliveries: read-only ------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(OutboxMessage)
class OutboxMessageAdmin(IdentityPagesAdmin, ReadOnlyAdmin):
    # One column for when (the next attempt of a waiting message, the last change of the others) keeps every
    # column on screen from 1280 px up.
    list_display = ["id", "connection", "type", "value", "action", "state", "attempts", "when", "error"]
    list_filter = ["state", ConnectionListFilter, IdentityTypeFilter, "action"]
    list_select_related = ["connection__audience", "connection__output"]
    search_fields = ["value"]
    search_help_text = "An identity value as typed (an email address is found whatever its case)."
    ordering = ["-id"]

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return queryset.filter(value__in=candidate_values(search_term)), False

    @admin.display(description="type", ordering="identity_type")
    def type(self, message):
        return message.get_identity_type_display()

    @admin.display(description="when", ordering="updated_at")
    def when(self, message):
        """A waiting message's next attempt ("next 3 Dec 2026, 09:47:03"), any other's last change."""
        if message.state == OutboxMessage.State.PENDING:
            return format_html("next {}", dates.when(message.next_attempt_at))
        return dates.when(message.updated_at)

    @admin.display(description="last error")
    def error(self, message):
        return cells.clip(message.last_error, 9)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    # Short headings and no "requests" column (it is on the delivery's page): every column fits 1280 px.
    list_display = ["started_at", "connection", "messages", "accepted", "rejected", "retried", "http", "ms",
                    "error_short"]  # fmt: skip
    list_filter = [ConnectionListFilter, "http_status"]
    list_select_related = ["connection__audience", "connection__output"]
    ordering = ["-started_at", "-id"]

    @admin.display(description="HTTP", ordering="http_status")
    def http(self, delivery):
        return delivery.http_status or "–"

    @admin.display(description="ms", ordering="duration_ms")
    def ms(self, delivery):
        return f"{delivery.duration_ms:,}"

    @admin.display(description="error")
    def error_short(self, delivery):
        return cells.clip(delivery.error, 14)


# --- what connections adds to the audience and output pages ----------------------------------------------


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
        return with_pending(super().get_queryset(request).select_related("audience", "output"))

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
        return _link(conn, conn.audience.name)


# audiences and outputs know nothing of connections: connections adds its inline and explains, on their
# delete pages, that connections must be disconnected first (Connection protects both ends).
AudienceAdmin.inlines = [*AudienceAdmin.inlines, AudienceConnectionInline]
OutputAdmin.inlines = [*OutputAdmin.inlines, OutputConnectionInline]
for model_admin in (AudienceAdmin, OutputAdmin):
    model_admin.delete_confirmation_template = "admin/connections/delete_confirmation.html"
    model_admin.delete_selected_confirmation_template = "admin/connections/delete_selected_confirmation.html"
