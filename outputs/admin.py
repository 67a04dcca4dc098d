import json
from functools import partial

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.models import LogEntry
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from identities import plural_phrase
from outputs import schema
from outputs.models import Output
from outputs.partners import registry
from outputs.partners.destinations import shown
from outputs.permissions import (
    CHANGE_CREDENTIALS,
    credentials_refused,
    destination_names,
    destination_refused,
    destinations,
    moved,
)
from outputs.services import (
    check_credentials,
    clean_base_url,
    clean_output_settings,
    describe_check,
    facts,
    saved,
)
from staff import audit, dates
from staff.admin_seams import AdminSeams, SeamedAdmin

PREFIX = "setting__"
# Checking credentials calls the partner and records its answer on the output: the button, the confirmation page
# and the bulk action all need this ModelAdmin permission.
CHECK_PERMISSION = "change"
LOCKED_DESTINATION = (
    "Where credentials and member data are sent: only staff with the “Can change output credentials” "
    "permission can change it."
)


class SecretStatus(forms.Widget):
    """A secret the user may not replace: it says whether one is set and offers no input."""

    def __init__(self, is_set: bool):
        super().__init__()
        self.is_set = is_set

    def render(self, name, value, attrs=None, renderer=None):
        return format_html('<div class="readonly">{}</div>', "set" if self.is_set else "not set")


class OutputFormBase(forms.ModelForm):
    """Fields for the partner's settings are added per partner by `form_for`."""

    partner_kind: str = ""
    # For staff without the credentials permission: setting name -> label of the secrets they may not replace,
    # and form field name -> label of the destinations they may not move (the base URL, a webhook's URL …).
    locked_secrets: dict = {}
    locked_destinations: dict = {}

    class Meta:
        model = Output
        fields = ["name", "base_url"]
        # A base URL typed without a scheme is taken as https:// (Django 6's default, asked for explicitly).
        field_classes = {"base_url": partial(forms.URLField, assume_scheme="https")}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance.pk:
            self.instance.kind = self.partner_kind  # the page names the partner before the first save
        if self.instance.pk:
            for name, value in self.instance.settings.items():
                if PREFIX + name in self.fields:
                    self.initial[PREFIX + name] = value
        # As stored, read before validation copies the posted values onto the instance.
        self.stored_destinations = self._destinations_of(self.instance) if self.instance.pk else {}
        self.stored_facts = facts(self.instance) if self.instance.pk else None
        for name in self.locked_destinations.keys() & self.fields.keys():  # a view-only form has no fields
            self.fields[name].disabled = True
            self.fields[name].help_text = LOCKED_DESTINATION

    def clean_base_url(self):
        if "base_url" in self.locked_destinations:
            return self.instance.base_url  # kept as stored: not this user's to change, nor to be refused for
        try:
            return clean_base_url(self.cleaned_data.get("base_url"), self.partner_kind)
        except ValidationError as exc:
            raise ValidationError(exc.message_dict["base_url"]) from None

    def clean(self):
        data = super().clean()
        for name, label in self.locked_secrets.items():
            # The field is disabled, so Django ignores what was posted; a forged value is refused, not dropped.
            if self.data.get(self.add_prefix(PREFIX + name)):
                self.add_error(PREFIX + name, credentials_refused(label))
        for field, label in self.locked_destinations.items():
            posted = self.data.get(self.add_prefix(field))
            if posted is not None and posted.strip() != self.stored_destinations.get(_name_of(field), ""):
                self.add_error(field, destination_refused(label))
        values = {k[len(PREFIX) :]: v for k, v in data.items() if k.startswith(PREFIX)}
        try:
            self._plain, self._secret = clean_output_settings(self.partner_kind, values, self.instance)
        except ValidationError as exc:
            for name, problems in exc.message_dict.items():
                self.add_error(PREFIX + name if PREFIX + name in self.fields else None, problems)
        return data

    def _destinations_of(self, output) -> dict:
        return destinations(registry.get(self.partner_kind), output.base_url, output.settings)

    def moves(self) -> list[tuple[str, str, str]]:
        """(label, old, new) of each destination this save changes."""
        after = destinations(registry.get(self.partner_kind), self.cleaned_data.get("base_url"), self._plain)
        return [
            (self.fields[_field(name)].label.removesuffix(" *"), old, new)
            for name, old, new in moved(self.stored_destinations, after)
        ]

    def save(self, commit=True):
        self.instance.kind = self.partner_kind
        self.instance.settings = self._plain
        self.instance.set_secrets(self._secret)
        return super().save(commit)


