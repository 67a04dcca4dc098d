"""The worker's CPU per forwarded message: one drain of a backlog, in this process, with the sandbox in its own.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_x .venv/bin/python bench/drain_cpu.py mailchimp 100000
    … --profile 20000: the same drain in one lane under cProfile, its top functions printed

User + system time of this process around `connections.drain.drain` (every lane is a thread of it): unlike the
drain's wall time, it hardly moves when other work loads the machine, so a before/after pair taken on a busy
machine still compares the worker's own cost (the database's and the sandbox's are not in it).
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


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=("mailchimp", "braze"))
    p.add_argument("messages", type=int)
    p.add_argument("--profile", action="store_true", help="one lane, under cProfile")
    args = p.parse_args(argv)
    url = os.environ.get("DATABASE_URL", harness.DEFAULT_URL)
    harness.prepare(url)
    sandbox = harness.SandboxProcess()
    sandbox.start()
    try:
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
        cpu, started = cpu_seconds(), time.perf_counter()
        report = drain(conn.pk, max_seconds=3600)
        wall, cpu = time.perf_counter() - started, cpu_seconds() - cpu
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        load = os.getloadavg()[0]
        print(
            f"{args.kind} {args.messages:,}: {report.accepted:,} accepted in {wall:.2f} s "
            f"({report.accepted / wall:,.0f} ids/s), worker CPU {cpu:.2f} s = {cpu / args.messages * 1e6:.1f} µs a "
            f"message, load average {load:.1f}"
        )
    finally:
        sandbox.stop()


if __name__ == "__main__":
    main()
