"""The outbox: every message queued for a partner, its state and its next attempt."""

from django.contrib import admin
from django.utils.html import format_html

from audiences.permissions import IdentityPagesAdmin
from connections.admin.filters import ConnectionListFilter, IdentityTypeFilter, MessageStateFilter
from connections.admin.readonly import ReadOnlyAdmin
from connections.models import OutboxMessage
from connections.queries import candidate_values, with_state_shown
from staff import cells, dates


@admin.register(OutboxMessage)
class OutboxMessageAdmin(IdentityPagesAdmin, ReadOnlyAdmin):
    # One column for when (the next attempt of a waiting message, the last change of the others) keeps every
    # column on screen from 1280 px up.
    list_display = ["id", "connection", "type", "value", "action", "state_now", "attempts", "when", "error"]
    list_filter = [MessageStateFilter, ConnectionListFilter, IdentityTypeFilter, "action"]
    list_select_related = ["connection__audience", "connection__output"]
    search_fields = ["value"]
    search_help_text = "An identity value as typed (an email address is found whatever its case)."
    ordering = ["-id"]
    readonly_fields = ["state_now"]

    def get_fields(self, request, obj=None):
        # The message's page shows the state the list shows, not the stored one.
        fields = [f for f in super().get_fields(request, obj) if f != "state_now"]
        return ["state_now" if f == "state" else f for f in fields]

    def get_queryset(self, request):
        return with_state_shown(super().get_queryset(request))

    # Not named `state`: a model field of that name would be shown instead (Django prefers the field), and a
    # message a worker holds would read "Pending". Sorted by the state shown, so those sort as in flight.
    @admin.display(description="state", ordering="state_shown")
    def state_now(self, message):
        return OutboxMessage.State(message.state_shown).label

    def get_search_results(self, request, queryset, search_term):
        if not search_term.strip():
            return queryset, False
        return queryset.filter(value__in=candidate_values(search_term)), False

    @admin.display(description="type", ordering="identity_type")
    def type(self, message):
        return message.get_identity_type_display()

    @admin.display(description="when", ordering="updated_at")
    def when(self, message):
        """A waiting message's next attempt ("next 3 Dec 2026, 09:47:03"), any other's last change (a message in
        flight is not waiting for its next attempt: it is being sent)."""
        if message.state_shown == OutboxMessage.State.PENDING:
            return format_html("next {}", dates.when(message.next_attempt_at))
        return dates.when(message.updated_at)

    @admin.display(description="last error")
    def error(self, message):
        return cells.clip(message.last_error, 9)
