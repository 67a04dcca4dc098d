"""Partner faults: 30% of partner requests fail (5xx, 429 with Retry-After, a timeout, a dropped connection)
while two workers drain a Mailchimp and a Braze backlog; every message must still be delivered.

Figures: the share of messages delivered at their first attempt, the retries (extra attempts), and the
time to drain. A timed-out request that the partner applied after the worker gave up is sent again, so the
sandbox's repeat count is shown too.
"""

from __future__ import annotations

import time

from bench import harness
from bench.harness import Figure
from soak import scene

# Each kind takes an equal part of the failing share; the sandbox tries its faults in order, so each
# probability is the kind's share of the requests the earlier ones left alone.
KINDS = (
    {"kind": "status", "status": 503},
    {"kind": "status", "status": 429, "retry_after": 1},
    {"kind": "timeout", "delay": 4},
    {"kind": "drop"},
)
TIMEOUT_SECONDS = "2"  # PARTNER_HTTP_TIMEOUT in the workers: below the timeout fault's hold


def install_faults(client, share: float, seed: int = 8) -> None:
    part, left = share / len(KINDS), 1.0
    for n, spec in enumerate(KINDS):
        client.fault("*", probability=min(1.0, part / left), seed=seed + n, **spec)
        left -= part


def run_faults(sandbox, each: int, share: float = 0.3, timeout: float = 1200) -> dict:
    backlog = scene.Backlog(sandbox, each)
    install_faults(backlog.client, share)
    env = scene.cluster_env(extra={"PARTNER_HTTP_TIMEOUT": TIMEOUT_SECONDS})
    with harness.QCluster(env=env, workers=2, name="soak-faults", stop_seconds=0) as cluster:
        cluster.wait_ready()
        started = time.perf_counter()
        backlog.kick(env)
        backlog.wait_until_sent(timeout)
        seconds = time.perf_counter() - started
    applied = {}
    for fault in backlog.client.faults():
        name = fault["kind"] if fault["kind"] != "status" else str(fault["status"])
        applied[name] = applied.get(name, 0) + fault["applied"]
    stats = backlog.client.stats()["requests"]
    requests = stats["mailchimp"] + stats["braze"]
    return {
        "messages": backlog.total,
        "share": share,
        "seconds": seconds,
        "requests": requests,
        "faults_applied": applied,
        "failed_share": sum(applied.values()) / requests if requests else None,
        "states": backlog.outbox_states(),
        **_attempts(backlog),
        **backlog.partner_check(),
    }


def _attempts(backlog) -> dict:
    from django.db.models import Count, Q, Sum

    from connections.models import Delivery, OutboxMessage

    messages = OutboxMessage.objects.filter(connection_id__in=backlog.ids())
    totals = messages.aggregate(
        n=Count("id"),
        tries=Sum("attempts"),
        first=Count("id", filter=Q(state=OutboxMessage.State.DELIVERED, attempts=1)),
    )
    batches = Delivery.objects.filter(connection_id__in=backlog.ids())
    return {
        "first_attempt": totals["first"] / totals["n"],
        "retries": totals["tries"] - totals["n"],
        "batches": batches.count(),
        "batches_retried": batches.filter(retried__gt=0).count(),
    }


def figures(r: dict) -> list[Figure]:
    delivered = r["states"].get("delivered", 0) / r["messages"]
    applied = ", ".join(f"{k} {v:,}" for k, v in sorted(r["faults_applied"].items()))
    return [
        Figure(
            "faults.delivered",
            f"delivered with {r['share']:.0%} of requests failing ({r['messages']:,} messages)",
            round(100 * delivered, 2),
            "%",
            target="100%",
            ok=delivered == 1 and r["lost"] == 0,
            note=f"{r['requests']:,} partner requests, {r['failed_share']:.1%} failed: {applied}",
        ),
        Figure(
            "faults.first_attempt", "messages delivered at their first attempt", round(100 * r["first_attempt"], 1), "%"
        ),
        Figure(
            "faults.retries",
            "retries (extra attempts of a message)",
            r["retries"],
            "attempts",
            note=f"{r['batches_retried']:,} of {r['batches']:,} batches retried something; "
            f"members repeated at the partner (timeouts applied late): {r['duplicates']}",
        ),
        Figure("faults.seconds", "time to drain", r["seconds"], "s"),
    ]
