"""API tokens in the admin: create one (its secret shown once), see when each was used, revoke them."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.template.response import TemplateResponse
from django.utils import timezone

from staff.models import ApiToken


class StatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request, queryset):
        now = timezone.now()
        expired = Q(expires_at__lte=now)
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).exclude(expired)
        if self.value() == "expired":
            return queryset.filter(expired, revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "scope", "status", "expires_at", "last_used_at", "revoked_at"]
    list_filter = [StatusFilter, "scope"]
    list_select_related = ["user"]
    search_fields = ["prefix", "name", "user__username"]
    search_help_text = "A token's prefix, its name or its user's username."
    autocomplete_fields = ["user"]
    actions = ["revoke_selected"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "user", "scope", "expires_at"]
        # key_hash is never shown: it is of no use to a person and of some use to an attacker.
        return ["prefix", "name", "user", "scope", "status", "created_at", "expires_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["prefix", "user", "scope", "status", "created_at", "last_used_at", "revoked_at"]

    @admin.display(description="status")
    def status(self, token):
        if token.revoked_at:
            return "revoked"
        return "expired" if token.is_expired else "active"

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        # A token acts as its user: anyone but a superuser may only mint tokens for themselves, or a staff
        # member allowed to add tokens could borrow a superuser's rights through one.
        if db_field.name == "user" and not request.user.is_superuser:
            kwargs["queryset"] = db_field.remote_field.model.objects.filter(pk=request.user.pk)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_autocomplete_fields(self, request):
        return self.autocomplete_fields if request.user.is_superuser else []

    def save_model(self, request, obj, form, change):
        if not request.user.is_superuser and obj.user_id != request.user.pk:
            raise PermissionDenied("Only a superuser may create an API token for someone else.")
        if change:
            return super().save_model(request, obj, form, change)
        # Kept on the instance for response_add only: the secret is never stored.
        obj.plaintext = obj.generate_and_save()

    def response_add(self, request, obj, post_url_continue=None):
        # The token is rendered on this page rather than passed in a message: messages travel in a cookie
        # or the session, and the secret must not be stored anywhere.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "API token created",
            "token": obj,
            "plaintext": obj.plaintext,
        }
        return TemplateResponse(request, "admin/staff/apitoken/created.html", context)

    @admin.action(description="Revoke selected tokens", permissions=["change"])
    def revoke_selected(self, request, queryset):
        revoked = [token for token in queryset.select_related("user") if token.revoke()]
        for token in revoked:
            self.log_change(request, token, "Revoked.")
        if revoked:
            count = len(revoked)
            self.message_user(request, f"Revoked {count} token{'s' if count != 1 else ''}; they stop working now.")
        else:
            self.message_user(request, "Those tokens were already revoked.", messages.WARNING)
