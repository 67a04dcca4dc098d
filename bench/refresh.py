"""Refresh: a rule audience over every profile, first refresh and after 1% churn, beside a raw anti-join.

Criteria: `status in ["Premium", "Trial"]` — the seeder gives 35% Premium and 15% Trial, so about half
of the profiles match. Churn: 1% of the profiles (id % 100 = 0) flip in or out of it (Premium/Trial →
Free, Free → Premium), so ~1% of the audience changes. Raw limit: one hand-written SQL anti-join that
computes the same adds and removes into a temporary table. The engine's refreshes run in a child process
(their peak memory is the refresh's), the raw SQL in this one, each on the same data just before.
"""

from __future__ import annotations

from bench import harness
from bench.harness import Figure

HALF = {"user": "status", "op": "in", "value": ["Premium", "Trial"]}
AUDIENCE = "bench: Premium or Trial"
CHURN_MODULO = 100  # 1%


def _status_sql() -> str:
    if harness.vendor() == "postgresql":
        return "lower(p.attributes ->> 'status') IN ('premium', 'trial')"
    return "lower(json_extract(p.attributes, '$.status')) IN ('premium', 'trial')"


def raw_antijoin(audience_id: int) -> tuple[float, int, int]:
    """The same adds/removes by one hand-written statement; returns (seconds, adds, removes)."""
    from audiences.models import Membership, Profile

    match = _status_sql()
    tp, tm = Profile._meta.db_table, Membership._meta.db_table
    harness.execute("DROP TABLE IF EXISTS bench_raw_changes")
    sql = (
        f"CREATE TEMPORARY TABLE bench_raw_changes AS "
        f"SELECT p.id AS profile_id, 'add' AS action FROM {tp} p WHERE {match} "
        f"AND NOT EXISTS (SELECT 1 FROM {tm} m WHERE m.audience_id = %s AND m.profile_id = p.id) "
        f"UNION ALL "
        f"SELECT m.profile_id, 'remove' FROM {tm} m WHERE m.audience_id = %s "
        f"AND NOT EXISTS (SELECT 1 FROM {tp} p WHERE p.id = m.profile_id AND {match})"
    )
    if harness.vendor() == "postgresql":
        # The same memory for its hashes as the refresh gives its own (REFRESH_WORK_MEM), or the limit would
        # measure PostgreSQL's default spilling to disk rather than the statement.
        from django.conf import settings

        harness.execute("SELECT set_config('work_mem', %s, false)", [settings.REFRESH_WORK_MEM])
    with harness.timed() as t:
        harness.execute(sql, [audience_id, audience_id])
    if harness.vendor() == "postgresql":
        harness.execute("RESET work_mem")
    adds = harness.scalar("SELECT COUNT(*) FROM bench_raw_changes WHERE action = 'add'")
    removes = harness.scalar("SELECT COUNT(*) FROM bench_raw_changes WHERE action = 'remove'")
    harness.execute("DROP TABLE bench_raw_changes")
    return t["seconds"], adds, removes


def churn() -> int:
    """Flip 1% of the profiles in or out of the audience, in one statement (not timed as the refresh)."""
    from audiences.models import Profile

    table = Profile._meta.db_table
    if harness.vendor() == "postgresql":
        sql = (
            f"UPDATE {table} SET updated_at = now(), attributes = jsonb_set(attributes, '{{status}}', "
            f"CASE WHEN attributes->>'status' IN ('Premium', 'Trial') THEN '\"Free\"' ELSE '\"Premium\"' END::jsonb) "
            f"WHERE id %% %s = 0"
        )
    else:
        sql = (
            f"UPDATE {table} SET attributes = json_set(attributes, '$.status', "
            f"CASE WHEN json_extract(attributes, '$.status') IN ('Premium', 'Trial') THEN 'Free' ELSE 'Premium' END) "
            f"WHERE id %% %s = 0"
        )
    return harness.execute(sql, [CHURN_MODULO])


def refresh_child(audience_id: int) -> dict:
    """In a child process: one refresh as the scheduled task runs it."""
    from audiences.models import Audience, RefreshRun
    from audiences.refresh import refresh_audience

    result = refresh_audience(Audience.objects.get(pk=audience_id))
    run = RefreshRun.objects.filter(audience_id=audience_id).order_by("-pk").first()
    return {
        "seconds": result.seconds,
        "added": result.added,
        "removed": result.removed,
        "size": result.size,
        "run_id": run.pk,
    }


SPLIT = [{"name": "A", "percent": 45}, {"name": "B", "percent": 45}, {"name": "control", "percent": 10}]


def prepare(variants: bool = False) -> int:
    """A fresh audience with no members and no connections (split 45/45/10 with `variants`); returns its id."""
    from audiences import variants as split
    from audiences.models import Audience

    harness.reset_state()
    audience = Audience.objects.create(name=AUDIENCE, criteria=HALF)
    if variants:
        split.change_split(audience, SPLIT)
    return audience.pk


def run(ctx) -> list[Figure]:
    from audiences.models import Profile

    n = Profile.objects.count()
    variants = getattr(ctx.args, "variants", False)
    audience_id = prepare(variants)
    harness.settle()
    raw_first, adds, removes = raw_antijoin(audience_id)
    harness.settle()
    first = harness.child("bench.refresh:refresh_child", {"audience_id": audience_id})
    assert (first["added"], first["removed"]) == (adds, removes), (first, adds, removes)
    ctx.state["first_run_id"] = first["run_id"]
    ctx.state["audience_id"] = audience_id
    harness.log(f"first refresh: +{first['added']:,} in {first['seconds']:.2f} s (raw {raw_first:.2f} s)")

    changed = churn()
    harness.settle()
    raw_churn, adds, removes = raw_antijoin(audience_id)
    harness.settle()
    again = harness.child("bench.refresh:refresh_child", {"audience_id": audience_id})
    assert (again["added"], again["removed"]) == (adds, removes), (again, adds, removes)
    harness.log(
        f"churn refresh: +{again['added']:,} -{again['removed']:,} in {again['seconds']:.2f} s (raw {raw_churn:.2f} s)"
    )
    ctx.state["refresh_peak_rss_mb"] = max(first["peak_rss_mb"], again["peak_rss_mb"])
    share = first["size"] / n if n else 0
    ratio = again["seconds"] / raw_churn if raw_churn else None
    return [
        Figure(
            "refresh.first",
            f"first refresh, {n:,} profiles ({share:.0%} match: +{first['added']:,})"
            + (", audience split 45/45/10" if variants else ""),
            first["seconds"],
            "s",
            raw_first,
            "anti-join",
            note="criteria: status in [Premium, Trial]",
        ),
        Figure(
            "refresh.churn",
            f"refresh after 1% churn ({changed:,} changed: +{again['added']:,} -{again['removed']:,})",
            again["seconds"],
            "s",
            raw_churn,
            "anti-join",
            target="≤ 3× raw and < 5 s",
            ok=ratio is not None and ratio <= 3 and again["seconds"] < 5,
        ),
    ]
