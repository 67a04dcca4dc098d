"""The profile admin's writes take the API's paths: deleting erases, identity edits go through the ingest.

So the admin is no side door: a profile deleted there leaves every partner (and the audience sizes) as an
erased one does, and an identity edited inline reaches the partners as an ingested one does. Kept apart
from `audiences.admin` so the profile admin's display code and its writes can change independently.
"""

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.shortcuts import render
from django.urls import reverse

from audiences.erasure import describe, erase_profiles
from audiences.ingest import ProfileInput, upsert_profiles
from audiences.models import Identity, Profile


class ErasingDeletes:
    """ModelAdmin mixin: the delete button, "Delete selected" and "Erase selected profiles" all erase."""

    actions = ["erase_selected"]
    delete_confirmation_template = "admin/audiences/profile/delete_confirmation.html"
    delete_selected_confirmation_template = "admin/audiences/profile/delete_selected_confirmation.html"

    def delete_model(self, request, obj):
        self._erase(request, Profile.objects.filter(pk=obj.pk))

    def delete_queryset(self, request, queryset):
        self._erase(request, queryset)

    def log_deletions(self, request, queryset):
        # The erasure writes the audit entry itself (who, and how many audiences each profile left), as it does
        # for the API and the command; the admin's own "Deleted" entry would say it twice.
        return []

    @admin.action(description="Erase selected profiles", permissions=["delete"])
    def erase_selected(self, request, queryset):
        if request.POST.get("post") == "yes":
            self._erase(request, queryset)
            return None
        profiles = list(queryset.order_by("external_id")[:101])
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Erase profiles: are you sure?",
            "profiles": profiles[:100],
            "more": queryset.count() - 100 if len(profiles) > 100 else 0,
            "selected": queryset.values_list("pk", flat=True),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "cancel_url": reverse("admin:audiences_profile_changelist"),
        }
        return render(request, "admin/audiences/profile/confirm_erase.html", context)

    def _erase(self, request, queryset):
        result = erase_profiles(queryset, request.user)
        self.message_user(request, describe(result), messages.SUCCESS)


class IdentitiesThroughIngest:
    """ModelAdmin mixin: the identities inline is saved by the bulk API's code, never row by row.

    The ingest replaces a profile's identity set and tells the forwarding side what was removed and added,
    so a changed email is removed at each partner of the profile's audiences and the new one added, exactly
    as `POST /api/v1/profiles/bulk/` does it; it also re-evaluates the profile when its identities changed.
    """

    def save_formset(self, request, form, formset, change):
        if formset.model is not Identity:
            return super().save_formset(request, form, formset, change)
        # Without committing, the formset still sorts its rows into new, changed and deleted objects, which
        # the admin's change message (History) reads.
        formset.save(commit=False)
        profile = form.instance
        held = {pk: (t, v) for pk, t, v in Identity.objects.filter(profile=profile).values_list("pk", "type", "value")}
        for obj in formset.deleted_objects:
            held.pop(obj.pk, None)
        for obj, _ in formset.changed_objects:
            held[obj.pk] = (obj.type, obj.value)
        wanted = [*held.values(), *((obj.type, obj.value) for obj in formset.new_objects)]
        upsert_profiles([ProfileInput(profile.external_id, None, list(dict.fromkeys(wanted)))])
        return None
