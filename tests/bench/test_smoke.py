"""The benchmark suite at small scale, so that it cannot rot: it runs, and prints every figure of issue 7.

It runs `bench/run.py --smoke` (10,000 profiles, small backlogs, 10 profile updates per broker, 2 changes per
broker under a 50 profiles/s wrk load and a 2,000-message backlog, a growth run at 1,000 profiles) in a scratch
database of its own, dropped afterwards: on the PostgreSQL server of DATABASE_URL when the suite runs on
PostgreSQL, else in a SQLite file. Timings are not checked here: at this scale they measure start-up costs, not
the system.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]

FIGURES = [
    "refresh.first",
    "refresh.churn",
    "fanout.first",
    "forward.mailchimp.2000",
    "forward.mailchimp.10000",
    "forward.braze.1500",
    "profile_path.orm.median",
    "profile_path.orm.p95",
    "profile_path.redis.median",
    "profile_path.redis.p95",
    "memory.drain",
    "memory.refresh",
    "queries.forward_batch",
    "queries.upsert_batch",
    "ingest.1",
    "ingest.10",
    "ingest.50",
    "ingest.batch",
    "ingest.audiences",
    "latency_load.orm.p50",
    "latency_load.orm.p95",
    "latency_load.orm.max",
    "latency_load.orm.after_answer",
    "latency_load.orm.load",
    "latency_load.orm.backlog",
    "latency_load.orm.poll_cpu",
    "latency_load.redis.p95",
    "latency_load.redis.load",
    "growth.refresh.churn",
    "growth.profile_path.orm.median",
    "growth.profile_path.orm.p95",
    "growth.memory.refresh",
    "growth.forward",
]


def scratch_url() -> str:
    s = connection.settings_dict
    name = f"bench_smoke_{os.getpid()}"
    if connection.vendor == "postgresql":
        return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{name}"
    return f"sqlite:///{ROOT / 'var' / name}.sqlite3"


@pytest.mark.every_database  # its scratch database is the suite's kind: the PostgreSQL run takes the PostgreSQL paths
def test_the_benchmark_suite_runs_and_prints_every_figure(tmp_path):
    out = tmp_path / "smoke.json"
    env = {**os.environ, "DATABASE_URL": scratch_url(), "BENCH_REDIS_URL": "redis://127.0.0.1:6379/12"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--drop", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    figures = {f["key"]: f for f in json.loads(out.read_text())["figures"]}
    assert [key for key in FIGURES if key not in figures] == []
    redis_measured = figures["profile_path.redis.median"]["value"] is not None
    for key in FIGURES:
        figure = figures[key]
        if key.startswith(("profile_path.redis", "growth.profile_path.redis", "latency_load.redis")) and not (
            redis_measured
        ):
            assert "not reachable" in figure["note"]
            continue
        assert figure["value"] is not None, figure
        assert figure["label"] in proc.stdout, f"{figure['label']!r} is not in the printed table"
    with_raw = ["refresh.first", "refresh.churn", "fanout.first", "forward.mailchimp.10000", "memory.drain"]
    with_raw.append("ingest.10")
    for key in with_raw:
        assert figures[key]["raw"], f"{key} has no raw limit beside it"
    if connection.vendor == "postgresql":  # the target's database: one statement records a batch there
        assert figures["queries.forward_batch"]["value"] <= 4
    # Under load, the single changes were timed beside the idle path, while the backlog drained and wrk wrote.
    assert figures["latency_load.orm.p95"]["raw"] == figures["profile_path.orm.p95"]["value"]
    assert figures["latency_load.orm.load"]["value"] > 0
    assert figures["latency_load.orm.backlog"]["value"] > 0
    assert "0 errors" in figures["latency_load.orm.load"]["note"]
    assert "JSON:" in proc.stdout
