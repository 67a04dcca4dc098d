from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html

from outputs import schema
from outputs.models import Output
from outputs.partners import registry
from outputs.services import check_credentials, clean_output_settings, describe_check

PREFIX = "setting__"


class OutputFormBase(forms.ModelForm):
    """Fields for the partner's settings are added per partner by `form_for`."""

    partner_kind: str = ""

    class Meta:
        model = Output
        fields = ["name", "base_url"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            for name, value in self.instance.settings.items():
                if PREFIX + name in self.fields:
                    self.initial[PREFIX + name] = value

    def clean(self):
        data = super().clean()
        values = {k[len(PREFIX) :]: v for k, v in data.items() if k.startswith(PREFIX)}
        try:
            self._plain, self._secret = clean_output_settings(self.partner_kind, values, self.instance)
        except ValidationError as exc:
            for name, problems in exc.message_dict.items():
                self.add_error(PREFIX + name if PREFIX + name in self.fields else None, problems)
        return data

    def save(self, commit=True):
        self.instance.kind = self.partner_kind
        self.instance.settings = self._plain
        self.instance.set_secrets(self._secret)
        return super().save(commit)


def form_for(kind: str, output: Output | None):
    partner = registry.get(kind)
    secrets_set = set(output.secret_names_set()) if output and output.pk else set()
    fields = {
        PREFIX + s.name: schema.form_field(s, secret_is_set=s.name in secrets_set) for s in partner.output_settings
    }
    for setting in partner.output_settings:
        field = fields[PREFIX + setting.name]
        field.label = f"{setting.label}{' *' if setting.required else ''}"
    return type(f"{partner.name.replace(' ', '')}OutputForm", (OutputFormBase,), {**fields, "partner_kind": kind})


@admin.register(Output)
class OutputAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "credentials", "credentials_checked_at", "base_url"]
    list_filter = ["kind", "credentials_ok"]
    search_fields = ["name"]
    actions = ["check_selected"]
    readonly_fields = ["partner", "secrets_set", "credentials_status", "check_button"]
    change_form_template = "admin/outputs/output/change_form.html"

    def _kind(self, request, obj):
        return obj.kind if obj else request.GET.get("kind") or request.POST.get("kind")

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = form_for(self._kind(request, obj), obj)
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        partner = registry.get(self._kind(request, obj))
        settings = [PREFIX + s.name for s in partner.output_settings]
        status = ["secrets_set", "credentials_status", "check_button"] if obj else []
        return [
            (None, {"fields": ["partner", "name", "base_url"]}),
            (f"{partner.name} settings", {"fields": settings, "description": _docs_link(partner)}),
            *([("Credentials", {"fields": status})] if obj else []),
        ]

    def add_view(self, request, form_url="", extra_context=None):
        kind = request.GET.get("kind") or request.POST.get("kind")
        if kind not in registry.PARTNERS:
            context = {
                **self.admin_site.each_context(request),
                "partners": registry.all_partners(),
                "opts": self.model._meta,
                "title": "Add output: choose a partner",
            }
            return render(request, "admin/outputs/output/choose_partner.html", context)
        return super().add_view(request, form_url, {**(extra_context or {}), "partner_kind": kind})

    @admin.display(description="partner")
    def partner(self, obj):
        return registry.LABELS.get(obj.kind, obj.kind) if obj else ""

    @admin.display(description="secrets")
    def secrets_set(self, obj):
        names = obj.secret_names_set()
        return ", ".join(f"{n}: set" for n in names) if names else "none set"

    @admin.display(description="credentials", boolean=True, ordering="credentials_ok")
    def credentials(self, obj):
        return obj.credentials_ok

    @admin.display(description="last check")
    def credentials_status(self, obj):
        if obj.credentials_checked_at is None:
            return "Not checked yet."
        return format_html("{} <br><small>{}</small>", obj.credentials_message, obj.credentials_checked_at)

    @admin.display(description="")
    def check_button(self, obj):
        url = reverse("admin:outputs_output_check", args=[obj.pk])
        return format_html('<a class="button" href="{}">Check credentials</a>', url)

    def get_urls(self):
        view = self.admin_site.admin_view(self.check_view)
        return [path("<int:pk>/check/", view, name="outputs_output_check"), *super().get_urls()]

    def check_view(self, request, pk):
        output = get_object_or_404(Output, pk=pk)
        if not self.has_view_permission(request, output):
            raise PermissionDenied
        self._report(request, output)
        return HttpResponseRedirect(reverse("admin:outputs_output_change", args=[pk]))

    @admin.action(description="Check credentials")
    def check_selected(self, request, queryset):
        for output in queryset:
            self._report(request, output)

    def _report(self, request, output):
        check = check_credentials(output)
        level = messages.SUCCESS if check.status == "ok" else messages.ERROR
        self.message_user(request, f"{output.name}: {describe_check(check)}", level)


def _docs_link(partner):
    if not partner.docs_url:
        return ""
    return format_html(
        'Settings as {} defines them: <a href="{}" target="_blank">documentation</a>.', partner.name, partner.docs_url
    )
