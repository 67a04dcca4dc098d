"""Per-profile path: a profile update through the API until the partner sandbox holds the change.

A real `manage.py qcluster` runs as a subprocess; the sandbox runs in its own process. Each update is a
`POST /api/v1/profiles/bulk/` made in-process with DRF's APIClient (the full Django request cycle:
middleware, token auth, serializer, `upsert_profiles`, commit; no HTTP socket), that moves one member of the
"Premium or Trial" audience out (status Free) or back in (Premium). The clock stops when the sandbox's
inspection endpoint shows the member unsubscribed or subscribed again in the Mailchimp list: re-evaluation,
fan-out, the drain task through the broker, the claim, the partner call. Measured with the ORM broker
(which polls every Q_POLL seconds) and with Redis (REDIS_URL), each in a child process of its own.
"""

from __future__ import annotations

import statistics
import time

from bench import harness
from bench.harness import Figure

LIST = "benchpath01"


def measure(sandbox_url: str, connection_id: int, people: list, broker: str, warmup: int = 1) -> dict:
    """In a child process whose settings name the broker: start a qcluster, make the updates, time them."""
    import requests
    from django.contrib.auth import get_user_model
    from django_q.models import OrmQ
    from rest_framework.test import APIClient

    from staff.models import ApiToken

    OrmQ.objects.all().delete()  # nothing stale for the cluster to pick up first
    user, _ = get_user_model().objects.get_or_create(username="bench-integration")
    _, token = ApiToken.issue(user, "bench", "write")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    poll = requests.Session()
    state_url = f"{sandbox_url}/_sandbox/mailchimp/lists/{LIST}"

    def update(external_id, email, status, expect, timeout=30.0):
        started = time.perf_counter()
        response = api.post(
            "/api/v1/profiles/bulk/",
            {"profiles": [{"external_id": external_id, "attributes": {"status": status}}]},
            format="json",
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["memberships_added"] + body["memberships_removed"] == 1, body
        deadline = started + timeout
        while time.perf_counter() < deadline:
            member = poll.get(state_url, timeout=10).json()["members"].get(email)
            if member and member["status"] == expect:
                return time.perf_counter() - started
            time.sleep(0.005)
        raise TimeoutError(f"{email} did not become {expect} within {timeout:g} s")

    def round_trip(external_id, email, timeout=30.0):
        return [
            update(external_id, email, "Free", "unsubscribed", timeout),
            update(external_id, email, "Premium", "subscribed", timeout),
        ]

    latencies = []
    with harness.QCluster(name=f"qcluster-{broker}", stop_seconds=1) as cluster:
        cluster.wait_ready()
        for external_id, email in people[:warmup]:
            round_trip(external_id, email, timeout=90)  # first connections, imports, caches
        for external_id, email in people[warmup:]:
            latencies.extend(round_trip(external_id, email))
    return {"latencies": latencies}


def _setup(ctx, updates: int):
    """A Mailchimp connection on the refreshed audience (no backfill) and members with an email to move."""
    from django.db import connection

    from audiences.models import Audience, Identity, Membership
    from bench import refresh
    from connections.models import Connection
    from outputs.models import Output

    audience = Audience.objects.filter(name=refresh.AUDIENCE).first()
    if audience is None or not Membership.objects.filter(audience=audience).exists():
        harness.log("per-profile path needs the refreshed audience: running the refresh")
        if not ctx.run_piece("refresh"):  # it ran before, and a later piece (ingest) emptied the database since
            harness.child("bench.refresh:refresh_child", {"audience_id": refresh.prepare()})
        audience = Audience.objects.get(name=refresh.AUDIENCE)
    Connection.objects.filter(output__name="bench: path Mailchimp").delete()
    Output.objects.filter(name="bench: path Mailchimp").delete()
    sandbox = ctx.sandbox()
    client = sandbox.client()
    client.mailchimp_account(harness.MAILCHIMP_KEY)
    client.mailchimp_list(harness.MAILCHIMP_KEY, LIST, "bench: per-profile path")
    output = harness.mailchimp_output(sandbox.url, name="bench: path Mailchimp")
    conn = harness.connection(audience, output, {"list_id": LIST})
    pairs = (updates + 1) // 2 + 1
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT p.external_id, i.value FROM {Membership._meta.db_table} m "
            f"JOIN audiences_profile p ON p.id = m.profile_id "
            f"JOIN {Identity._meta.db_table} i ON i.profile_id = m.profile_id AND i.type = 'email' "
            f"WHERE m.audience_id = %s AND p.attributes ->> 'status' = 'Premium' ORDER BY m.profile_id LIMIT %s"
            if harness.vendor() == "postgresql"
            else f"SELECT p.external_id, i.value FROM {Membership._meta.db_table} m "
            f"JOIN audiences_profile p ON p.id = m.profile_id "
            f"JOIN {Identity._meta.db_table} i ON i.profile_id = m.profile_id AND i.type = 'email' "
            f"WHERE m.audience_id = %s AND json_extract(p.attributes, '$.status') = 'Premium' "
            f"ORDER BY m.profile_id LIMIT %s",
            [audience.pk, pairs],
        )
        people = cursor.fetchall()
    return sandbox, conn, people


def broker_label(broker: str) -> str:
    from django.conf import settings

    return f"ORM broker (Q_POLL {settings.Q_CLUSTER.get('poll', 0.5):g} s)" if broker == "orm" else "Redis broker"


def run(ctx) -> list[Figure]:
    updates = ctx.args.updates
    figures = []
    for broker in ctx.args.brokers:
        label = broker_label(broker)
        if broker == "redis" and not harness.redis_reachable(ctx.args.redis_url):
            note = f"not measured: Redis not reachable at {ctx.args.redis_url}"
            figures += [
                Figure(f"profile_path.redis.{k}", f"per-profile path {k}, {label}", None, "ms", note=note)
                for k in ("median", "p95")
            ]
            continue
        sandbox, conn, people = _setup(ctx, updates)
        env = {"REDIS_URL": ""}
        if broker == "redis":
            import redis

            redis.Redis.from_url(ctx.args.redis_url).flushdb()
            env = {"REDIS_URL": ctx.args.redis_url}
        result = harness.child(
            "bench.profile_path:measure",
            {"sandbox_url": sandbox.url, "connection_id": conn.pk, "people": people, "broker": broker},
            env=env,
        )
        ms = sorted(x * 1000 for x in result["latencies"])[:updates]
        median = statistics.median(ms)
        p95 = ms[min(len(ms) - 1, int(round(0.95 * len(ms))) - 1)]
        harness.log(f"per-profile path ({broker}): median {median:.0f} ms, p95 {p95:.0f} ms over {len(ms)}")
        ctx.state[f"path_{broker}"] = ms
        note = f"{len(ms)} updates (half leave, half rejoin); max {ms[-1]:.0f} ms"
        figures += [
            Figure(
                f"profile_path.{broker}.median",
                f"per-profile path median, {label}",
                median,
                "ms",
                target="< 1000 ms",
                ok=median < 1000,
                note=note,
            ),
            Figure(
                f"profile_path.{broker}.p95",
                f"per-profile path p95, {label}",
                p95,
                "ms",
                target="< 2000 ms",
                ok=p95 < 2000,
            ),
        ]
    return figures
