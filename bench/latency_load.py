"""Latency under load (issue 16): a single profile change until the partner holds it, while the API takes a
sustained write load and a backlog drains, with the ORM broker and with Redis.

Processes, as in production: gunicorn (`--web-workers`, default 2 × cores, 4 threads each) serves the API,
a real `manage.py qcluster` (2 workers) forwards, the partner sandbox runs in its own process. Meanwhile:

- load: `wrk` (bench/latency_load.lua) posts `POST /api/v1/profiles/bulk/` batches of profiles at a steady
  `--load-rate` profiles/s (default 500): each thread's pool of profiles is created in the "Premium or Trial"
  audience, then moved out and back in, so every profile written is a membership change to the same
  Mailchimp connection as the single changes;
- backlog: `--backlog` messages (default 100,000) for another connection, to another Mailchimp output (its
  own request slots), written straight into the outbox and set draining once the load runs;
- single changes: one member moved out (status Free) or back in (Premium) through the same API over HTTP,
  the clock stopping when the sandbox's Mailchimp API shows the member unsubscribed or subscribed again.

Changes go on until the backlog has drained and at least `--changes` are timed. Figures per broker: the
single change's p50, p95 and max (beside the idle per-profile path of the same run), the load the API took
and the backlog's drain rate.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench import harness
from bench.harness import Figure

SCRIPT = Path(__file__).with_name("latency_load.lua")
MARK = "LATENCY-LOAD "
BACKLOG_AUDIENCE = "bench: latency backlog"
BACKLOG_LIST = "benchlat02"
THREADS, CONNECTIONS, BATCH = 2, 4, 50


def percentile(sorted_values: list, share: float):
    return sorted_values[min(len(sorted_values) - 1, max(0, int(round(share * len(sorted_values))) - 1))]


def _backlog_connection(sandbox_url: str, count: int) -> int:
    """A static audience's connection to a Mailchimp output of its own, with `count` messages waiting."""
    from audiences.models import Audience
    from bench.forward import queue_messages
    from connections.models import Connection, OutboxMessage
    from outputs.models import Output

    Connection.objects.filter(audience__name=BACKLOG_AUDIENCE).delete()
    Output.objects.filter(name="bench: latency backlog Mailchimp").delete()
    audience, _ = Audience.objects.get_or_create(name=BACKLOG_AUDIENCE, defaults={"kind": "static"})
    output = harness.mailchimp_output(sandbox_url, name="bench: latency backlog Mailchimp")
    conn = harness.connection(audience, output, {"list_id": BACKLOG_LIST})
    OutboxMessage.objects.filter(connection__audience__name=BACKLOG_AUDIENCE).delete()
    queue_messages(conn.pk, "email", count, "lat", "@backlog.example.com")
    return conn.pk


