"""Worker crashes: two qclusters drain a Mailchimp and a Braze backlog while whole clusters are SIGKILLed at
random moments and restarted; afterwards every member is checked at the partner.

A killed cluster loses its drain tasks and leaves its claimed batches in flight. Recovery is the product's
own: the leases expire (OUTBOX_LEASE_SECONDS), the ORM broker hands a taken task out again after Q_RETRY,
and the "Forward due messages" sweep (every minute) queues a drain for any connection with due or expired
messages. A batch the partner had already applied when its worker died is sent again (at-least-once);
the sandbox counts those repeats per member.
"""

from __future__ import annotations

import os
import random
import signal
import time

from bench import harness
from bench.harness import Figure
from soak import scene


def run_crashes(
    sandbox, broker: str, each: int, kills: int, latency: float = 0.1, seed: int = 8, timeout: float = 600
) -> dict:
    """Drain 2 × `each` messages through `broker` ("orm" or "redis") with `kills` cluster kills."""
    redis_url = scene.redis_url() if broker == "redis" else ""
    if redis_url:
        import redis

        redis.Redis.from_url(redis_url).flushdb()
    backlog = scene.Backlog(sandbox, each)
    backlog.latency(latency)
    env = scene.cluster_env(redis_url)
    rng = random.Random(seed)
    # The moments are points of progress, drawn at random, so that every kill lands mid-drain however fast
    # this machine drains.
    moments = sorted(rng.uniform(0.05, 0.85) for _ in range(kills))
    clusters = [_start(env, f"soak-{broker}-{n}") for n in range(2)]
    killed = []
    started = time.perf_counter()
    try:
        for cluster in clusters:
            cluster.wait_ready()
        started = time.perf_counter()
        backlog.kick(env)
        for n, share in enumerate(moments):
            backlog.wait_for_progress(share, timeout=timeout)
            victim = rng.randrange(len(clusters))
            _kill(clusters[victim])
            killed.append({"at": round(time.perf_counter() - started, 2), "share": round(share, 2)})
            clusters[victim] = _start(env, f"soak-{broker}-{victim}-{n + 1}")
        seconds = backlog.wait_until_sent(timeout)
        seconds = time.perf_counter() - started
    finally:
        for cluster in clusters:
            cluster.__exit__(None, None, None)
    check = backlog.partner_check()
    return {
        "broker": broker,
        "messages": backlog.total,
        "kills": len(killed),
        "killed": killed,
        "seconds": seconds,
        "states": backlog.outbox_states(),
        **check,
    }


def _kill(cluster: harness.QCluster) -> None:
    """SIGKILL the whole process group: the sentinel, pusher, monitor and workers die at once."""
    os.killpg(cluster.process.pid, signal.SIGKILL)
    cluster.process.wait()
    cluster.log.close()


def _start(env: dict, name: str) -> harness.QCluster:
    cluster = harness.QCluster(env=env, workers=2, name=name, stop_seconds=0)
    cluster.__enter__()
    return cluster


# A kill interrupts every lane of every drain in the cluster. Each lane has one claim in flight: one Mailchimp
# request, or up to six Braze requests sent one after the other. Any of them the partner has applied is sent
# again once the lease expires, so that is the most a kill can repeat.
REPEATS_PER_KILL = 10 * 1 + 10 * 6


def repeat_bound(kills: int) -> int:
    return kills * REPEATS_PER_KILL


def figures(result: dict) -> list[Figure]:
    b = result["broker"]
    ok = result["lost"] == 0 and result["duplicate_batches"] <= repeat_bound(result["kills"])
    within_one = "yes" if result["duplicate_batches"] <= result["kills"] else "no"
    return [
        Figure(
            f"crashes.{b}.lost",
            f"{b}: members lost after {result['kills']} kills ({result['messages']:,} messages)",
            result["lost"],
            "members",
            target="0",
            ok=result["lost"] == 0,
        ),
        Figure(
            f"crashes.{b}.duplicate_batches",
            f"{b}: partner requests sent twice (batches of 500 / 75)",
            result["duplicate_batches"],
            "batches",
            target=f"≤ {repeat_bound(result['kills'])} (those in flight)",
            ok=ok,
            note=f"members repeated at the partner: {result['duplicates']}; at most one per kill: {within_one}",
        ),
        Figure(f"crashes.{b}.seconds", f"{b}: time to deliver everything", result["seconds"], "s"),
    ]
