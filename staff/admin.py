from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth.models import User
from django.utils.html import format_html
from django_q import admin as q_admin

from outputs.partners import redact
from staff import links, token_admin  # noqa: F401  (token_admin registers API tokens, kept apart)
from staff.models import AuditEntry

# django-q2's "Resubmit selected task" runs a task again (a drain sends to the partner): like every action of
# ours it needs the change permission, here of the task (superusers only: no group has it).
q_admin.resubmit_task.allowed_permissions = ("change",)

KINDS = {
    "output": ("outputs", "output", "Outputs"),
    "connection": ("connections", "connection", "Connections"),
    "audience": ("audiences", "audience", "Audiences"),
    "profile": ("audiences", "profile", "Profiles"),
}


class KindFilter(admin.SimpleListFilter):
    """What changed, among the objects operators care about (not every content type Django knows)."""

    title = "object"
    parameter_name = "kind"

    def lookups(self, request, model_admin):
        return [(key, label) for key, (_, _, label) in KINDS.items()] + [("other", "Everything else")]

    def queryset(self, request, queryset):
        if self.value() in KINDS:
            app_label, model, _ = KINDS[self.value()]
            return queryset.filter(content_type__app_label=app_label, content_type__model=model)
        if self.value() == "other":
            for app_label, model, _ in KINDS.values():
                queryset = queryset.exclude(content_type__app_label=app_label, content_type__model=model)
        return queryset


class ActionFilter(admin.SimpleListFilter):
    title = "action"
    parameter_name = "action"

    def lookups(self, request, model_admin):
        return [("1", "Added"), ("2", "Changed"), ("3", "Deleted")]

    def queryset(self, request, queryset):
        return queryset.filter(action_flag=self.value()) if self.value() else queryset


@admin.register(AuditEntry)
class AuditAdmin(admin.ModelAdmin):
    """Every change recorded in the admin's log, by anyone, through the admin or the API; nothing here can change."""

    list_display = ["action_time", "user", "what", "object_link", "message"]
    list_filter = [KindFilter, ActionFilter, "user"]
    list_select_related = ["user", "content_type"]
    search_fields = ["object_repr", "change_message", "user__username"]
    search_help_text = "An object's name, a word of the change, or a username."
    date_hierarchy = "action_time"
    ordering = ["-action_time", "-id"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fields(self, request, obj=None):
        return ["action_time", "user", "content_type", "object_id", "name", "what", "message"]

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj)

    @admin.display(description="action", ordering="action_flag")
    def what(self, entry):
        return entry.get_action_flag_display()

    @admin.display(description="object", ordering="object_repr")
    def object_link(self, entry):
        kind = entry.content_type.name if entry.content_type else "object"
        url = None if entry.is_deletion() else entry.get_admin_url()
        name = self.name(entry)
        model = entry.content_type.model_class() if entry.content_type else None
        if not url or not links.may_open(model):
            return format_html("{} <small>({})</small>", name, kind)
        return format_html('<a href="{}">{}</a> <small>({})</small>', url, name, kind)

    # Entries written before identities were kept out of the history may name one (an identity inline's
    # "email:ada@example.com"); the history is read without the identities permission, so it never shows one.
    @admin.display(description="object")
    def name(self, entry):
        return redact.identities(entry.object_repr)

    @admin.display(description="change")
    def message(self, entry):
        return redact.identities(entry.get_change_message())


class UserAdmin(auth_admin.UserAdmin):
    """Django's, without the password row for staff who may only view users: its button opens a form that
    would refuse them."""

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        return [(name, {**opts, "fields": [f for f in opts["fields"] if f != "password"]}) for name, opts in fieldsets]


admin.site.unregister(User)
admin.site.register(User, UserAdmin)