def form_for(kind: str, output: Output | None, can_change_credentials: bool = True):
    partner = registry.get(kind)
    secrets_set = set(output.secret_names_set()) if output and output.pk else set()
    fields = {
        PREFIX + s.name: schema.form_field(s, secret_is_set=s.name in secrets_set) for s in partner.output_settings
    }
    locked, pinned = {}, {}
    if not can_change_credentials:
        pinned = {_field(name): name for name in destination_names(partner)}
    for setting in partner.output_settings:
        if setting.secret and not can_change_credentials:
            locked[setting.name] = setting.label
            fields[PREFIX + setting.name] = forms.CharField(
                required=False,
                disabled=True,
                widget=SecretStatus(setting.name in secrets_set),
                help_text="Only staff with the “Can change output credentials” permission can replace it.",
            )
        field = fields[PREFIX + setting.name]
        field.label = f"{setting.label}{' *' if setting.required else ''}"
    labels = {s.name: s.label for s in partner.output_settings} | {"base_url": "base URL override"}
    attrs = {
        **fields,
        "partner_kind": kind,
        "locked_secrets": locked,
        "locked_destinations": {field: labels[name] for field, name in pinned.items()},
    }
    return type(f"{partner.name.replace(' ', '')}OutputForm", (OutputFormBase,), attrs)


def _field(name: str) -> str:
    """The form field of an output field or a partner setting."""
    return name if name == "base_url" else PREFIX + name


def _name_of(field: str) -> str:
    """The output field or partner setting of a form field."""
    return field.removeprefix(PREFIX)


class CredentialsFilter(admin.SimpleListFilter):
    title = "credentials"
    parameter_name = "credentials"

    def lookups(self, request, model_admin):
        return [("ok", "Work"), ("failing", "Fail"), ("unknown", "Not checked yet or being checked")]

    def queryset(self, request, queryset):
        value = {"ok": True, "failing": False, "unknown": None}.get(self.value(), ...)
        if value is ...:
            return queryset
        return queryset.filter(credentials_ok__isnull=True) if value is None else queryset.filter(credentials_ok=value)


class PartnerFilter(admin.SimpleListFilter):
    title = "partner"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return registry.choices()

    def queryset(self, request, queryset):
        return queryset.filter(kind=self.value()) if self.value() else queryset


