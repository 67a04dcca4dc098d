import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from audiences import criteria as criteria_lang
from audiences import variants as split
from audiences.admin_profile_writes import ErasingDeletes, IdentitiesThroughIngest
from audiences.export import audience_csv_response
from audiences.models import Audience, Identity, Membership, Profile, RefreshRun, Variant
from audiences.permissions import HIDDEN, can_see_identities, require_identities
from audiences.queries import profiles_with_identity
from audiences.refresh import reevaluate_profiles, refresh_audience
from audiences.stats import audience_breakdown, identity_breakdown
from identities import IdentityType, InvalidIdentity, normalize
from staff.admin_seams import AdminSeams, SeamedAdmin


class IdentityForm(forms.ModelForm):
    class Meta:
        model = Identity
        fields = ["type", "value"]

    def clean(self):
        data = super().clean()
        if data.get("type") and data.get("value"):
            try:
                data["value"] = normalize(data["type"], data["value"])
            except InvalidIdentity as exc:
                self.add_error("value", str(exc))
        return data


class IdentityInline(admin.TabularInline):
    model = Identity
    form = IdentityForm
    extra = 0


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ["audience", "since"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "audience memberships"

    def has_add_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("audience", "profile")  # each row is named by both


@admin.register(Profile)
class ProfileAdmin(ErasingDeletes, IdentitiesThroughIngest, admin.ModelAdmin):
    list_display = ["external_id", "identity_count", "membership_count", "updated_at"]
    search_fields = ["external_id"]
    search_help_text = "An external ID, or any identity value (email, device ID, phone, customer ID)."
    inlines = [IdentityInline, MembershipInline]
    readonly_fields = ["created_at", "updated_at"]
    show_full_result_count = False

    def change_view(self, request, object_id, form_url="", extra_context=None):
        context = {**(extra_context or {}), "can_trace": can_see_identities(request.user)}  # the trace is identities
        return super().change_view(request, object_id, form_url, context)

    def get_inlines(self, request, obj):
        if can_see_identities(request.user):
            return self.inlines
        return [inline for inline in self.inlines if inline is not IdentityInline]

    def get_readonly_fields(self, request, obj=None):
        # Django shows read-only fields after the form's: the summary takes the identities' place.
        fields = super().get_readonly_fields(request, obj)
        return fields if can_see_identities(request.user) or obj is None else [*fields, "identities_hidden"]

    @admin.display(description="identities")
    def identities_hidden(self, profile):
        """In place of the identities: how many of each type, and why their values are not shown."""
        counts = dict(profile.identities.order_by().values_list("type").annotate(n=Count("pk")))
        labels = dict(IdentityType.choices)
        held = ", ".join(f"{counts[t]} {labels[t]}" for t in IdentityType.values if counts.get(t))
        return f"{held or 'None'}. {HIDDEN}"

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                n_identities=Count("identities", distinct=True),
                n_memberships=Count("memberships", distinct=True),
            )
        )

    @admin.display(description="identities", ordering="n_identities")
    def identity_count(self, profile):
        return profile.n_identities

    @admin.display(description="audiences", ordering="n_memberships")
    def membership_count(self, profile):
        return profile.n_memberships

    def get_search_results(self, request, queryset, search_term):
        if not search_term:
            return queryset, False
        by_external_id = queryset.filter(external_id=search_term.strip())
        if not can_see_identities(request.user):
            # Finding a profile by an email address would tell whether that address is among the members.
            return by_external_id, False
        by_identity = queryset.filter(pk__in=profiles_with_identity(search_term))
        return by_external_id | by_identity, False

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # Changed attributes reach membership like an API upsert does (changed identities already did, through
        # the ingest that saved them).
        if form.has_changed():
            reevaluate_profiles([form.instance.pk])


class PrettyJSONField(forms.JSONField):
    """Criteria shown indented, so an operator can read and edit nested conditions."""

    def prepare_value(self, value):
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


class AudienceForm(forms.ModelForm):
    criteria = PrettyJSONField(
        required=False,
        help_text="Rule criteria as JSON; see docs/criteria.md. Leave empty for a static list.",
        widget=forms.Textarea(attrs={"rows": 18, "cols": 90, "style": "font-family: monospace"}),
    )

    class Meta:
        model = Audience
        fields = ["name", "description", "kind", "criteria"]

    def clean(self):
        data = super().clean()
        kind, criteria = data.get("kind"), data.get("criteria")
        if kind == Audience.Kind.RULES:
            if criteria is None:
                self.add_error("criteria", "A rule-based audience needs criteria.")
            else:
                try:
                    criteria_lang.validate(criteria)
                except criteria_lang.CriteriaError as exc:
                    self.add_error("criteria", str(exc))
        elif criteria is not None:
            self.add_error("criteria", "A static audience has no criteria: leave this empty and edit its members.")
        return data


