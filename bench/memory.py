"""Memory: peak resident memory of the process draining the largest backlog and of the refresh.

Both are measured in their own child processes (`resource.getrusage` there). Raw limit: the peak RSS of
the same kind of child that sets Django up and does nothing, i.e. the interpreter and the framework.
"""

from __future__ import annotations

from bench import harness
from bench.harness import Figure


def idle() -> dict:
    from django.db import connection

    connection.ensure_connection()
    return {}


def run(ctx) -> list[Figure]:
    if "refresh_peak_rss_mb" not in ctx.state:
        ctx.run_piece("refresh")
    if not ctx.args.growth_child and not ctx.state.get("drains"):
        ctx.run_piece("forward")
    baseline = harness.child("bench.memory:idle", {})["peak_rss_mb"]
    figures = []
    drains = ctx.state.get("drains", {})
    if drains:
        largest = max(drains)
        rss = drains[largest]["peak_rss_mb"]
        note = ", ".join(f"{n:,} messages: {d['peak_rss_mb']:.0f} MB" for n, d in sorted(drains.items()))
        grows = len(drains) > 1 and drains[largest]["peak_rss_mb"] > 1.2 * drains[min(drains)]["peak_rss_mb"]
        figures.append(
            Figure(
                "memory.drain",
                f"peak RSS of the worker draining {largest:,} messages",
                rss,
                "MB",
                baseline,
                "idle Django process",
                target="< 300 MB, flat with the backlog",
                ok=rss < 300 and not grows,
                note=note,
            )
        )
    rss = ctx.state["refresh_peak_rss_mb"]
    figures.append(
        Figure(
            "memory.refresh",
            f"peak RSS of the refresh ({ctx.args.profiles:,} profiles)",
            rss,
            "MB",
            baseline,
            "idle Django process",
            target="< 300 MB",
            ok=rss < 300,
        )
    )
    return figures
