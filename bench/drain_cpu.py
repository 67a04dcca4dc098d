"""The worker's CPU per forwarded message: one drain of a backlog, in this process, with the sandbox in its own.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_x .venv/bin/python bench/drain_cpu.py mailchimp 100000
    … --profile 20000: the same drain in one lane under cProfile, its top functions printed
    … --bare: the bench's bare loop (the same bodies POSTed with 10 threads) first, accounted the same way

User + system time of this process around `connections.drain.drain` (every lane is a thread of it): unlike the
drain's wall time, it hardly moves when other work loads the machine, so a before/after pair taken on a busy
machine still compares the worker's own cost. Beside it, the CPU of every PostgreSQL process and of the
sandbox over the same interval (read from /proc: the database must be on this machine), so the whole cost of
a forwarded message is on one line, and with --bare the bare loop's beside it: on a machine whose cores are
all busy, the two rates stand in about the inverse ratio of their total CPU per message.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import forward, harness  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


TICK = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int, children: bool = False) -> float:
    """User + system seconds of one process (and of its children it has reaped), 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # utime, stime, cutime, cstime: fields 14-17 of stat. A backend that exits before the end (a drain's pool
    # lanes close their connections) leaves its time in the postmaster's cutime/cstime.
    return sum(int(f) for f in fields[11 : 15 if children else 13]) / TICK


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL process on this machine, by pid (backends come and go: diff by pid)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found[int(entry.name)] = process_cpu(int(entry.name), children=True)
            except (FileNotFoundError, ProcessLookupError):
                continue
    return found


class Account:
    """CPU of this process, PostgreSQL and the sandbox between start() and stop()."""

    def __init__(self, sandbox_pid: int):
        self.sandbox_pid = sandbox_pid

    def start(self):
        self.t0, self.me, self.pg, self.box = (
            time.perf_counter(),
            cpu_seconds(),
            postgres_cpu(),
            process_cpu(self.sandbox_pid),
        )

    def stop(self) -> dict:
        pg = postgres_cpu()
        return {
            "wall": time.perf_counter() - self.t0,
            "worker": cpu_seconds() - self.me,
            "postgres": sum(cpu - self.pg.get(pid, 0.0) for pid, cpu in pg.items()),
            "sandbox": process_cpu(self.sandbox_pid) - self.box,
        }


def line(label: str, count: int, cpu: dict) -> str:
    per = {k: cpu[k] / count * 1e6 for k in ("worker", "postgres", "sandbox")}
    total = sum(per.values())
    return (
        f"{label}: {count / cpu['wall']:,.0f} ids/s; CPU a message: {per['worker']:.1f} µs here, "
        f"{per['postgres']:.1f} µs PostgreSQL, {per['sandbox']:.1f} µs sandbox = {total:.1f} µs"
    )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=("mailchimp", "braze"))
    p.add_argument("messages", type=int)
    p.add_argument("--profile", action="store_true", help="one lane, under cProfile")
    p.add_argument("--bare", action="store_true", help="the bare loop first, accounted the same way")
    args = p.parse_args(argv)
    url = os.environ.get("DATABASE_URL", harness.DEFAULT_URL)
    harness.prepare(url)
    sandbox = harness.SandboxProcess()
    sandbox.start()
    account = Account(sandbox.process.pid)
    try:
        if args.bare:
            forward._reset_sandbox(sandbox, args.kind)
            batch = 500 if args.kind == "mailchimp" else 75
            account.start()
            forward.bare_loop(sandbox.url, args.kind, args.messages, batch, 10)
            print(line(f"bare loop {args.messages:,}", args.messages, account.stop()))
        forward._reset_sandbox(sandbox, args.kind)
        conn = forward._fresh_connection(args.kind, sandbox.url)
        if args.kind == "mailchimp":
            forward.queue_messages(conn.pk, "email", args.messages, "fwd", "@bench.example.com")
        else:
            forward.queue_messages(conn.pk, "customer_id", args.messages, "CUST-fwd-", width=8)
        harness.settle()
        from connections.drain import drain

        profiler = None
        if args.profile:
            type(conn.partner).max_concurrency = 1
            profiler = cProfile.Profile()
            profiler.enable()
        account.start()
        report = drain(conn.pk, max_seconds=3600)
        spent = account.stop()
        wall, cpu = spent["wall"], spent["worker"]
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        load = os.getloadavg()[0]
        print(
            f"{args.kind} {args.messages:,}: {report.accepted:,} accepted in {wall:.2f} s "
            f"({report.accepted / wall:,.0f} ids/s), worker CPU {cpu:.2f} s = {cpu / args.messages * 1e6:.1f} µs a "
            f"message, load average {load:.1f}"
        )
        print(line(f"drain {args.messages:,}", args.messages, spent))
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
