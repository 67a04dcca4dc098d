"""Database restart: PostgreSQL is restarted while a qcluster (ORM broker: its queue is in the same database)
drains a Mailchimp and a Braze backlog. The workers are left alone; they must recover by themselves and
deliver everything, with nothing left in flight.

The restart ends every connection to the server, other test runs' included.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from bench import harness
from bench.harness import Figure
from soak import scene


def restart_command() -> list[str] | None:
    """`pg_ctlcluster … restart` for the local cluster, or None when this machine cannot restart it."""
    tool = shutil.which("pg_ctlcluster")
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*") if (p / "main").is_dir())
    if not tool or not versions:
        return None
    return [tool, "--skip-systemctl-redirect", versions[-1], "main", "restart"]


def run_dbrestart(sandbox, each: int, latency: float = 0.1, at: float = 0.3, timeout: float = 600) -> dict:
    command = restart_command()
    if command is None:
        raise RuntimeError("pg_ctlcluster or /etc/postgresql/<version>/main is missing: cannot restart PostgreSQL")
    backlog = scene.Backlog(sandbox, each)
    backlog.latency(latency)
    env = scene.cluster_env()
    with harness.QCluster(env=env, workers=2, name="soak-dbrestart", stop_seconds=0) as cluster:
        cluster.wait_ready()
        started = time.perf_counter()
        backlog.kick(env)
        backlog.wait_for_progress(at, timeout=timeout)
        before = backlog.accepted()
        restart = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, timeout=120)
        down = time.perf_counter() - restart
        scene.reconnect()
        backlog.wait_until_sent(timeout)
        seconds = time.perf_counter() - started
        recovered = time.perf_counter() - restart
        alive = cluster.process.poll() is None
    return {
        "messages": backlog.total,
        "restarted_at": before,
        "restart_seconds": down,
        "recovery_seconds": recovered,
        "seconds": seconds,
        "cluster_alive": alive,
        "states": backlog.outbox_states(),
        **backlog.partner_check(),
    }


def figures(r: dict) -> list[Figure]:
    delivered = r["states"].get("delivered", 0)
    return [
        Figure(
            "dbrestart.lost",
            f"members lost, PostgreSQL restarted at {r['restarted_at']:,} of {r['messages']:,} delivered",
            r["lost"],
            "members",
            target="0",
            ok=r["lost"] == 0 and delivered == r["messages"] and r["cluster_alive"],
            note=f"outbox afterwards: {r['states']}; members repeated at the partner: {r['duplicates']}; "
            f"the qcluster {'kept running' if r['cluster_alive'] else 'DIED'}",
        ),
        Figure("dbrestart.restart", "PostgreSQL restart (pg_ctlcluster)", r["restart_seconds"], "s"),
        Figure("dbrestart.recovery", "from the restart to everything delivered", r["recovery_seconds"], "s"),
    ]
