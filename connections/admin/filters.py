"""The list filters of the connection, outbox and delivery lists."""

from django.contrib import admin

from connections import last_problem
from connections.models import Connection, OutboxMessage
from identities import IdentityType
from outputs.partners import registry


class PartnerFilter(admin.SimpleListFilter):
    title = "partner"
    parameter_name = "partner"

    def lookups(self, request, model_admin):
        return registry.choices()

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
        return [(c.pk, str(c)) for c in Connection.objects.select_related("audience", "variant", "output")]

    def queryset(self, request, queryset):
        return queryset.filter(connection_id=self.value()) if self.value() else queryset


class MessageStateFilter(admin.SimpleListFilter):
    """The message's state as shown (queries.with_state_shown): in flight is a pending message a worker holds."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return OutboxMessage.State.choices

    def queryset(self, request, queryset):
        return queryset.filter(state_shown=self.value()) if self.value() else queryset
