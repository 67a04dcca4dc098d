"""Deliveries: one record per batch sent to a partner."""

from django.contrib import admin

from connections.admin.filters import ConnectionListFilter
from connections.admin.readonly import ReadOnlyAdmin
from connections.models import Delivery
from staff import cells


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
