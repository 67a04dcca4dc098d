"""Summarize the stages `latency_load` wrote (bench/results/latency-stages-<broker>-<pid>.json): for the changes
made while the backlog drained and the others, p50 / p95 / max in ms of each stage of a change's way.

    .venv/bin/python -m bench.latency_stages bench/results/latency-stages-redis-<pid>.json
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from bench.latency_load import percentile

STAGES = {
    "POST -> committed": lambda r: r["committed"],
    "committed -> its drain running": lambda r: max(0.0, r["started"] - r["committed"]),
    "drain running -> its batch sent": lambda r: r["sent"] - max(r["started"], r["committed"]),
    "sent -> partner's answer recorded": lambda r: r["acknowledged"] - r["sent"],
    "total, until the sandbox showed it": lambda r: r["seen"],
}


def summary(rows: list) -> list[str]:
    lines = []
    for during in (True, False):
        these = [r for r in rows if r["during_backlog"] == during and "started" in r]
        if not these:
            continue
        lines.append(f"{len(these)} changes {'while the backlog drained' if during else 'outside it'}:")
        for name, stage in STAGES.items():
            ms = sorted(stage(r) * 1000 for r in these)
            lines.append(f"  {name}: {statistics.median(ms):,.0f} / {percentile(ms, 0.95):,.0f} / {ms[-1]:,.0f} ms")
        busy = sum(r["running_at_enqueue"] >= 2 for r in these)
        early = sum(r["queued_before_commit"] for r in these)
        lines.append(f"  both workers busy when its drain was queued: {busy}; drain queued before the commit: {early}")
    return lines


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        sys.exit("usage: python -m bench.latency_stages bench/results/latency-stages-<broker>-<pid>.json [...]")
    for path in sys.argv[1:]:
        print(Path(path).name)
        print("\n".join(summary(json.loads(Path(path).read_text()))))