def _start_web(port: int, env: dict, log_path: Path, workers: int):
    """gunicorn as the README's Deployment runs it: `workers` processes of 4 threads each, keep-alive 75 s."""
    log = open(log_path, "w")  # noqa: SIM115
    web = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("gunicorn")),
            "config.wsgi",
            f"--workers={workers}",
            "--threads=4",
            # Longer than wrk's pause between two requests on one connection at a low --load-rate: gunicorn's
            # default (2 s) closes the idle keep-alive connection under wrk, which counts a read error.
            "--keep-alive=75",
            f"--bind=127.0.0.1:{port}",
        ],
        cwd=harness.ROOT,
        env=harness.child_env(env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return web, log


def _stop(proc, sig=signal.SIGTERM, timeout: float = 30) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def measure(ctx, broker: str) -> dict:
    import requests
    from django.contrib.auth import get_user_model
    from django_q.models import OrmQ

    from bench import profile_path
    from connections.models import Connection, OutboxMessage
    from soak.load import _wait_for_port, auth_header, free_port
    from staff.models import ApiToken

    args = ctx.args
    sandbox, conn, people = profile_path._setup(ctx, 2 * (args.changes + 40))
    client = sandbox.client()
    client.mailchimp_list(harness.MAILCHIMP_KEY, BACKLOG_LIST, "bench: latency backlog")
    backlog_id = _backlog_connection(sandbox.url, args.backlog)
    OrmQ.objects.all().delete()
    harness.settle()
    env = {"REDIS_URL": ""}
    if broker == "redis":
        import redis

        redis.Redis.from_url(args.redis_url).flushdb()
        env = {"REDIS_URL": args.redis_url}
    user, _ = get_user_model().objects.get_or_create(username="bench-integration")
    _, token = ApiToken.issue(user, "bench latency", "write")
    port = free_port()
    web, web_log = _start_web(port, env, harness.RESULTS / f"latency-gunicorn-{os.getpid()}.log", args.web_workers)
    load = None
    api = requests.Session()
    api.headers["Authorization"] = auth_header(token)
    member_url = f"{sandbox.url}/mailchimp/us6/3.0/lists/{profile_path.LIST}/members/"
    poll = requests.Session()
    poll.auth = ("relay", harness.MAILCHIMP_KEY)
    waiting = OutboxMessage.objects.filter(connection_id=backlog_id, state__in=OutboxMessage.WAITING)

    def change(external_id, email, status, expect, timeout=30.0):
        started, wall = time.perf_counter(), time.time()
        response = api.post(
            f"http://127.0.0.1:{port}/api/v1/profiles/bulk/",
            json={"profiles": [{"external_id": external_id, "attributes": {"status": status}}]},
            timeout=timeout,
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["memberships_added"] + body["memberships_removed"] == 1, body
        answered.append(time.perf_counter() - started)
        deadline = started + timeout
        while time.perf_counter() < deadline:
            member = poll.get(member_url + email, timeout=10)
            if member.status_code == 200 and member.json()["status"] == expect:
                took = time.perf_counter() - started
                timed.append({"email": email, "posted": wall, "answered": wall + answered[-1], "seen": wall + took})
                return took
            time.sleep(0.005)
        raise TimeoutError(f"{email} did not become {expect} within {timeout:g} s under load")

    latencies, during, answered, timed = [], [], [], []
    drained_at = None
    stop = threading.Event()

    def watch_backlog():
        # The backlog's end, seen within 0.1 s (in a thread of its own, with its own database connection).
        nonlocal drained_at
        from django.db import connection as db

        try:
            while not stop.is_set():
                if not waiting.exists():
                    drained_at = time.perf_counter()
                    return
                time.sleep(0.1)
        finally:
            db.close()

    try:
        _wait_for_port(port, web)
        with harness.QCluster(env=env, workers=2, name=f"latency-{broker}", stop_seconds=1) as cluster:
            cluster.wait_ready()
            people = list(people)
            external_id, email = people.pop(0)
            change(external_id, email, "Free", "unsubscribed", timeout=90)  # imports, connections, caches
            change(external_id, email, "Premium", "subscribed", timeout=90)
            load = _start_wrk(port, token, args.load_rate, args.load_seconds)
            time.sleep(2.0)  # the load settles before the backlog starts and the clock runs
            before = Connection.objects.get(pk=backlog_id).accepted_count
            kicked = time.perf_counter()
            harness.child("soak.scene:request_drains", {"ids": [backlog_id]}, env=env)
            watcher = threading.Thread(target=watch_backlog, daemon=True)
            watcher.start()
            for external_id, email in people:
                for status, expect in (("Free", "unsubscribed"), ("Premium", "subscribed")):
                    busy = drained_at is None
                    latencies.append(change(external_id, email, status, expect))
                    during.append(busy)
                if drained_at is not None and len(latencies) >= args.changes:
                    break
                if load.poll() is not None:
                    raise RuntimeError("wrk ended before the measurement did: raise --load-seconds")
            stop.set()
            watcher.join()
            if drained_at is None:
                raise RuntimeError(f"the backlog did not drain during {len(latencies)} changes")
            drained = Connection.objects.get(pk=backlog_id).accepted_count - before
            wrk = _stop_wrk(load)
            load = None
    finally:
        if load is not None:
            _stop(load, signal.SIGINT)
        _stop(web)
        web_log.close()
    assert drained == args.backlog, (drained, args.backlog)
    sent = wrk["sent"] * wrk["per_request"]
    stages = _stages(conn.pk, backlog_id, timed[2:], during)
    return {
        "stages": stages,
        "latencies": latencies,
        "during_backlog": during,
        "answered": answered[2:],
        "backlog_seconds": drained_at - kicked,
        "backlog_rate": drained / (drained_at - kicked),
        "load": {**wrk, "profiles_per_second": sent / wrk["seconds"], "rps": wrk["requests"] / wrk["seconds"]},
    }


STAGES = ("committed", "answered", "enqueued", "started", "sent", "acknowledged", "seen")


def _stages(conn_id: int, backlog_id: int, timed: list, during: list) -> list:
    """Where each timed change's time went, read back from the rows the run left (seconds after the POST):
    the outbox message's `created_at` (the API's transaction), the API's answer, the drain task that sent it
    (queued: the time in its name; started: django-q2's `started`), the batch's Delivery (`started_at`: claimed
    and sent), the message's `finished_at` (the partner answered, outcome recorded), and seen at the sandbox.
    Also: how many drain tasks ran when the change's drain was queued, and whether it was queued before the
    change committed (the message then waited for a drain already running)."""
    from django_q.models import Task

    from connections.models import Delivery, OutboxMessage

    tasks = []
    for name, started, stopped in Task.objects.filter(name__startswith="drain-").values_list(
        "name", "started", "stopped"
    ):
        pk, _, at = name[len("drain-") :].partition("-")
        tasks.append((int(pk), float(at), started.timestamp(), stopped.timestamp()))
    out = []
    for change, busy in zip(timed, during, strict=False):
        msg = (
            OutboxMessage.objects.filter(connection_id=conn_id, value=change["email"], finished_at__isnull=False)
            .filter(created_at__gte=_dt(change["posted"] - 0.05), created_at__lte=_dt(change["seen"]))
            .order_by("created_at")
            .values_list("created_at", "finished_at")
            .first()
        )
        if msg is None:
            continue
        committed, finished = msg[0].timestamp(), msg[1].timestamp()
        delivery = (
            Delivery.objects.filter(connection_id=conn_id, started_at__lte=msg[1])
            .order_by("-started_at")
            .values_list("started_at", flat=True)
            .first()
        )
        mine = [t for t in tasks if t[0] == conn_id and t[2] <= delivery.timestamp() <= t[3]]
        row = {"posted": 0.0, "committed": committed, "answered": change["answered"], "sent": delivery.timestamp()}
        row.update(acknowledged=finished, seen=change["seen"], during_backlog=busy)
        if mine:
            enq, start = mine[0][1], mine[0][2]
            row.update(enqueued=enq, started=start, queued_before_commit=enq < committed)
            row["running_at_enqueue"] = sum(1 for t in tasks if t[2] <= enq < t[3])
            row["backlog_running_at_enqueue"] = any(t[0] == backlog_id and t[2] <= enq < t[3] for t in tasks)
        for key in STAGES:
            if key in row:
                row[key] = round(row[key] - change["posted"], 4)
        out.append(row)
    return out


def _dt(ts: float):
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, tz=dt.UTC)


def _stage_summary(stages: list, during: bool) -> str:
    rows = [r for r in stages if r["during_backlog"] == during and "started" in r]
    if not rows:
        return "none"
    parts = []
    prev = "posted"
    for key in STAGES:
        if key == "answered":
            continue
        gaps = sorted(r[key] - (r[prev] if prev != "posted" else 0.0) for r in rows)
        parts.append(f"{prev}->{key} p50 {statistics.median(gaps) * 1000:.0f} / max {gaps[-1] * 1000:.0f}")
        prev = key
    before = sum(r["queued_before_commit"] for r in rows)
    both = sum(r["running_at_enqueue"] >= 2 for r in rows)
    return f"{len(rows)} changes: " + ", ".join(parts) + f"; drain queued before commit {before}, 2+ running {both}"


def _start_wrk(port: int, token: str, rate: float, seconds: float):
    from soak.load import auth_header

    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    env = {
        **os.environ,
        "LAT_AUTH": auth_header(token),
        "LAT_RATE": str(rate),
        "LAT_BATCH": str(BATCH),
        "LAT_THREADS": str(THREADS),
        "LAT_POOL": str(max(BATCH, int(rate * 2))),  # each profile changes about every 4 s
        "LAT_RUN": f"{int(time.time()):x}",
    }
    cmd = [wrk, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--timeout=30s", "-s", str(SCRIPT)]
    return subprocess.Popen(
        [*cmd, f"http://127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _stop_wrk(proc) -> dict:
    """Interrupt wrk (it prints its summary on SIGINT) and read the script's line."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    for line in out.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    raise RuntimeError(f"wrk gave no result (exit {proc.returncode}): {out[-2000:]} {err[-2000:]}")


def poll_cost(polls: int = 500) -> dict:
    """CPU of one empty ORM-broker poll (django-q2's dequeue on an empty queue), this process's and its database
    backend's (PostgreSQL: read from /proc for the backend's pid); what an idle cluster spends every Q_POLL."""
    import resource

    from django.db import connection
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.models import OrmQ

    OrmQ.objects.all().delete()
    saved, Conf.POLL = Conf.POLL, 0  # no sleep between the polls measured
    broker = get_broker()
    try:
        broker.dequeue()
        backend = None
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                backend = Path(f"/proc/{cursor.fetchone()[0]}/stat")

        def cpu():
            own = resource.getrusage(resource.RUSAGE_SELF)
            server = 0.0
            if backend is not None and backend.exists():  # the server on this machine
                fields = backend.read_text().rpartition(")")[2].split()
                server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            return own.ru_utime + own.ru_stime, server

        (c0, s0), started = cpu(), time.perf_counter()
        for _ in range(polls):
            broker.dequeue()
        (c1, s1), wall = cpu(), time.perf_counter() - started
    finally:
        Conf.POLL = saved
    return {
        "client_ms": (c1 - c0) / polls * 1000,
        "server_ms": (s1 - s0) / polls * 1000,
        "wall_ms": wall / polls * 1000,
    }


def run(ctx) -> list[Figure]:
    from bench import profile_path

    ctx.run_piece("profile_path")  # the idle per-profile path, in the same run
    figures = []
    for broker in ctx.args.brokers:
        label = profile_path.broker_label(broker)
        keys = ("p50", "p95", "max", "after_answer", "load", "backlog")
        if broker == "redis" and not harness.redis_reachable(ctx.args.redis_url):
            note = f"not measured: Redis not reachable at {ctx.args.redis_url}"
            figures += [
                Figure(f"latency_load.redis.{k}", f"under load: single change {k}, {label}", None, "ms", note=note)
                for k in keys
            ]
            continue
        r = measure(ctx, broker)
        ms = sorted(x * 1000 for x in r["latencies"])
        busy = sorted(x * 1000 for x, b in zip(r["latencies"], r["during_backlog"], strict=True) if b)
        p50, p95 = statistics.median(ms), percentile(ms, 0.95)
        api = sorted(x * 1000 for x in r["answered"])
        after = sorted((x - a) * 1000 for x, a in zip(r["latencies"], r["answered"], strict=True))
        idle = ctx.state.get(f"path_{broker}")
        idle_p50 = statistics.median(idle) if idle else None
        idle_p95 = percentile(idle, 0.95) if idle else None
        load = r["load"]
        errors = load["non_2xx"] + load["connect"] + load["read"] + load["write"] + load["timeout"]
        for during in (True, False):
            harness.log(
                f"stages ({broker}, {'during' if during else 'outside'} the backlog): "
                + _stage_summary(r["stages"], during)
            )
        (harness.RESULTS / f"latency-stages-{broker}-{os.getpid()}.json").write_text(json.dumps(r["stages"]))
        harness.log(
            f"under load ({broker}): p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {ms[-1]:.0f} ms over {len(ms)}; "
            f"load {load['profiles_per_second']:.0f} profiles/s; backlog {r['backlog_rate']:,.0f} ids/s"
        )
        target = "< 1000 ms" if broker == "redis" else ""
        figures += [
            Figure(
                f"latency_load.{broker}.p50",
                f"under load: single change p50, {label}",
                p50,
                "ms",
                idle_p50,
                "idle path p50",
                note=f"{len(ms)} changes, {len(busy)} of them while the backlog drained"
                + (f" (p95 of those {percentile(busy, 0.95):.0f} ms)" if busy else "")
                + f"; the API answered in p50 {statistics.median(api):.0f} ms, p95 {percentile(api, 0.95):.0f} ms",
            ),
            Figure(
                f"latency_load.{broker}.p95",
                f"under load: single change p95, {label}",
                p95,
                "ms",
                idle_p95,
                "idle path p95",
                target=target,
                ok=(p95 < 1000) if target else None,
            ),
            Figure(f"latency_load.{broker}.max", f"under load: single change max, {label}", ms[-1], "ms"),
            Figure(
                f"latency_load.{broker}.after_answer",
                f"under load: from the API's answer to the partner, p95, {label}",
                percentile(after, 0.95),
                "ms",
                note=f"p50 {statistics.median(after):.0f} ms, max {after[-1]:.0f} ms: fan-out's drain request, the "
                "broker, the worker's drain and the partner call (the rest is the API's answer under the load)",
            ),
            Figure(
                f"latency_load.{broker}.load",
                f"under load: API profile updates per second, {label}",
                round(load["profiles_per_second"]),
                "profiles/s",
                better="higher",
                note=f"{load['rps']:.1f} req/s of {load['per_request']} profiles over {load['seconds']:.0f} s, "
                f"p99 {load['p99_ms']:.0f} ms, {errors} errors; gunicorn {ctx.args.web_workers} workers × 4 threads",
                extra=load,
            ),
            Figure(
                f"latency_load.{broker}.backlog",
                f"under load: {ctx.args.backlog:,}-message backlog drained, {label}",
                r["backlog_rate"],
                "ids/s",
                better="higher",
                note=f"{r['backlog_seconds']:.1f} s",
            ),
        ]
    cost = poll_cost(100 if ctx.args.smoke else 2000)
    each = cost["client_ms"] + cost["server_ms"]
    figures.append(
        Figure(
            "latency_load.orm.poll_cpu",
            "ORM broker: CPU of one empty poll (worker + database)",
            round(each, 2),
            "ms",
            note=f"{cost['client_ms']:.2f} ms in the cluster, {cost['server_ms']:.2f} ms in PostgreSQL, "
            f"{cost['wall_ms']:.2f} ms wall; an idle cluster polls every Q_POLL: {each / 0.5 / 10:.1f}% of a core "
            f"at 0.5 s, {each / 0.2 / 10:.1f}% at 0.2 s, {each / 0.1 / 10:.1f}% at 0.1 s",
        )
    )
    return figures
