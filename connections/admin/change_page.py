"""The read-only parts of a connection's change page: links, status, verification, size funnel, counters."""

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from audiences.variants import sizes as variant_sizes
from connections import last_problem, reverify, services, timing
from connections.admin.html import ago, badge, render, status_html, table
from connections.admin.operations import OPERATIONS
from connections.models import Connection
from connections.queries import pending_of
from staff import dates, links


class ChangePageParts:
    """ModelAdmin mixin: the display methods behind the change page's read-only fields."""

    @admin.display(description="output")
    def output_name(self, conn):
        another = reverse("admin:connections_connection_add")
        return format_html('{} ({}) <a href="{}">choose another output</a>', conn.output.name,
                           conn.output.partner.name, another)  # fmt: skip

    @admin.display(description="audience")
    def audience_link(self, conn):
        if conn.variant_id:
            v = conn.variant
            size = variant_sizes(conn.audience).get(v.pk, 0)
            return format_html("{}, variant {} ({}%: {} of its {} members)", links.link(conn.audience), v.name,
                               v.percent, f"{size:,}", f"{conn.audience.size:,}")  # fmt: skip
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
        return render("connection/settings_values.html", rows=rows)

    @admin.display(description="operations")
    def operations(self, conn):
        buttons = [(reverse("admin:connections_connection_operate", args=[conn.pk, op]), OPERATIONS[op].title)
                   for op in getattr(conn, "operations_allowed", ()) if OPERATIONS[op].applies(conn)]  # fmt: skip
        return render("connection/operation_buttons.html", buttons=buttons)

    @admin.display(description="status")
    def verification_detail(self, conn):
        # The "Verify now" button is among the page's object tools, outside the change form (see the template).
        status = conn.verification_status
        if status == Connection.Verification.UNVERIFIED:
            return render("connection/verification.html", unverified=True, badge=badge(status))
        if reverify.is_stale(conn):
            # The last verdict judged settings or a state that changed since: it is not shown as the current one.
            return render(
                "connection/verification.html",
                badge=badge(status, "re-checking…"),
                waiting=reverify.waiting_sentence(conn),
            )
        return render(
            "connection/verification.html",
            badge=badge(status),
            ago=ago(conn.verified_at),
            when=dates.when(conn.verified_at),
            checks=[{**check, "badge": badge(check["status"])} for check in conn.verification_checks],
        )

    @admin.display(description="size funnel")
    def size_funnel(self, conn):
        """Why the partner holds fewer than the audience, step by step, with a bar per step."""
        funnel = services.funnel(conn)
        top = max(funnel.steps[0].count or 0, 1)
        steps = [
            {
                "name": step.name,
                "width": None if step.count is None else min(100, round(100 * step.count / top)),
                "count": "–" if step.count is None else f"{step.count:,}",
                "lost": f"−{step.lost:,}" if step.lost else "",
                "reason": step.reason,
            }
            for step in funnel.steps
        ]
        return render("connection/funnel.html", summary=funnel.summary, steps=steps)

    @admin.display(description="messages")
    def counters(self, conn):
        headers = ["pending", "sent", "accepted", "rejected", "failed", "no accepted identity"]
        row = [pending_of(conn), conn.sent_count, conn.accepted_count, conn.rejected_count, conn.failed_count,
               conn.unaccepted_count]  # fmt: skip
        return table(headers, [[f"{n:,}" for n in row]])

    @admin.display(description="next upload")
    def next_upload(self, conn):
        return timing.next_upload(conn, pending_of(conn))

    @admin.display(description="last error")
    def last_error_full(self, conn):
        problem = last_problem.of(conn)
        if problem is None:
            return "None."
        return render(
            "connection/last_error.html", problem=problem, since=problem.since[:1].upper() + problem.since[1:]
        )
