"""Operations endpoints: `/health/` for load balancers and `/metrics` for Prometheus.

`/health/` needs no login: 200 `{"database": "ok", "broker": "ok"}` when the database answers and the
django-q2 broker is reachable (Redis PING with REDIS_URL, else the ORM broker's table), 503 naming what is
not. `/metrics` is the Prometheus text format and requires `Authorization: Bearer <token>` with the
METRICS_TOKEN setting (or environment variable). Without a token it is served only with DEBUG on (a
developer's machine): its labels name every audience and output, and a forgotten token must not publish them.
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
import statistics

from django.conf import settings
from django.db import connection
from django.db.models import Count, Min
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

LATENCY_WINDOW = dt.timedelta(hours=1)
QUANTILES = (0.5, 0.95, 0.99)
WAITING = ("pending", "in_flight")
NO_TOKEN = (
    "Metrics are not served without a token: set METRICS_TOKEN and scrape /metrics with "
    "Authorization: Bearer <token>.\n"
)


# --- health -----------------------------------------------------------------------------------------------


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any failure to get an answer is "unreachable" to a load balancer
        return f"unreachable ({type(exc).__name__})"
    return "ok"


def _broker() -> str:
    redis_url = getattr(settings, "REDIS_URL", "")
    if redis_url:
        try:
            import redis

            redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2).ping()
        except Exception as exc:
            return f"unreachable (Redis: {type(exc).__name__})"  # never the URL: it may carry a password
        return "ok"
    try:
        from django_q.models import OrmQ

        OrmQ.objects.exists()
    except Exception as exc:
        return f"unreachable (ORM broker table: {type(exc).__name__})"
    return "ok"


@never_cache
@require_GET
def health(request):
    checks = {"database": _database(), "broker": _broker()}
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse(checks, status=200 if healthy else 503)


# --- metrics ----------------------------------------------------------------------------------------------


def metrics_token() -> str:
    token = getattr(settings, "METRICS_TOKEN", None)
    return os.environ.get("METRICS_TOKEN", "") if token is None else (token or "")


def _authorized(request) -> bool:
    token = metrics_token()
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels) -> str:
    return "{" + ",".join(f'{k}="{_label(v)}"' for k, v in labels.items()) + "}"


class _Exposition:
    def __init__(self):
        self.lines = []

    def family(self, name, kind, help_text, samples):
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for suffix, labels, value in samples:
            self.lines.append(f"{name}{suffix}{labels} {_number(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _number(value) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, float):
        return repr(round(value, 6))
    return str(value)


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


def render_metrics() -> str:
    from connections.models import Connection, OutboxMessage

    now = timezone.now()
    conns = list(Connection.objects.select_related("audience", "output").order_by("pk"))
    labels = {
        c.pk: _labels(connection=c.pk, audience=c.audience.name, output=c.output.name, partner=c.output.kind)
        for c in conns
    }
    waiting = {
        row["connection_id"]: row
        for row in OutboxMessage.objects.filter(state__in=WAITING)
        .values("connection_id")
        .annotate(n=Count("id"), oldest=Min("created_at"))
    }
    out = _Exposition()
    out.family(
        "relay_outbox_waiting_messages",
        "gauge",
        "Messages waiting to be sent (pending or in flight), per connection.",
        [("", labels[c.pk], waiting.get(c.pk, {}).get("n", 0)) for c in conns],
    )
    out.family(
        "relay_outbox_oldest_waiting_seconds",
        "gauge",
        "Age of the oldest waiting message, per connection (0 when none waits).",
        [
            ("", labels[c.pk], max(0.0, (now - waiting[c.pk]["oldest"]).total_seconds()) if c.pk in waiting else 0)
            for c in conns
        ],
    )
    for name, field, help_text in (
        ("relay_messages_sent_total", "sent_count", "Messages sent to the partner, per connection."),
        ("relay_messages_delivered_total", "accepted_count", "Messages the partner accepted, per connection."),
        ("relay_messages_rejected_total", "rejected_count", "Messages the partner rejected for good, per connection."),
        ("relay_messages_failed_total", "failed_count", "Messages given up after the retry window, per connection."),
    ):
        out.family(name, "counter", help_text, [("", labels[c.pk], getattr(c, field)) for c in conns])
    latency = _latencies(now - LATENCY_WINDOW)
    samples = []
    for c in conns:
        stats = latency.get(c.pk)
        if not stats:
            continue
        base = labels[c.pk][:-1]
        for q, value in zip(QUANTILES, stats["quantiles"], strict=True):
            samples.append(("", f'{base},quantile="{q:g}"}}', value))
        samples.append(("_sum", labels[c.pk], stats["sum"]))
        samples.append(("_count", labels[c.pk], stats["count"]))
    out.family(
        "relay_partner_latency_seconds",
        "summary",
        "Time to send one batch to the partner and record it, per connection, over the last hour.",
        samples,
    )
    by_status = {s: 0 for s in Connection.Status.values}
    for c in conns:
        by_status[c.status] = by_status.get(c.status, 0) + 1
    out.family(
        "relay_connections_faulted",
        "gauge",
        "Connections stopped by a fault (bad credentials, missing list, …) until someone resumes them.",
        [("", "", by_status.get(Connection.Status.FAULTED, 0))],
    )
    out.family(
        "relay_connections",
        "gauge",
        "Connections by status.",
        [("", _labels(status=status), n) for status, n in sorted(by_status.items())],
    )
    return out.text()


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
    return HttpResponse(render_metrics(), content_type="text/plain; version=0.0.4; charset=utf-8")
