"""The small harness every benchmark module shares.

- `configure(url)` points this process at a scratch database (creating it on PostgreSQL), sets Django up and
  migrates; `reset_state()` empties everything but the seeded profiles, identities and events.
- `Figure` is one measured figure beside its raw limit; `print_table` and `write_json` report them.
- `child(...)` runs a function in a fresh Python process (its own interpreter, GIL and peak RSS), as a
  worker or a web process would be; `SandboxProcess` runs the partner sandbox in its own process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/bench"
RESULT_MARK = "BENCH-RESULT "
# Production-like: DEBUG off (no query log kept in memory, no debug cursor), so keys of the benchmark's own.
# The refresh schedule would wake full refreshes in the qclusters the benchmarks start: it is turned off.
BENCH_ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings",
    "DEBUG": "false",
    "SECRET_KEY": "benchmark-only-secret-key-not-for-any-real-deployment",
    "SECRETS_ENCRYPTION_KEYS": "1yfiPGF-ZqAK_WsrZ-gke3X6P-Hwu1cgZlw_hE8EVKU=",
    "SECURE_SSL_REDIRECT": "false",
    "ALLOWED_HOSTS": "localhost,127.0.0.1,testserver",
    "AUDIENCE_REFRESH_MINUTES": "0",
    "LOG_LEVEL": "WARNING",
    # Production-like settings, but the partners are the sandbox on 127.0.0.1 and the load is ours.
    "ALLOW_PRIVATE_DESTINATIONS": "true",
    "ALLOW_BASE_URL_OVERRIDE": "true",
    "API_THROTTLE_RATE": "",
}


# --- figures ---------------------------------------------------------------------------------------------


@dataclass
class Figure:
    key: str  # stable id, e.g. "refresh.churn"
    label: str
    value: float | None
    unit: str  # "s", "ids/s", "MB", "queries", "ms"
    raw: float | None = None  # the raw limit measured in the same run, same unit
    raw_label: str = ""
    target: str = ""
    ok: bool | None = None
    note: str = ""
    better: str = "lower"  # "lower" (times, memory) or "higher" (rates)
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """How far from the raw limit: × slower for times, share of the raw rate for rates."""
        if self.value is None or not self.raw:
            return None
        return self.value / self.raw

    def ratio_text(self) -> str:
        r = self.ratio
        if r is None:
            return ""
        return f"{r:.0%} of raw" if self.better == "higher" else f"{r:.2f}×"


def fmt(value, unit) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        return f"{value:.2f} s" if value < 100 else f"{value:.0f} s"
    if unit == "ms":
        return f"{value:.0f} ms"
    if unit in ("ids/s", "events/s"):
        return f"{value:,.0f} {unit}"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "×":
        return f"{value:.2f}×"
    if unit == "queries":
        return f"{value:g}"
    return f"{value:g} {unit}"


def print_table(figures, title="", out=sys.stdout) -> None:
    rows = [("figure", "value", "raw limit (same run)", "ratio", "target", "met")]
    for f in figures:
        raw = f"{fmt(f.raw, f.unit)} {f.raw_label}".strip() if f.raw is not None else f.raw_label
        met = "" if f.ok is None else ("yes" if f.ok else "NO")
        rows.append((f.label, fmt(f.value, f.unit), raw, f.ratio_text(), f.target, met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    if title:
        print(title, file=out)
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)
    notes = [f for f in figures if f.note]
    if notes:
        print(file=out)
        for f in notes:
            print(f"  {f.label}: {f.note}", file=out)
    out.flush()


def write_json(path: Path, meta: dict, figures) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"meta": meta, "figures": [{**asdict(f), "ratio": f.ratio} for f in figures]}
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def timed():
    box = {}
    started = time.perf_counter()
    try:
        yield box
    finally:
        box["seconds"] = time.perf_counter() - started


def peak_rss_mb() -> float:
    """Peak resident memory of this process image, in MB.

    Linux's VmHWM belongs to the process's own address space; getrusage's ru_maxrss would also count the
    parent's memory at the fork that started this process (it survives exec), so it is the fallback only.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


# --- database ---------------------------------------------------------------------------------------------


def is_postgres(url: str) -> bool:
    return urlparse(url).scheme in ("postgres", "postgresql", "pgsql")


def with_db_name(url: str, name: str) -> str:
    parts = urlparse(url)
    if is_postgres(url):
        return urlunparse(parts._replace(path=f"/{name}"))
    path = Path(parts.path)
    return f"sqlite:///{path.with_name(name + path.suffix)}"


