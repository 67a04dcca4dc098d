"""Forwarding: drain Mailchimp (batches of 500, ≤ 10 concurrent requests) and Braze (batches of 75) backlogs
into the partner sandbox running in its own process, beside a bare loop.

Engine: `connections.drain.drain(connection_id)` in a child process (a worker's view: its own interpreter,
its peak RSS is the worker's), over a backlog of N pending messages written straight into the outbox
(synthetic addresses: 1,000,000 Mailchimp messages need more emails than the seeded profiles hold).
Raw limit: a bare loop in a child process that POSTs the same pre-built request bodies to the same sandbox
with the same concurrency (`requests`, one session per thread, 10 threads). The sandbox is reset before
each run, so both start from an empty list.
"""

from __future__ import annotations

import json
import threading
import time

from bench import harness
from bench.harness import Figure

LIST = "benchfwd01"
AUDIENCE = "bench: forwarding"
BRAZE_ATTRIBUTE = "relay_audiences"


def email(n: int) -> str:
    return f"fwd{n}@bench.example.com"


def customer_id(n: int) -> str:
    return f"CUST-fwd-{n:08d}"


# --- children ---------------------------------------------------------------------------------------------


def bare_loop(url: str, partner: str, count: int, batch: int, concurrency: int) -> dict:
    """POST pre-built batches with `concurrency` threads, one requests session each."""
    import requests

    if partner == "mailchimp":
        endpoint = f"{url}/mailchimp/us6/3.0/lists/{LIST}"
        auth = requests.auth._basic_auth_str("relay", harness.MAILCHIMP_KEY)

        def body(start, stop):
            members = [
                {"email_address": email(n), "status": "subscribed", "email_type": "html"} for n in range(start, stop)
            ]
            return {"members": members, "update_existing": True}
    else:
        endpoint = f"{url}/braze/users/track"
        auth = f"Bearer {harness.BRAZE_KEY}"

        def body(start, stop):
            return {
                "attributes": [
                    {"external_id": customer_id(n), BRAZE_ATTRIBUTE: {"add": [AUDIENCE]}} for n in range(start, stop)
                ]
            }

    bodies = [json.dumps(body(s, min(s + batch, count))).encode() for s in range(0, count, batch)]
    headers = {"Authorization": auth, "Content-Type": "application/json"}
    pending = iter(bodies)
    lock = threading.Lock()
    failures = []

    def worker():
        session = requests.Session()
        while True:
            with lock:
                data = next(pending, None)
            if data is None:
                return
            response = session.post(endpoint, data=data, headers=headers, timeout=60)
            if response.status_code >= 300:
                failures.append(response.status_code)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "requests": len(bodies), "failures": len(failures)}


def drain_child(connection_id: int) -> dict:
    from connections.drain import drain

    started = time.perf_counter()
    report = drain(connection_id, max_seconds=7200)
    seconds = time.perf_counter() - started
    return {**report.as_dict(), "wall_seconds": seconds}


# --- setup ------------------------------------------------------------------------------------------------


def fresh_outbox() -> None:
    from connections.models import Delivery, OutboxLease, OutboxMessage, OutputSlot

    tables = [m._meta.db_table for m in (OutboxMessage, OutboxLease, Delivery, OutputSlot)]
    if harness.vendor() == "postgresql":
        harness.execute(f"TRUNCATE {', '.join(tables)}")
    else:
        for table in tables:
            harness.execute(f"DELETE FROM {table}")


def queue_messages(
    connection_id: int, identity_type: str, count: int, prefix: str, suffix: str = "", width: int = 0
) -> None:
    """`count` pending add messages with values prefix + n (zero-padded to `width`) + suffix, in one statement."""
    from django.db import connection
    from django.utils import timezone

    from connections.models import OutboxMessage

    now = connection.ops.adapt_datetimefield_value(timezone.now())
    columns = (
        "connection_id, identity_type, value, action, state, attempts, next_attempt_at, created_at, updated_at, "
        "last_error, forget_after_delivery"
    )
    if harness.vendor() == "postgresql":
        number = f"lpad(g.n::text, {width}, '0')" if width else "g.n::text"
        source = "generate_series(0, %s - 1) g(n)"
    else:
        number = f"substr('{'0' * width}' || g.n, -{width})" if width else "g.n"
        source = "(WITH RECURSIVE s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s WHERE n < %s - 1) SELECT n FROM s) g"
    sql = (
        f"INSERT INTO {OutboxMessage._meta.db_table} ({columns}) "
        f"SELECT %s, %s, %s || {number} || %s, 'add', '{OutboxMessage.State.PENDING}', 0, "
        f"%s, %s, %s, '', %s FROM {source}"
    )
    harness.execute(sql, [connection_id, identity_type, prefix, suffix, now, now, now, False, count])


def _static_audience():
    from audiences.models import Audience

    audience, _ = Audience.objects.get_or_create(name=AUDIENCE, defaults={"kind": "static"})
    return audience