class VariantInline(admin.TabularInline):
    """The audience's A/B variants with their sizes now; the split changes on its own page (an explicit action
    that says how many members move), so the rows are read-only and follow the audience's permissions."""

    model = Variant
    fields = ["name", "percent", "buckets", "members", "members_csv"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "A/B variants"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return request.user.has_perm("audiences.view_audience")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("audience")

    @admin.display(description="buckets")
    def buckets(self, variant):
        return f"{variant.first_bucket:,}–{variant.last_bucket:,}"

    @admin.display(description="members now")
    def members(self, variant):
        audience = variant.audience
        if not hasattr(audience, "variant_sizes"):
            audience.variant_sizes = split.sizes(audience)  # one pass for every row of the page
        return f"{audience.variant_sizes.get(variant.pk, 0):,}"

    @admin.display(description="members CSV")
    def members_csv(self, variant):
        if not self._sees_identities:
            return "-"
        url = reverse("admin:audiences_audience_export", args=[variant.audience_id]) + f"?variant={variant.pk}"
        return format_html('<a href="{}">Download</a>', url)

    def get_formset(self, request, obj=None, **kwargs):
        self._sees_identities = can_see_identities(request.user)
        return super().get_formset(request, obj, **kwargs)


@admin.register(Audience)
class AudienceAdmin(SeamedAdmin, admin.ModelAdmin):
    form = AudienceForm
    # Apps built on audiences add inlines and delete pages here from their AppConfig.ready() (connections does).
    seams = AdminSeams()
    list_display = ["name", "kind", "size", "last_refreshed_at", "summary"]
    list_filter = ["kind"]
    search_fields = ["name", "description"]
    readonly_fields = ["size", "last_refreshed_at", "identity_types", "download", "variants_summary"]
    actions = ["refresh_now"]
    inlines = [VariantInline]
    fieldsets = [
        (None, {"fields": ["name", "description", "kind", "criteria"]}),
        ("Members", {"fields": ["size", "last_refreshed_at", "identity_types", "download", "variants_summary"]}),
    ]

    @admin.display(description="A/B variants")
    def variants_summary(self, audience):
        if not audience.pk:
            return "-"
        variants = list(audience.variants.all())
        said = f"Split {split.describe(variants)}." if variants else "Not split."
        if not getattr(audience, "may_split", False):
            return said
        url = reverse("admin:audiences_audience_variants", args=[audience.pk])
        return format_html('{} <a class="button" href="{}">Change the split</a>', said, url)

    def get_inlines(self, request, obj):
        inlines = super().get_inlines(request, obj)
        # A new audience has no members to split yet.
        return inlines if obj is not None else [i for i in inlines if i is not VariantInline]

    def get_object(self, request, object_id, from_field=None):
        # The read-only parts see only the object: it carries whether this user may change the split.
        audience = super().get_object(request, object_id, from_field)
        if audience is not None:
            audience.may_split = self.has_change_permission(request, audience)
        return audience

    @admin.display(description="criteria")
    def summary(self, audience):
        return criteria_lang.describe(audience.criteria) if audience.criteria else "static list"

    @admin.display(description="members per identity type")
    def identity_types(self, audience):
        if not audience.pk:
            return "-"
        counts = audience_breakdown(audience.pk)
        rows = [(label, counts[value]) for value, label in IdentityType.choices]
        return format_html(
            "<table><tbody>{}</tbody></table>",
            format_html_join("", "<tr><td>{}</td><td style='text-align:right'>{}</td></tr>", rows),
        )

    def get_fieldsets(self, request, obj=None):
        if can_see_identities(request.user):
            return self.fieldsets
        swap = {"download": "download_hidden"}
        return [(name, {**opts, "fields": [swap.get(f, f) for f in opts["fields"]]}) for name, opts in self.fieldsets]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "download_hidden"]

    @admin.display(description="members CSV")
    def download_hidden(self, audience):
        return f"The CSV lists every member's identities. {HIDDEN}" if audience.pk else "-"

    @admin.display(description="members CSV")
    def download(self, audience):
        if not audience.pk:
            return "-"
        url = reverse("admin:audiences_audience_export", args=[audience.pk])
        return format_html('<a class="button" href="{}">Download members as CSV</a>', url)

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_view)
        preview = self.admin_site.admin_view(require_POST(self.preview_view))
        variants = self.admin_site.admin_view(self.variants_view)
        return [
            path("<int:pk>/export/", export, name="audiences_audience_export"),
            path("<int:pk>/variants/", variants, name="audiences_audience_variants"),
            path("preview/", preview, name="audiences_audience_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request):
        """The size criteria would have now, before saving: the page's live estimate posts the textarea here."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return JsonResponse(preview(request.body.decode("utf-8", errors="replace")))

    def export_view(self, request, pk):
        audience = get_object_or_404(Audience, pk=pk)
        if not self.has_view_permission(request, audience):
            raise PermissionDenied
        require_identities(request.user)
        raw = request.GET.get("variant", "")
        variant = get_object_or_404(Variant, pk=raw, audience=audience) if raw else None
        return audience_csv_response(audience, variant)

    def variants_view(self, request, pk):
        """Change the split: the same service as the API and the command, with its sentence as the message."""
        audience = get_object_or_404(Audience, pk=pk)
        if not self.has_change_permission(request, audience):
            raise PermissionDenied
        variants = list(audience.variants.all())
        current = " ".join(f"{v.name}={v.percent}" for v in variants)
        text, disconnect = current, ""
        if request.method == "POST":
            text, disconnect = request.POST.get("split", ""), request.POST.get("disconnect", "")
            try:
                result = split.change_split(audience, split.parse_split(text), disconnect or None)
            except ValidationError as exc:
                for problems in exc.message_dict.values():
                    for problem in problems:
                        self.message_user(request, problem, messages.ERROR)
            else:
                level = messages.WARNING if result.status == "disconnecting" else messages.SUCCESS
                self.message_user(request, result.detail, level)
                return HttpResponseRedirect(reverse("admin:audiences_audience_change", args=[audience.pk]))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"A/B variants of {audience.name}",
            "audience": audience,
            "variants": variants,
            "current": split.describe(variants) if variants else "",
            "split": text,
            "disconnect": disconnect,
        }
        return render(request, "admin/audiences/audience/variants.html", context)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if obj.kind == Audience.Kind.RULES and (not change or "criteria" in form.changed_data):
            self._refresh_with_message(request, obj)

    @admin.action(description="Refresh now", permissions=["change"])
    def refresh_now(self, request, queryset):
        for audience in queryset:
            if audience.kind == Audience.Kind.RULES:
                self._refresh_with_message(request, audience)
            else:
                self.message_user(request, f"{audience.name} is a static list: nothing to refresh.", messages.WARNING)

    def _refresh_with_message(self, request, audience):
        r = refresh_audience(audience)
        self.message_user(
            request,
            f"{r.audience} refreshed: {r.added} added, {r.removed} removed, {r.size} members ({r.seconds:.2f} s).",
        )


# How the estimate names each identity type: "600 with an email address".
WITH_IDENTITY = {
    IdentityType.EMAIL: "an email address",
    IdentityType.CUSTOMER_ID: "a customer ID",
    IdentityType.MOBILE_NUMBER: "a mobile number",
    IdentityType.IOS_IDFA: "an iOS advertising ID",
    IdentityType.IOS_IDFV: "an iOS vendor ID",
    IdentityType.ANDROID_AAID: "an Android advertising ID",
    IdentityType.ANDROID_UUID: "an Android UUID",
    IdentityType.FACEBOOK_ID: "a Facebook ID",
    IdentityType.GOOGLE_ID: "a Google ID",
    IdentityType.MICROSOFT_ID: "a Microsoft ID",
    IdentityType.OTHER: "another identity",
}


def preview(text: str) -> dict:
    """Validate criteria typed in the admin and count the profiles they match now, per identity type."""
    if not text.strip():
        return {"ok": False, "error": "Enter criteria to see how many users they match."}
    try:
        criteria = json.loads(text)
    except ValueError as exc:
        return {"ok": False, "error": f"This is not valid JSON: {exc}."}
    try:
        matching = Profile.objects.filter(criteria_lang.compile_criteria(criteria))
    except criteria_lang.CriteriaError as exc:
        return {"ok": False, "error": str(exc)}
    size = matching.count()
    counts = identity_breakdown(matching) if size else {t: 0 for t in IdentityType.values}
    parts = [f"{counts[t]:,} with {WITH_IDENTITY[t]}" for t in IdentityType.values if counts[t]]
    users = "user" if size == 1 else "users"
    summary = f"≈ {size:,} {users}" + (f" — {', '.join(parts)}" if parts else "")
    return {"ok": True, "size": size, "identity_types": counts, "summary": summary}


@admin.register(RefreshRun)
class RefreshRunAdmin(admin.ModelAdmin):
    list_display = ["pk", "trigger", "audience", "started_at", "finished_at", "added", "removed"]
    list_filter = ["trigger"]
    list_select_related = ["audience"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
