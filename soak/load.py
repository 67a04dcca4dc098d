"""Load: the bulk profile and event endpoints, served by gunicorn (2 workers), take a sustained load from wrk
on 127.0.0.1 for a bounded time while a qcluster forwards: a backlog to Mailchimp and Braze, and every
profile the load creates (it joins a rule-based audience connected to Mailchimp).

Figures: requests per second, profiles per second, the 99th-percentile latency, and errors (non-2xx
answers and socket errors; the target is none).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench import harness
from bench.harness import Figure
from soak import scene

SCRIPT = Path(__file__).with_name("load.lua")
MARK = "SOAK-LOAD "
PREMIUM = {"user": "status", "op": "eq", "value": "Premium"}
LOAD_LIST = "soakload"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def auth_header(token: str) -> str:
    """API tokens issued as `ar_…` go as Bearer; a plain DRF key as `Token`."""
    return f"Bearer {token}" if token.startswith("ar_") else f"Token {token}"


def create_token(env: dict) -> str:
    out = subprocess.run(
        [sys.executable, "manage.py", "create_api_token", "soak"],
        cwd=harness.ROOT,
        env=harness.child_env(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1].strip()


def run_load(
    sandbox, seconds: float, each: int = 20_000, threads: int = 2, connections: int = 4, batch: int = 100
) -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    from audiences.models import Audience

    backlog = scene.Backlog(sandbox, each)
    premium = Audience.objects.create(name="soak: load Premium", criteria=PREMIUM)
    backlog.client.mailchimp_list(harness.MAILCHIMP_KEY, LOAD_LIST, "soak load")
    output = backlog.connections["mailchimp"].output
    loaded = harness.connection(premium, output, {"list_id": LOAD_LIST})
    port = free_port()
    env = scene.cluster_env()
    token = create_token(env)
    log_path = harness.RESULTS / f"soak-gunicorn-{os.getpid()}.log"
    web_log = open(log_path, "w")  # noqa: SIM115
    web = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "config.wsgi",
            "--workers=2",
            f"--bind=127.0.0.1:{port}",
            "--timeout=60",
        ],
        cwd=harness.ROOT,
        env=harness.child_env(env),
        stdout=web_log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_for_port(port, web)
        with harness.QCluster(env=env, workers=2, name="soak-load", stop_seconds=0) as cluster:
            cluster.wait_ready()
            backlog.kick(env)
            run = f"{int(time.time()):x}"
            result = _wrk(wrk, port, seconds, threads, connections, batch, auth_header(token), run)
            forwarded_during = backlog.accepted()
            _stop(web)  # gracefully: the requests wrk left unanswered commit before the outbox is checked
            backlog.wait_until_sent(600)
            _wait_sent(loaded.pk, 600)
    finally:
        _stop(web)
        web_log.close()
    from audiences.models import Membership, Profile

    joined = backlog.client.mailchimp_list_state(LOAD_LIST)["member_count"]
    # What the API committed (wrk counts the requests it started, the last ones unanswered at the end).
    profiles = Profile.objects.filter(external_id__startswith=f"load-{run}-").count()
    members = Membership.objects.filter(audience=premium).count()  # every profile the profile requests wrote
    return {
        **result,
        "rps": result["requests"] / result["seconds"],
        "profiles_per_second": members / result["seconds"],
        "errors": result["non_2xx"] + result["connect"] + result["read"] + result["write"] + result["timeout"],
        "forwarded_during": forwarded_during,
        "profiles_forwarded": joined,
        "profiles_created": profiles,
        "audience_members": members,
        "deadlocks": log_path.read_text().count("OperationalError: deadlock detected"),
    }


def _wrk(wrk, port, seconds, threads, connections, batch, auth, run) -> dict:
    proc = subprocess.run(
        [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout=30s", "-s", str(SCRIPT)]
        + [f"http://127.0.0.1:{port}"],
        env={**os.environ, "SOAK_AUTH": auth, "SOAK_BATCH": str(batch), "SOAK_RUN": run},
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    raise RuntimeError(f"wrk gave no result (exit {proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")


def _stop(web) -> None:
    if web.poll() is not None:
        return
    os.killpg(web.pid, signal.SIGTERM)
    try:
        web.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(web.pid, signal.SIGKILL)
        web.wait()


def _wait_for_port(port: int, web, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if web.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {web.returncode}; see {harness.RESULTS}/soak-gunicorn-*.log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"gunicorn did not listen on 127.0.0.1:{port} within {timeout:g} s")


def _wait_sent(connection_id: int, timeout: float) -> None:
    from connections.models import OutboxMessage

    waiting = OutboxMessage.objects.filter(connection_id=connection_id, state__in=OutboxMessage.WAITING)
    deadline = time.monotonic() + timeout
    while waiting.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{waiting.count():,} messages of the load's audience still waiting")
        time.sleep(0.25)


def figures(r: dict) -> list[Figure]:
    return [
        Figure(
            "load.rps",
            f"API requests per second ({r['per_request']} records each, {r['seconds']:.0f} s)",
            round(r["rps"], 1),
            "req/s",
            better="higher",
        ),
        Figure(
            "load.profiles",
            "profiles written per second",
            round(r["profiles_per_second"]),
            "profiles/s",
            better="higher",
            note=f"{r['audience_members']:,} profiles written by the profile requests (all join the Premium audience), "
            f"{r['profiles_forwarded']:,} of them in its Mailchimp list afterwards; "
            f"{r['profiles_created']:,} profiles in all (events for unknown ids create bare ones)",
        ),
        Figure("load.p99", "99th-percentile latency", r["p99_ms"], "ms", note=f"median {r['p50_ms']:.0f} ms"),
        Figure(
            "load.errors",
            "errors (non-2xx, connect, read, write, timeout)",
            r["errors"],
            "errors",
            target="0",
            ok=r["errors"] == 0 and r["profiles_forwarded"] == r["audience_members"],
            note=f"while forwarding: {r['forwarded_during']:,} backlog messages delivered during the load; "
            f"answers 500 on a database deadlock: {r['deadlocks']}",
        ),
    ]