def _fresh_connection(kind: str, sandbox_url: str):
    from connections.models import Connection
    from outputs.models import Output

    fresh_outbox()
    Connection.objects.filter(audience__name=AUDIENCE).delete()
    Output.objects.filter(name__startswith="bench: forwarding").delete()
    audience = _static_audience()
    if kind == "mailchimp":
        output = harness.mailchimp_output(sandbox_url, name="bench: forwarding Mailchimp")
        return harness.connection(audience, output, {"list_id": LIST})
    output = harness.braze_output(sandbox_url, name="bench: forwarding Braze")
    return harness.connection(
        audience, output, {"membership": "array", "attribute_name": BRAZE_ATTRIBUTE, "identifier": "external_id"}
    )


def _partner_side(sandbox, kind: str) -> int:
    """What the sandbox holds: Mailchimp's member count (through its API), Braze's tagged users."""
    import requests

    if kind == "mailchimp":
        response = requests.get(
            f"{sandbox.url}/mailchimp/us6/3.0/lists/{LIST}", auth=("relay", harness.MAILCHIMP_KEY), timeout=60
        )
        return response.json()["stats"]["member_count"]
    users = sandbox.client().braze_users()["users"]
    return sum(1 for u in users.values() if AUDIENCE in (u.get(BRAZE_ATTRIBUTE) or []))


def _reset_sandbox(sandbox, kind: str) -> None:
    client = sandbox.client()
    client.reset()
    if kind == "mailchimp":
        client.mailchimp_list(harness.MAILCHIMP_KEY, LIST, "bench")
    else:
        client.braze_key(harness.BRAZE_KEY)


def measure(ctx, kind: str, count: int) -> dict:
    sandbox = ctx.sandbox()
    batch, concurrency = (500, 10) if kind == "mailchimp" else (75, 10)
    _reset_sandbox(sandbox, kind)
    raw = harness.child(
        "bench.forward:bare_loop",
        {"url": sandbox.url, "partner": kind, "count": count, "batch": batch, "concurrency": concurrency},
    )
    assert raw["failures"] == 0, raw
    raw_rate = count / raw["seconds"]

    _reset_sandbox(sandbox, kind)
    conn = _fresh_connection(kind, sandbox.url)
    if kind == "mailchimp":
        queue_messages(conn.pk, "email", count, "fwd", "@bench.example.com")
    else:
        queue_messages(conn.pk, "customer_id", count, "CUST-fwd-", width=8)
    harness.settle()
    report = harness.child("bench.forward:drain_child", {"connection_id": conn.pk})
    stats = sandbox.client().stats()
    held = _partner_side(sandbox, kind)
    rate = report["accepted"] / report["wall_seconds"]
    result = {
        "kind": kind,
        "count": count,
        "rate": rate,
        "raw_rate": raw_rate,
        "seconds": report["wall_seconds"],
        "raw_seconds": raw["seconds"],
        "accepted": report["accepted"],
        "batches": report["batches"],
        "held": held,
        "duplicates": stats["duplicates"][kind],
        "max_concurrent": stats["max_concurrent"][kind],
        "peak_rss_mb": report["peak_rss_mb"],
    }
    harness.log(
        f"forward {kind} {count:,}: {rate:,.0f} ids/s (raw {raw_rate:,.0f}), held {held:,}, "
        f"max concurrent {result['max_concurrent']}, duplicates {result['duplicates']}, "
        f"peak RSS {report['peak_rss_mb']:.0f} MB"
    )
    assert report["accepted"] == count and held == count, result
    return result


def run(ctx) -> list[Figure]:
    figures = []
    for count in ctx.args.messages:
        r = measure(ctx, "mailchimp", count)
        ctx.state.setdefault("drains", {})[count] = r
        ok = r["rate"] >= 20_000 and r["rate"] >= 0.5 * r["raw_rate"] and r["max_concurrent"] <= 10
        figures.append(
            Figure(
                f"forward.mailchimp.{count}",
                f"forward {count:,} Mailchimp messages (500/batch, ≤10 concurrent)",
                r["rate"],
                "ids/s",
                r["raw_rate"],
                "bare loop",
                better="higher",
                target="≥ 20,000 ids/s and ≥ 50% of raw",
                ok=ok,
                note=f"{r['seconds']:.1f} s; sandbox holds {r['held']:,}, max {r['max_concurrent']} concurrent, "
                f"{r['duplicates']} duplicates",
                extra=r,
            )
        )
    if not ctx.args.braze_messages:
        return figures
    r = measure(ctx, "braze", ctx.args.braze_messages)
    figures.append(
        Figure(
            f"forward.braze.{ctx.args.braze_messages}",
            f"forward {ctx.args.braze_messages:,} Braze messages (75/batch, ≤10 concurrent)",
            r["rate"],
            "ids/s",
            r["raw_rate"],
            "bare loop",
            better="higher",
            target="≥ 50% of raw",
            ok=r["rate"] >= 0.5 * r["raw_rate"],
            note=f"{r['seconds']:.1f} s; sandbox holds {r['held']:,}, max {r['max_concurrent']} concurrent",
            extra=r,
        )
    )
    return figures
