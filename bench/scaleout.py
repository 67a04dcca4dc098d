"""Scale-out: two `qcluster` processes against PostgreSQL and Redis share the forwarding work.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench python bench/scaleout.py [--messages 200000]

Several Mailchimp connections on one output (one API key, so one 10-request allowance shared by every
worker) each get a backlog; two clusters with two workers each drain them through the Redis broker, with
DRAIN_MAX_SECONDS short so drains hand their slots on and the tasks move between clusters. It then shows:
- the work is shared: batches drained by each cluster (the drain tasks' results name the worker process,
  mapped to its cluster by process group);
- no message is sent twice: the sandbox saw no duplicate write, and every list holds its backlog;
- the per-output limit holds across both: the sandbox saw at most 10 Mailchimp requests at once.
tests/ops/test_scaleout.py runs a smaller one.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402

AUDIENCE = "bench: scale-out"


def kick(ids: list[int]) -> dict:
    """In a child process configured for Redis: queue one drain task per connection, as fan-out does."""
    from connections.tasks import request_drain

    return {"queued": request_drain(ids, force=True)}


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def run_scaleout(
    sandbox,
    redis_url: str,
    connections: int = 4,
    messages: int = 100_000,
    clusters: int = 2,
    workers: int = 2,
    drain_max_seconds: int = 1,
    timeout: float = 600,
) -> dict:
    """Set up, run the clusters until every message is delivered, and return what happened."""
    import redis
    from django.db.models import Count

    from audiences.models import Audience
    from bench import forward
    from connections.models import Connection, OutboxMessage
    from outputs.models import Output

    client = sandbox.client()
    client.reset()
    redis.Redis.from_url(redis_url).flushdb()
    Connection.objects.filter(audience__name=AUDIENCE).delete()
    Output.objects.filter(name="bench: scale-out Mailchimp").delete()
    audience, _ = Audience.objects.get_or_create(name=AUDIENCE, defaults={"kind": "static"})
    output = harness.mailchimp_output(sandbox.url, name="bench: scale-out Mailchimp")
    conns, each = [], messages // connections
    for n in range(connections):
        list_id = f"scaleout{n:02d}"
        client.mailchimp_list(harness.MAILCHIMP_KEY, list_id, f"scale-out {n}")
        conn = harness.connection(audience, output, {"list_id": list_id})
        forward.queue_messages(conn.pk, "email", each, f"so{n}-", "@bench.example.com")
        conns.append(conn)
    from django.conf import settings

    env = {
        # The clusters read the outputs' secrets with this process's keys (without keys, the development
        # key derived from SECRET_KEY, which only a DEBUG process may use).
        "DEBUG": "false" if settings.SECRETS_ENCRYPTION_KEYS else "true",
        "SECRET_KEY": settings.SECRET_KEY,
        "SECRETS_ENCRYPTION_KEYS": ",".join(settings.SECRETS_ENCRYPTION_KEYS),
        "DATABASE_URL": _database_url(),
        "REDIS_URL": redis_url,
        "DRAIN_MAX_SECONDS": str(drain_max_seconds),
        "SLOT_WAIT_SECONDS": "5",
        "LOG_LEVEL": os.environ.get("SCALEOUT_LOG_LEVEL", "WARNING"),
    }
    waiting = OutboxMessage.objects.filter(connection__in=conns, state__in=OutboxMessage.WAITING)
    started = time.perf_counter()
    running = [harness.QCluster(env=env, workers=workers, name=f"scaleout-{n}") for n in range(clusters)]
    for cluster in running:
        cluster.__enter__()
    try:
        for cluster in running:
            cluster.wait_ready()
        harness.child("bench.scaleout:kick", {"ids": [c.pk for c in conns]}, env=env)
        deadline = time.monotonic() + timeout
        while waiting.exists():
            if time.monotonic() > deadline:
                detail = list(waiting.values_list("connection_id", "state").annotate(n=Count("id")))
                queued = list(
                    Connection.objects.filter(pk__in=[c.pk for c in conns]).values_list(
                        "pk", "status", "drain_queued_at"
                    )
                )
                raise TimeoutError(f"messages still waiting after {timeout:g} s: {detail}; connections {queued}")
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        by_cluster = _batches_by_cluster(running, [c.pk for c in conns])
    finally:
        for cluster in running:
            cluster.__exit__(None, None, None)
    stats = client.stats()
    held = {c.settings["list_id"]: client.mailchimp_list_state(c.settings["list_id"])["member_count"] for c in conns}
    delivered = dict(OutboxMessage.objects.filter(connection__in=conns).values_list("state").annotate(n=Count("id")))
    return {
        "messages": each * connections,
        "connections": connections,
        "seconds": seconds,
        "batches_by_cluster": by_cluster,
        "duplicates": stats["duplicates"]["mailchimp"],
        "max_concurrent": stats["max_concurrent"]["mailchimp"],
        "requests": stats["requests"]["mailchimp"],
        "held": held,
        "states": delivered,
    }


def _batches_by_cluster(running, connection_ids, settle_seconds: float = 10) -> dict[str, int]:
    """Batches per cluster from the drain tasks' results (worker host:pid → the cluster's process group)."""
    from django_q.models import Success

    groups = {cluster.process.pid: f"cluster {n + 1}" for n, cluster in enumerate(running)}
    deadline = time.monotonic() + settle_seconds
    totals, seen = {name: 0 for name in groups.values()}, set()
    while True:
        tasks = Success.objects.filter(func="connections.tasks.drain_connection").exclude(pk__in=seen)
        for task in tasks:
            seen.add(task.pk)
            result = task.result or {}
            if not task.args or task.args[0] not in connection_ids or not result.get("batches"):
                continue
            pid = int(str(result.get("worker", ":0")).rsplit(":", 1)[-1])
            try:
                group = groups.get(os.getpgid(pid), f"other ({pid})")
            except ProcessLookupError:
                group = f"gone ({pid})"
            totals[group] = totals.get(group, 0) + result["batches"]
        # The monitor saves results a moment after the last batch: wait until they add up.
        from connections.models import Delivery

        if sum(totals.values()) >= Delivery.objects.filter(connection_id__in=connection_ids).count():
            return totals
        if time.monotonic() > deadline:
            return totals
        time.sleep(0.25)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--messages", type=int, default=200_000)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"))
    args = p.parse_args()
    url = os.environ.get("DATABASE_URL") or harness.DEFAULT_URL
    if not harness.is_postgres(url):
        raise SystemExit("scale-out needs PostgreSQL (DATABASE_URL=postgres://…): SQLite is one machine's database")
    if not harness.redis_reachable(args.redis_url):
        raise SystemExit(f"scale-out needs Redis: nothing answers at {args.redis_url}")
    harness.prepare(url)
    sandbox = harness.SandboxProcess()
    sandbox.start()
    try:
        r = run_scaleout(sandbox, args.redis_url, connections=args.connections, messages=args.messages)
    finally:
        sandbox.stop()
    print(
        f"{r['messages']:,} messages over {r['connections']} Mailchimp connections of one output, "
        f"2 qclusters × 2 workers, Redis broker: {r['seconds']:.1f} s "
        f"({r['messages'] / r['seconds']:,.0f} ids/s)"
    )
    for name, batches in sorted(r["batches_by_cluster"].items()):
        print(f"  {name}: {batches:,} batches")
    print(
        f"  requests {r['requests']:,}; duplicates at the partner: {r['duplicates']}; "
        f"most Mailchimp requests at once: {r['max_concurrent']} (limit 10)"
    )
    print(f"  lists hold: {', '.join(f'{k} {v:,}' for k, v in r['held'].items())}; outbox: {r['states']}")
    shared = sum(1 for b in r["batches_by_cluster"].values() if b) >= 2
    ok = shared and r["duplicates"] == 0 and r["max_concurrent"] <= 10
    ok = ok and all(v == r["messages"] // r["connections"] for v in r["held"].values())
    print("OK: shared, no duplicates, limit held" if ok else "NOT OK")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
