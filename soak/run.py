"""Run the fault soaks and print their figures.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/soak python soak/run.py [--only crashes,faults,dbrestart,load]
        [--messages 100000] [--small] [--defaults]

Each soak runs in a scratch PostgreSQL database whose name starts with "soak" (created when missing, emptied
by every soak) against the partner sandbox in its own process, and writes its figures to
bench/results/soak-<date>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402
from soak import scene  # noqa: E402

SOAKS = ("crashes", "faults", "dbrestart", "load")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default=",".join(SOAKS), help="comma-separated: " + ", ".join(SOAKS))
    p.add_argument("--messages", type=int, default=None, help="messages per forward (default 100,000; small 4,000)")
    p.add_argument("--small", action="store_true", help="the small versions tests/soak runs")
    p.add_argument(
        "--defaults",
        action="store_true",
        help="workers with the product's lease, backoff and drain defaults instead of the fast soak settings",
    )
    p.add_argument("--seconds", type=float, default=None, help="load duration (default 60 s; small 5 s)")
    args = p.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SOAKS)
    if unknown:
        raise SystemExit(f"--only: unknown soak {', '.join(sorted(unknown))}; choose from {', '.join(SOAKS)}")
    messages = args.messages or (4_000 if args.small else 100_000)
    kills = 2 if args.small else 5
    seconds = args.seconds or (5 if args.small else 60)
    url = os.environ.get("DATABASE_URL") or scene.DEFAULT_URL
    if not harness.is_postgres(url):
        raise SystemExit("the soaks need PostgreSQL (DATABASE_URL=postgres://…)")
    scene.check_scratch(url)
    if args.defaults:
        scene.use_defaults()
    os.environ.setdefault("ALLOW_PRIVATE_DESTINATIONS", "true")
    os.environ.setdefault("ALLOW_BASE_URL_OVERRIDE", "true")
    harness.create_database(url)
    harness.configure(url)
    sandbox = harness.SandboxProcess()
    sandbox.start()
    figures, results = [], {}
    try:
        for name in only:
            harness.log(f"soak: {name} …")
            result, figs = run_one(name, sandbox, messages, kills, seconds)
            results[name] = result
            figures += figs
            harness.print_table(figs, title=f"\n{name}")
    finally:
        sandbox.stop()
    meta = {"when": harness.now_iso(), "messages": messages, "command": " ".join(sys.argv), "results": results}
    path = harness.write_json(harness.RESULTS / f"soak-{harness.now_iso()[:10]}.json", meta, figures)
    print(f"\nfigures written to {path.relative_to(harness.ROOT)}")
    failed = [f.label for f in figures if f.ok is False]
    if failed:
        print("NOT MET: " + "; ".join(failed))
    return 1 if failed else 0


def run_one(name, sandbox, messages, kills, seconds):
    if name == "crashes":
        from soak import crashes

        results, figs = [], []
        for broker in ("orm", "redis"):
            if broker == "redis" and not harness.redis_reachable(scene.redis_url()):
                harness.log(f"crashes: skipping the Redis broker, nothing answers at {scene.redis_url()}")
                continue
            r = crashes.run_crashes(sandbox, broker, messages // 2, kills)
            results.append(r)
            figs += crashes.figures(r)
        return results, figs
    if name == "faults":
        from soak import faults

        r = faults.run_faults(sandbox, messages // 2)
        return r, faults.figures(r)
    if name == "dbrestart":
        from soak import dbrestart

        r = dbrestart.run_dbrestart(sandbox, messages // 2)
        return r, dbrestart.figures(r)
    from soak import load

    r = load.run_load(sandbox, seconds, each=messages // 2)
    return r, load.figures(r)


if __name__ == "__main__":
    sys.exit(main())
