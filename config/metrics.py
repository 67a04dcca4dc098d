"""`/metrics` for Prometheus: forwarding per connection, read from the database at each scrape.

It requires `Authorization: Bearer <token>` with the METRICS_TOKEN setting (or environment variable). Without a
token it is served only with DEBUG on (a developer's machine): its labels name every audience and output, and a
forgotten token must not publish them.

The numbers are the database's, not this process's: every worker process and every machine answers a scrape
with the same values, so the collector keeps no counters of its own and reads them all in a few queries.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import statistics

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min
from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

LATENCY_WINDOW = dt.timedelta(hours=1)
QUANTILES = (0.5, 0.95, 0.99)
LABELS = ("connection", "audience", "output", "partner")
COUNTERS = (
    ("relay_messages_sent", "sent_count", "Messages sent to the partner, per connection."),
    ("relay_messages_delivered", "accepted_count", "Messages the partner accepted, per connection."),
    ("relay_messages_rejected", "rejected_count", "Messages the partner rejected for good, per connection."),
    ("relay_messages_failed", "failed_count", "Messages given up after the retry window, per connection."),
)
NO_TOKEN = (
    "Metrics are not served without a token: set METRICS_TOKEN and scrape /metrics with "
    "Authorization: Bearer <token>.\n"
)


def _latencies(since) -> dict[int, dict]:
    """Per connection: quantiles, sum and count of delivery durations (seconds) since `since`."""
    from connections.models import Delivery

    table = Delivery._meta.db_table
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT connection_id, percentile_cont(%s::float8[]) WITHIN GROUP (ORDER BY duration_ms), "
                f"SUM(duration_ms), COUNT(*) FROM {table} WHERE started_at >= %s GROUP BY connection_id",
                [list(QUANTILES), since],
            )
            return {
                cid: {"quantiles": [q / 1000 for q in qs], "sum": total / 1000, "count": n}
                for cid, qs, total, n in cursor.fetchall()
            }
    # SQLite has no percentile function: an hour of one machine's deliveries is small enough to sort here.
    durations = {}
    for cid, ms in Delivery.objects.filter(started_at__gte=since).values_list("connection_id", "duration_ms"):
        durations.setdefault(cid, []).append(ms / 1000)
    result = {}
    for cid, values in durations.items():
        values.sort()
        result[cid] = {
            "quantiles": [_quantile(values, q) for q in QUANTILES],
            "sum": sum(values),
            "count": len(values),
        }
    return result


def _quantile(values, q):
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[round(q * 1000) - 1]


class ForwardingCollector(Collector):
    """The outbox, the delivery counters, partner latency and connection states, as of this scrape."""

    def collect(self):
        from connections.models import Connection, OutboxMessage

        now = timezone.now()
        conns = list(Connection.objects.select_related("audience", "output").order_by("pk"))
        labels = {c.pk: [str(c.pk), c.audience.name, c.output.name, c.output.kind] for c in conns}
        waiting = {
            row["connection_id"]: row
            for row in OutboxMessage.objects.filter(state__in=OutboxMessage.WAITING)
            .values("connection_id")
            .annotate(n=Count("id"), oldest=Min("created_at"))
        }

        family = GaugeMetricFamily(
            "relay_outbox_waiting_messages",
            "Messages waiting to be sent (pending or in flight), per connection.",
            labels=LABELS,
        )
        for c in conns:
            family.add_metric(labels[c.pk], waiting.get(c.pk, {}).get("n", 0))
        yield family

        family = GaugeMetricFamily(
            "relay_outbox_oldest_waiting_seconds",
            "Age of the oldest waiting message, per connection (0 when none waits).",
            labels=LABELS,
        )
        for c in conns:
            oldest = waiting[c.pk]["oldest"] if c.pk in waiting else None
            family.add_metric(labels[c.pk], max(0.0, (now - oldest).total_seconds()) if oldest else 0)
        yield family

        for name, field, help_text in COUNTERS:
            family = CounterMetricFamily(name, help_text, labels=LABELS)
            for c in conns:
                family.add_metric(labels[c.pk], getattr(c, field))
            yield family

        # A summary's quantiles are samples of the family itself with a `quantile` label; the library's
        # SummaryMetricFamily writes only _sum and _count, so the samples are added here.
        name = "relay_partner_latency_seconds"
        family = Metric(
            name, "Time to send one batch to the partner and record it, per connection, over the last hour.", "summary"
        )
        latency = _latencies(now - LATENCY_WINDOW)
        for c in conns:
            stats = latency.get(c.pk)
            if not stats:
                continue
            own = dict(zip(LABELS, labels[c.pk], strict=True))
            for q, value in zip(QUANTILES, stats["quantiles"], strict=True):
                family.add_sample(name, {**own, "quantile": f"{q:g}"}, round(value, 6))
            family.add_sample(f"{name}_sum", own, stats["sum"])
            family.add_sample(f"{name}_count", own, stats["count"])
        yield family

        by_status = dict.fromkeys(Connection.Status.values, 0)
        for c in conns:
            by_status[c.status] = by_status.get(c.status, 0) + 1
        yield GaugeMetricFamily(
            "relay_connections_faulted",
            "Connections stopped by a fault (bad credentials, missing list, …) until someone resumes them.",
            value=by_status.get(Connection.Status.FAULTED, 0),
        )
        family = GaugeMetricFamily("relay_connections", "Connections by status.", labels=["status"])
        for status, n in sorted(by_status.items()):
            family.add_metric([status], n)
        yield family


# Our own registry, not the library's default one: that one also carries this process's Python and GC figures,
# which differ from one worker process to the next behind the same URL.
REGISTRY = CollectorRegistry()
REGISTRY.register(ForwardingCollector())


def metrics_token() -> str:
    token = getattr(settings, "METRICS_TOKEN", None)
    return os.environ.get("METRICS_TOKEN", "") if token is None else (token or "")


def _authorized(request) -> bool:
    token = metrics_token()
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def metrics(request):
    if not metrics_token() and not settings.DEBUG:
        return HttpResponse(NO_TOKEN, status=403, content_type="text/plain; charset=utf-8")
    if not _authorized(request):
        response = HttpResponse(
            "Unauthorized: send Authorization: Bearer <METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    # The 0.0.4 text format, which every Prometheus reads; generate_latest writes it.
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_PLAIN_0_0_4)
