"""The refresh after 1% churn with PostgreSQL's default `work_mem` and with REFRESH_WORK_MEM, back to back.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench_10m .venv/bin/python bench/refresh_work_mem.py --rounds 2

Works on the audience `bench/refresh.py` leaves behind (run `bench/run.py --only refresh` once first). Each
round flips the same 1% of the profiles (`bench.refresh.churn`) and refreshes in a child process with
REFRESH_WORK_MEM=4MB (PostgreSQL's default), then flips them back and refreshes with --work-mem (default
256MB, the setting's default): both refreshes make the same number of changes. Prints each refresh's time and
its statements over a second. PostgreSQL only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402

DEFAULT = "4MB"  # PostgreSQL's own default work_mem


def refresh_timed(audience_id: int) -> dict:
    """In a child process: one refresh, with each statement over a second and how long it took."""
    from django.db import connection

    from audiences.models import Audience
    from audiences.refresh import refresh_audience

    slow = []

    def timed(execute, sql, params, many, context):
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            seconds = time.perf_counter() - started
            if seconds > 1:
                slow.append(f"{seconds:6.1f} s  {' '.join(sql.split())[:110]}")

    with connection.execute_wrapper(timed):
        result = refresh_audience(Audience.objects.get(pk=audience_id))
    return {"seconds": result.seconds, "added": result.added, "removed": result.removed, "slow": slow}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--work-mem", default="256MB", help="the value compared with PostgreSQL's default 4MB")
    args = p.parse_args(argv)
    url = harness.os.environ.get("DATABASE_URL", "")
    harness.prepare(url)
    if harness.vendor() != "postgresql":
        sys.exit("work_mem is PostgreSQL's: point DATABASE_URL at a PostgreSQL scratch database.")
    from audiences.models import Audience, Profile
    from bench import refresh

    audience = Audience.objects.filter(name=refresh.AUDIENCE).first()
    if audience is None or audience.size == 0:
        sys.exit(f"no refreshed '{refresh.AUDIENCE}' here: run bench/run.py --only refresh on this database first.")
    harness.log(f"{Profile.objects.count():,} profiles, audience of {audience.size:,}")
    times = {DEFAULT: [], args.work_mem: []}
    for _ in range(args.rounds):
        for work_mem in (DEFAULT, args.work_mem):
            changed = refresh.churn()
            harness.settle()
            got = harness.child(
                "bench.refresh_work_mem:refresh_timed", {"audience_id": audience.pk}, env={"REFRESH_WORK_MEM": work_mem}
            )
            times[work_mem].append(got["seconds"])
            harness.log(
                f"work_mem {work_mem}: churn of {changed:,} profiles refreshed in {got['seconds']:.1f} s "
                f"(+{got['added']:,} -{got['removed']:,})"
            )
            for line in got["slow"]:
                print(f"    {line}", flush=True)
    for work_mem, seconds in times.items():
        harness.log(f"work_mem {work_mem}: {', '.join(f'{s:.1f}' for s in seconds)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
