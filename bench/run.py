"""Audience Relay benchmark suite: every figure of issue 7 beside its raw limit, measured in the same run.

    python bench/run.py --profiles 1000000                 # everything (make bench PROFILES=1000000)
    python bench/run.py --profiles 100000 --only refresh,fanout --json out.json
    python bench/run.py --profiles 100000 --only ingest      # event ingest under 1, 10 and 50 audiences
    python bench/run.py --profiles 100000 --only latency_load  # a change's latency under API load and a backlog
    python bench/run.py --smoke                            # seconds, for the test suite (make bench-smoke)

Runs against DATABASE_URL (default postgres://postgres@127.0.0.1:5432/bench, created when missing), seeds
profiles when it holds fewer than --profiles, and leaves the database for the next run (--drop removes it).
Growth figures come from a second run at --growth-base profiles (default a tenth) in its own scratch
database (`<name>_<base>`). Results: a table on stdout and JSON under bench/results/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import harness  # noqa: E402

PIECES = ("refresh", "fanout", "forward", "profile_path", "latency_load", "memory", "queries", "ingest")
GROWTH_PIECES = ("refresh", "profile_path", "memory")


def sizes(text: str) -> list[int]:
    return [int(x.replace("_", "").replace(",", "")) for x in text.split("+") if x]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--profiles", type=int, default=None, help="profiles in the database (default 1,000,000)")
    p.add_argument("--only", default=",".join(PIECES), help=f"comma-separated subset of {', '.join(PIECES)}")
    p.add_argument("--json", default=None, help="where to write the JSON (default bench/results/<time>.json)")
    p.add_argument(
        "--messages",
        default=None,
        type=sizes,
        help="Mailchimp backlogs to drain, '+'-separated (default 100000+1000000)",
    )
    p.add_argument("--braze-messages", type=int, default=None, help="Braze backlog (default 100,000)")
    p.add_argument("--updates", type=int, default=None, help="per-profile path: updates per broker (default 500)")
    p.add_argument("--backlog", type=int, default=None, help="latency under load: backlog to drain (default 100,000)")
    p.add_argument(
        "--changes", type=int, default=None, help="latency under load: single changes per broker (default 100)"
    )
    p.add_argument(
        "--load-rate", type=float, default=None, help="latency under load: API profile updates/s (default 500)"
    )
    p.add_argument("--load-seconds", type=float, default=900, help="latency under load: longest wrk run per broker")
    p.add_argument(
        "--web-workers",
        type=int,
        default=None,
        help="latency under load: gunicorn workers, 4 threads each (default 2 × cores, as the README's Deployment)",
    )
    p.add_argument(
        "--growth-base",
        type=int,
        default=None,
        help="profiles of the growth comparison run (default profiles/10; 0 skips it)",
    )
    p.add_argument(
        "--variants",
        action="store_true",
        help="split the refresh audience 45/45/10 (A, B, control) and fan out to A and B besides the whole audience",
    )
    p.add_argument(
        "--growth-forward",
        action="store_true",
        help="the growth run also drains the largest Mailchimp backlog, so forwarding per identity\n"
        "is compared at both profile counts with the same backlog",
    )
    p.add_argument(
        "--growth-from",
        default=None,
        help="the JSON of an earlier run at fewer profiles to compare with, instead of a growth run\n"
        "(for sizes where measuring both in one go takes too long)",
    )
    p.add_argument("--smoke", action="store_true", help="small and quick: 10,000 profiles, small backlogs")
    p.add_argument("--drop", action="store_true", help="drop the scratch database(s) afterwards")
    p.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        help="Redis for the Redis-broker measurements (a database of its own: it is flushed)",
    )
    p.add_argument(
        "--brokers",
        default="orm,redis",
        help="brokers of the per-profile path and of latency under load (default orm,redis)",
    )
    p.add_argument("--growth-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    small = args.smoke
    args.profiles = args.profiles if args.profiles is not None else (10_000 if small else 1_000_000)
    args.messages = args.messages or ([2_000, 10_000] if small else [100_000, 1_000_000])
    if args.braze_messages is None:  # 0 leaves Braze out
        args.braze_messages = 1_500 if small else 100_000
    args.updates = args.updates or (10 if small else 500)
    args.backlog = args.backlog or (2_000 if small else 100_000)
    args.changes = args.changes or (2 if small else 100)
    args.load_rate = args.load_rate or (50 if small else 500)
    args.web_workers = args.web_workers or (2 * (os.cpu_count() or 1))
    if args.growth_base is None:
        args.growth_base = 1_000 if small else args.profiles // 10
    args.brokers = [x.strip() for x in args.brokers.split(",") if x.strip()]
    if not args.brokers or set(args.brokers) - {"orm", "redis"}:
        p.error("--brokers: orm, redis or both (comma-separated)")
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.only) - set(PIECES)
    if unknown:
        p.error(f"--only: unknown {', '.join(sorted(unknown))}; choose from {', '.join(PIECES)}")
    return args


class Ctx:
    def __init__(self, args, url):
        self.args = args
        self.url = url
        self.state = {}
        self.figures = []
        self._sandbox = None
        self._done = set()

    def sandbox(self):
        if self._sandbox is None:
            self._sandbox = harness.SandboxProcess()
            self._sandbox.start()
        return self._sandbox

    def run_piece(self, name):
        import importlib

        if name in self._done:
            return []
        self._done.add(name)
        started = time.perf_counter()
        harness.log(f"— {name}")
        figures = importlib.import_module(f"bench.{name}").run(self)
        harness.log(f"— {name} done in {time.perf_counter() - started:.0f} s")
        self.figures.extend(figures)
        return figures

    def close(self):
        if self._sandbox is not None:
            self._sandbox.stop()


def growth_run(args, url) -> dict | None:
    """The same pieces at --growth-base profiles, in a scratch database of their own, via a child run."""
    import json
    import subprocess

    base = args.growth_base
    pieces = [p for p in GROWTH_PIECES if p in args.only]
    forward = args.growth_forward and "forward" in args.only
    if forward:
        pieces.append("forward")
    if not base or base >= args.profiles or not pieces:
        return None
    base_url = harness.with_db_name(url, f"{harness.db_name(url)}_{base}")
    out = harness.RESULTS / f"growth-{os.getpid()}.json"
    cmd = [
        sys.executable,
        str(Path(__file__)),
        "--profiles",
        str(base),
        "--only",
        ",".join(pieces),
        "--growth-base",
        "0",
        "--json",
        str(out),
        "--updates",
        str(args.updates),
        "--messages",
        str(max(args.messages)) if forward else "+".join(str(m) for m in args.messages),
        "--braze-messages",
        "0" if forward else str(args.braze_messages),
        "--redis-url",
        args.redis_url,
        # The smoke checks that the growth figures are made, not their values: one broker's path will do.
        "--brokers",
        "orm" if args.smoke else ",".join(args.brokers),
        "--growth-child",
    ]
    if args.drop:
        cmd.append("--drop")
    harness.log(f"growth: the same at {base:,} profiles in {harness.db_name(base_url)}")
    subprocess.run(cmd, check=True, env={**os.environ, "DATABASE_URL": base_url}, stdout=subprocess.DEVNULL)
    data = json.loads(out.read_text())
    out.unlink()
    return {f["key"]: f for f in data["figures"]} | {"_profiles": base}


def growth_from(path: str) -> dict:
    import json

    data = json.loads(Path(path).read_text())
    return {f["key"]: f for f in data["figures"]} | {"_profiles": data["meta"]["profiles"]}


def growth_figures(ctx, base) -> list:
    from bench.harness import Figure

    mine = {f.key: f for f in ctx.figures}
    n, b = ctx.args.profiles, base["_profiles"] if base else None
    figures = []

    def pair(key, label, target=None):
        if base is None or key not in mine or key not in base or base[key]["value"] in (None, 0):
            return
        value = mine[key].value
        if value is None:
            return
        g = value / base[key]["value"]
        figures.append(
            Figure(
                f"growth.{key}",
                f"growth {b:,} → {n:,} profiles: {label}",
                g,
                "×",
                target="< 1.5×" if target else "",
                ok=(g < 1.5) if target else None,
                note=f"{harness.fmt(base[key]['value'], mine[key].unit)} → {harness.fmt(value, mine[key].unit)}",
            )
        )

    pair("refresh.churn", "refresh after 1% churn (seconds)")
    pair("profile_path.orm.median", "per-profile path median, ORM broker", target=True)
    pair("profile_path.redis.median", "per-profile path median, Redis broker", target=True)
    pair("profile_path.orm.p95", "per-profile path p95, ORM broker", target=True)
    pair("profile_path.redis.p95", "per-profile path p95, Redis broker", target=True)
    pair("memory.refresh", "refresh peak RSS")
    # Forwarding does not depend on the profile count (it reads only the outbox): its growth is the
    # backlog's, 100,000 → 1,000,000 messages, drained in this run.
    drains = ctx.state.get("drains", {})
    largest = f"forward.mailchimp.{max(drains)}" if drains else None
    if base is not None and largest in base and largest in mine:
        before, after = base[largest]["value"], mine[largest].value
        g = before / after  # time per identity grows as the rate falls
        figures.append(
            Figure(
                "growth.forward.profiles",
                f"growth {b:,} → {n:,} profiles: forwarding time per identity ({max(drains):,} messages)",
                g,
                "×",
                target="< 1.5×",
                ok=g < 1.5,
                note=f"{before:,.0f} → {after:,.0f} ids/s",
            )
        )
    if len(drains) >= 2:
        small, large = min(drains), max(drains)
        g = drains[small]["rate"] / drains[large]["rate"]
        figures.append(
            Figure(
                "growth.forward",
                f"growth {small:,} → {large:,} messages: forwarding time per identity",
                g,
                "×",
                target="< 1.5×",
                ok=g < 1.5,
                note=f"{drains[small]['rate']:,.0f} → {drains[large]['rate']:,.0f} ids/s",
            )
        )
    return figures


def main(argv=None) -> int:
    args = parse(argv)
    url = os.environ.get("DATABASE_URL") or harness.DEFAULT_URL
    harness.prepare(url)
    started = time.perf_counter()
    ctx = Ctx(args, url)
    base = None
    try:
        seeded = harness.ensure_profiles(args.profiles)
        for name in PIECES:
            if name in args.only:
                ctx.run_piece(name)
        if not args.growth_child:
            ctx.close()
            base = growth_from(args.growth_from) if args.growth_from else growth_run(args, url)
            ctx.figures.extend(growth_figures(ctx, base))
    finally:
        ctx.close()
    meta = {
        "profiles": args.profiles,
        "database": harness.vendor(),
        "db": harness.db_name(url),
        "when": harness.now_iso(),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "seconds": time.perf_counter() - started,
        "seeded": seeded,
        "cores": os.cpu_count(),
    }
    out = Path(args.json) if args.json else harness.RESULTS / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    harness.write_json(out, meta, ctx.figures)
    if not args.growth_child:
        harness.print_table(
            ctx.figures,
            title=f"Audience Relay benchmarks — {args.profiles:,} profiles, "
            f"{meta['database']}, {os.cpu_count()} cores ({meta['seconds']:.0f} s)",
        )
        print(f"\nJSON: {out}")
    if args.drop:
        from django.db import connections

        connections.close_all()
        harness.drop_database(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