@admin.register(Output)
class OutputAdmin(SeamedAdmin, admin.ModelAdmin):
    # Apps built on outputs add inlines and delete pages here from their AppConfig.ready() (connections does).
    seams = AdminSeams()
    list_display = ["name", "partner", "credentials", "credentials_checked_at", "base_url"]
    list_filter = [PartnerFilter, CredentialsFilter]
    search_fields = ["name"]
    actions = ["check_selected"]
    readonly_fields = ["partner", "secrets_set", "credentials_status"]
    change_form_template = "admin/outputs/output/change_form.html"

    def _kind(self, request, obj):
        return obj.kind if obj else request.GET.get("kind") or request.POST.get("kind")

    def get_form(self, request, obj=None, change=False, **kwargs):
        allowed = request.user.has_perm(CHANGE_CREDENTIALS)
        kwargs["form"] = form_for(self._kind(request, obj), obj, can_change_credentials=allowed)
        return super().get_form(request, obj, change=change, **kwargs)

    def construct_change_message(self, request, form, formsets, add=False):
        # The history names what changed by label ("API key"), never a value; drop the required-field star.
        # A destination is named with where it pointed before and after (no secret is ever in one: a query
        # string is left out), in a sentence of its own.
        message = super().construct_change_message(request, form, formsets, add)
        moves = [] if add else form.moves()
        moved_labels = {label for label, _, _ in moves}
        for part in message:
            if "changed" in part:
                fields = [f.removesuffix(" *") for f in part["changed"]["fields"]]
                part["changed"]["fields"] = [f for f in fields if f not in moved_labels]
        if not moves:
            return message
        message = [part for part in message if "changed" not in part or part["changed"]["fields"]]
        listed = LogEntry(change_message=json.dumps(message)).get_change_message() if message else ""
        sentences = [audit.moved(label, shown(old), shown(new)) for label, old, new in moves]
        return " ".join(filter(None, [listed, *sentences]))

    def save_model(self, request, obj, form, change):
        moves = form.moves() if change else []
        super().save_model(request, obj, form, change)
        saved(obj, form.stored_facts, request.user, moved=bool(moves))

    def get_fieldsets(self, request, obj=None):
        partner = registry.get(self._kind(request, obj))
        settings = [PREFIX + s.name for s in partner.output_settings]
        if obj is not None and not self.has_change_permission(request, obj):
            settings = ["settings_values"]  # view only: the values as read, not empty form fields
        status = ["secrets_set", "credentials_status"] if obj else []
        return [
            (None, {"fields": ["partner", "name", "base_url"]}),
            (f"{partner.name} settings", {"fields": settings, "description": _docs_link(partner)}),
            *([("Credentials", {"fields": status})] if obj else []),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        # Before the first step too: its buttons lead only to the second, which would refuse.
        if not self.has_add_permission(request):
            raise PermissionDenied
        kind = request.GET.get("kind") or request.POST.get("kind")
        if kind not in registry.slugs():
            context = {
                **self.admin_site.each_context(request),
                "partners": [(p, plural_phrase(p.identity_types)) for p in registry.all_partners()],
                "opts": self.model._meta,
                "title": "Add output: choose a partner",
            }
            return render(request, "admin/outputs/output/choose_partner.html", context)
        # The form posts to the bare add URL (the partner travels in a hidden field): Django keeps the query
        # string of the URL it posted to on the pages after saving, where "?kind=" means nothing.
        form_url = form_url or reverse("admin:outputs_output_add")
        return super().add_view(request, form_url, {**(extra_context or {}), "partner_kind": kind})

    @admin.display(description="partner", ordering="kind")
    def partner(self, obj):
        return registry.label(obj.kind) if obj else ""

    @admin.display(description="settings")
    def settings_values(self, obj):
        secrets_set = set(obj.secret_names_set())
        rows = []
        for setting in obj.partner.output_settings:
            value = obj.settings.get(setting.name)
            if setting.secret:
                shown = "set" if setting.name in secrets_set else "not set"
            elif setting.kind == "bool":
                shown = "Yes" if value else "No"
            elif setting.choices:
                labels = dict(setting.choices)
                shown = (
                    ", ".join(labels.get(v, v) for v in value) if isinstance(value, list) else labels.get(value, value)
                )
            else:
                shown = value
            rows.append((setting.label, "—" if shown in (None, "") else shown))
        return format_html(
            "<table><tbody>{}</tbody></table>", format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", rows)
        )

    @admin.display(description="secrets")
    def secrets_set(self, obj):
        names = set(obj.secret_names_set())
        secrets = [s for s in obj.partner.output_settings if s.secret]
        return "; ".join(f"{s.label}: {'set' if s.name in names else 'not set'}" for s in secrets) or "none"

    @admin.display(description="credentials", boolean=True, ordering="credentials_ok")
    def credentials(self, obj):
        return obj.credentials_ok

    @admin.display(description="last check")
    def credentials_status(self, obj):
        if obj.credentials_checked_at is None:
            return obj.credentials_message or "Not checked yet."  # or: being checked again after a change
        return format_html("{}<br><small>{}</small>", obj.credentials_message, dates.when(obj.credentials_checked_at))

    def may_check(self, request, output=None) -> bool:
        return self.has_view_permission(request, output) and getattr(self, f"has_{CHECK_PERMISSION}_permission")(
            request, output
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The "Check credentials" button is among the page's object tools, for those the check lets through.
        output = self.get_object(request, object_id)
        check_url = reverse("admin:outputs_output_check", args=[output.pk]) if output else None
        context = {**(extra_context or {}), "check_url": check_url if self.may_check(request, output) else None}
        return super().change_view(request, object_id, form_url, context)

    def get_urls(self):
        view = self.admin_site.admin_view(self.check_view)
        return [path("<int:pk>/check/", view, name="outputs_output_check"), *super().get_urls()]

    def check_view(self, request, pk):
        """GET asks, POST (with its CSRF token) checks: the check calls the partner and records its answer."""
        output = get_object_or_404(Output, pk=pk)
        if not self.may_check(request, output):
            raise PermissionDenied
        if request.method != "POST":
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": "Check credentials: are you sure?",
                "output": output,
                "explain": f"{output.partner.name} is asked whether this output's credentials work; the answer is "
                "recorded on the output and in its history. Nothing changes at the partner.",
            }
            return render(request, "admin/outputs/output/confirm_check.html", context)
        self._report(request, output)
        return HttpResponseRedirect(reverse("admin:outputs_output_change", args=[pk]))

    @admin.action(description="Check credentials", permissions=[CHECK_PERMISSION])
    def check_selected(self, request, queryset):
        for output in queryset:
            self._report(request, output)

    def _report(self, request, output):
        check = check_credentials(output)
        level = messages.SUCCESS if check.status == "ok" else messages.ERROR
        self.log_change(request, output, f"Checked credentials ({check.status}): {describe_check(check)}")
        self.message_user(request, f"{output.name}: {describe_check(check)}", level)


def _docs_link(partner):
    if not partner.docs_url:
        return ""
    return format_html(
        'Settings as {} defines them: <a href="{}" target="_blank">documentation</a>.', partner.name, partner.docs_url
    )
