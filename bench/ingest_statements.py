"""Where a 5,000-event ingest batch spends its time, statement by statement, under the ingest bench's audiences.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_ingest3 .venv/bin/python bench/ingest_statements.py 50
    … 50 --prepare      # (re)create the 50 audiences of `bench/ingest.py` first (each refreshed over every profile)
    … 50 --explain SQL  # EXPLAIN (ANALYZE, BUFFERS) the statements starting with SQL instead of running them

Runs `ingest_events` on the bench's batches (seed 16, as `bench/ingest.py`; `--seed` for others: after a bench
run the database already holds seed 16's events, so its batches change few memberships) in rolled-back transactions, so
the database stays as it was, and prints each statement over 10 ms, the batch's wall time and its CPU time
(this process's plus its PostgreSQL backend's, read from /proc: the database must be on this machine), which
a loaded machine disturbs less than the wall clock. Medians at the end. PostgreSQL only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("audiences", type=int)
    p.add_argument("--batches", type=int, default=5)
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--prepare", action="store_true")
    p.add_argument("--explain", default=None)
    args = p.parse_args(argv)

    import django

    django.setup()
    from django.db import connection, transaction

    from audiences.ingest import ingest_events
    from audiences.models import Audience, Profile
    from bench import ingest

    if args.prepare or Audience.objects.filter(name__startswith="bench ingest ").count() != args.audiences:
        ingest.prepare(args.audiences)
    profiles = list(Profile.objects.order_by("pk").values_list("pk", "external_id"))
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    tick = os.sysconf("SC_CLK_TCK")

    def cpu() -> float:
        fields = Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()
        return time.process_time() + (int(fields[11]) + int(fields[12])) / tick

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        if args.explain and sql.startswith(args.explain):
            execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params, many, context)
            print("\n".join(row[0] for row in context["cursor"].fetchall()))
            raise SystemExit  # the statement's result was the plan: the batch cannot go on
        try:
            return execute(sql, params, many, context)
        finally:
            seconds = time.perf_counter() - started
            if seconds > 0.01:
                print(f"  {seconds:.3f} s  {' '.join(sql.split())[:100]}")

    walls, cpus = [], []
    for batch in ingest.batches(profiles, 5_000, args.batches, seed=args.seed):
        events = [
            {
                **{k: v for k, v in e.items() if k != "profile_id"},
                "occurred_at": dt.datetime.fromisoformat(e["occurred_at"]),
            }
            for e in batch
        ]
        with transaction.atomic(), connection.execute_wrapper(timed):
            cpu_before, started = cpu(), time.perf_counter()
            result = ingest_events(events)
            walls.append(time.perf_counter() - started)
            cpus.append(cpu() - cpu_before)
            transaction.set_rollback(True)
        print(
            f"batch {walls[-1]:.3f} s, CPU {cpus[-1]:.3f} s, "
            f"+{result.memberships_added} -{result.memberships_removed} memberships"
        )
    wall, used = statistics.median(walls), statistics.median(cpus)
    print(f"{args.audiences} audiences: batch median {wall:.3f} s, CPU {used:.3f} s")


if __name__ == "__main__":
    main()
