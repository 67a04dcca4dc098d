"""`/health/` for load balancers (`/metrics` for Prometheus is in config.metrics).

It needs no login: 200 `{"database": "ok", "broker": "ok"}` when the database answers and the django-q2 broker
is reachable (Redis PING with REDIS_URL, else the ORM broker's table), 503 naming what is not.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


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