def db_name(url: str) -> str:
    parts = urlparse(url)
    return parts.path.lstrip("/") if is_postgres(url) else Path(parts.path).stem


def _admin_conninfo(url: str) -> str:
    parts = urlparse(url)
    return urlunparse(parts._replace(path="/postgres"))


def create_database(url: str) -> bool:
    """Create the scratch database when missing; True when it was created."""
    if not is_postgres(url):
        Path(urlparse(url).path).parent.mkdir(parents=True, exist_ok=True)
        return False
    import psycopg

    name = db_name(url)
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise SystemExit(f"scratch database name {name!r}: use lower-case letters, digits and _")
    with psycopg.connect(_admin_conninfo(url), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            return False
        conn.execute(f'CREATE DATABASE "{name}"')
    return True


def drop_database(url: str) -> None:
    if not is_postgres(url):
        path = Path(urlparse(url).path)
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return
    import psycopg

    with psycopg.connect(_admin_conninfo(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db_name(url)}" WITH (FORCE)')


def check_scratch(url: str) -> None:
    """Refuse any database whose name does not say it is a benchmark's: the suite empties its tables."""
    if not db_name(url).startswith(("bench", "test_")):
        raise SystemExit(
            f"refusing to benchmark in {db_name(url)!r}: the suite empties audiences, outputs and connections. "
            f"Point DATABASE_URL at a scratch database whose name starts with 'bench' (created when missing)."
        )


def prepare(url: str) -> None:
    """What every benchmark entry point does first: refuse a database that is not a scratch one, create it when
    missing, and configure this process for it (migrated)."""
    check_scratch(url)
    create_database(url)
    configure(url)


def configure(url: str, migrate: bool = True, child: bool = False) -> None:
    """Point this process at `url` with the benchmark's settings, set Django up, and migrate (quietly).

    A child process keeps the settings its parent gave it (the same keys, so it reads the same secrets).
    """
    os.environ["DATABASE_URL"] = url
    for key, value in BENCH_ENV.items():
        if child:
            os.environ.setdefault(key, value)
        else:
            os.environ[key] = value
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    if migrate:
        from django.core.management import call_command

        call_command("migrate", verbosity=0)


def vendor() -> str:
    from django.db import connection

    return connection.vendor


def execute(sql: str, params=None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.rowcount


def scalar(sql: str, params=None):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])
        row = cursor.fetchone()
        return row[0] if row else None


def settle() -> None:
    """Fresh statistics and a checkpoint before a timed step, so earlier writes do not bill it (PostgreSQL)."""
    if vendor() == "postgresql":
        execute("ANALYZE")
        execute("CHECKPOINT")


def reset_state() -> None:
    """Empty everything except profiles, identities and events (which are expensive to seed)."""
    from django.apps import apps

    tables = [
        apps.get_model(label)._meta.db_table
        for label in (
            "connections.Delivery",
            "connections.OutboxMessage",
            "connections.OutputSlot",
            "connections.Connection",
            "outputs.Output",
            "audiences.MembershipChange",
            "audiences.Membership",
            "audiences.RefreshRun",
            "audiences.Audience",
            "django_q.OrmQ",
            "django_q.Task",
            "django_q.Schedule",
        )
    ]
    if vendor() == "postgresql":
        execute(f"TRUNCATE {', '.join(tables)} CASCADE")
    else:
        for table in tables:
            execute(f"DELETE FROM {table}")


def ensure_profiles(count: int) -> dict:
    """Seed up to `count` profiles (deterministic, prefix bench…); returns what was done."""
    from audiences.models import Profile
    from audiences.seeding import seed_profiles

    have = Profile.objects.count()
    if have >= count:
        return {"seeded": 0, "seconds": 0.0, "profiles": have}
    log(f"seeding {count - have:,} profiles (have {have:,}) …")
    started = time.perf_counter()
    # On PostgreSQL the rows are generated inside the database (set-based, indexes rebuilt once): 10M in minutes.
    created = seed_profiles(count - have, prefix=f"bench{have}", seed=42, fast=vendor() == "postgresql")
    if vendor() == "postgresql":
        # VACUUM too: otherwise autovacuum sets the fresh tables' visibility maps (gigabytes at 10M profiles)
        # during the first measurements, which then time autovacuum (the ORM broker's p95 at 10M: 1.88x).
        execute("VACUUM ANALYZE")
    seconds = time.perf_counter() - started
    log(
        f"seeded {created['profiles']:,} profiles, {created['identities']:,} identities, "
        f"{created['events']:,} events in {seconds:.1f} s"
    )
    return {"seeded": created["profiles"], "seconds": seconds, "profiles": count, **created}


# --- outputs ----------------------------------------------------------------------------------------------

MAILCHIMP_KEY = "0123456789abcdef0123456789abcdef-us6"
BRAZE_KEY = "braze-bench-key"


def mailchimp_output(sandbox_url: str, name="bench: Mailchimp", key=MAILCHIMP_KEY):
    from outputs.models import Output

    output = Output(
        kind="mailchimp",
        name=name,
        base_url=f"{sandbox_url}/mailchimp/{{dc}}",
        settings={"email_type": "html", "double_optin": False, "delete_on_subscription_end": False},
    )
    output.set_secrets({"api_key": key})
    output.save()
    return output


def braze_output(sandbox_url: str, name="bench: Braze", key=BRAZE_KEY):
    from outputs.models import Output

    output = Output(
        kind="braze",
        name=name,
        base_url=f"{sandbox_url}/braze",
        settings={"rest_endpoint": "https://rest.iad-01.braze.com"},
    )
    output.set_secrets({"api_key": key})
    output.save()
    return output


def xandr_output(sandbox_url: str, name="bench: AppNexus"):
    from outputs.models import Output

    output = Output(
        kind="xandr", name=name, base_url=f"{sandbox_url}/xandr", settings={"username": "bench", "member_id": 1234}
    )
    output.set_secrets({"password": "bench-pass"})
    output.save()
    return output


def connection(audience, output, settings: dict, status="active", mode=None):
    """A connection without the backfill `services.connect` would queue (the benchmarks queue their own)."""
    from connections.models import Connection

    return Connection.objects.create(
        audience=audience,
        output=output,
        settings=settings,
        status=status,
        delivery_mode=mode or output.partner.delivery.mode,
    )


# --- processes --------------------------------------------------------------------------------------------


def child_env(extra: dict | None = None) -> dict:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, **BENCH_ENV, "PYTHONPATH": path}
    env.update(extra or {})
    return {k: v for k, v in env.items() if v is not None}


def child(func: str, args: dict, env: dict | None = None, timeout: float = 3600) -> dict:
    """Run `module:function(**args)` in a fresh process set up for this database; return its JSON result.

    The result carries `peak_rss_mb`, the child's own peak resident memory.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "bench.child", func, json.dumps(args)],
        cwd=ROOT,
        env=child_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :])
    raise RuntimeError(f"{func} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")


class SandboxProcess:
    """The partner sandbox in its own process, so it never shares a GIL with what it measures."""

    def __init__(self):
        self.process = None
        self.url = None

    def start(self) -> str:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.sandbox_server"],
            cwd=ROOT,
            env=child_env(),
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        line = self.process.stdout.readline().strip()
        if not line.startswith("http://"):
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        self.url = line
        return self.url

    def client(self):
        from outputs.sandbox.client import SandboxClient

        return SandboxClient(self.url, timeout=60)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process = None


def _group(pid: int) -> int:
    """Processes in the cluster's process group (it runs in a session of its own): main, sentinel, the rest."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[2]) == pid:
                count += 1
    return count


def wait_for_cluster(pid: int, workers: int, timeout: float = 60) -> None:
    """Until the cluster runs its workers, pusher and monitor, so that both clusters compete from the start."""
    deadline = time.monotonic() + timeout
    while _group(pid) < workers + 4:
        if time.monotonic() > deadline:
            raise TimeoutError(f"qcluster {pid} did not start its workers within {timeout:g} s")
        time.sleep(0.2)
    time.sleep(1.0)  # the pusher connects to Redis right after it starts


class QCluster:
    """`manage.py qcluster` in the background with this run's database and broker."""

    def __init__(self, env: dict | None = None, workers: int = 2, name: str = "qcluster", stop_seconds: float = 3):
        self.stop_seconds = stop_seconds  # then SIGKILL: the measurements are over, nothing is left to finish
        self.env = env or {}
        self.workers = workers
        self.name = name
        self.process = None

    def __enter__(self):
        self.log = open(RESULTS / f"{self.name}-{os.getpid()}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "qcluster"],
            cwd=ROOT,
            env=child_env({"Q_WORKERS": str(self.workers), **self.env}),
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        wait_for_cluster(self.process.pid, self.workers, timeout)

    def __exit__(self, *exc):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=self.stop_seconds)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # the cluster's workers too
            except ProcessLookupError:
                pass
            self.process.wait()
        self.log.close()


def redis_reachable(url: str) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:
        return False


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


RESULTS.mkdir(parents=True, exist_ok=True)
