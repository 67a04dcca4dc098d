"""Ingest: batches of 'Play Video' events posted through the API under 1, 10 and 50 rule audiences, beside a raw COPY.

Each batch is 5,000 events (500 with --smoke) for existing profiles, posted to `POST /api/v1/events/bulk/` by
an in-process DRF client with a write token: the whole request cycle (parsing, validation, storage and the
re-evaluation of the rule audiences for the profiles it touched). The audiences cycle through five shapes
(Play Video by destination, status with View Destination, Search Flights by passengers, country, Book Trip),
so a fifth of them read the events the batch writes; they are refreshed over every profile first, so their
members exist. Raw limit: the same rows written with COPY (PostgreSQL) or one executemany (SQLite) into the
events table, in the same run. The events of each step are deleted afterwards, so every step sees the same data.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import statistics

from bench import harness
from bench.harness import Figure

AUDIENCE_COUNTS = (1, 10, 50)
DESTINATIONS = ("Paris", "Rome", "Tokyo", "Lisbon", "New York")
CATEGORIES = ("Destination Intro", "Highlights", "Food & Drink")
COUNTRIES = (["US", "CA"], ["GB", "IE"], ["DE", "AT"], ["FR", "BE"], ["IT", "ES"])
STATUSES = ("Premium", "Free", "Trial")


def criteria(i: int) -> dict:
    """The i-th audience: one of five shapes, varied so that no two are the same."""
    n = i // 5
    shape = i % 5
    if shape == 0:
        where = [{"attribute": "destination", "op": "eq", "value": DESTINATIONS[n % 5]}]
        return {"event": "Play Video", "where": where, "in_last_days": 30 - n % 20}
    if shape == 1:
        return {
            "all": [
                {"user": "status", "op": "eq", "value": STATUSES[n % 3]},
                {"event": "View Destination", "in_last_days": 7 + n},
            ]
        }
    if shape == 2:
        where = [{"attribute": "passengers", "op": "gte", "value": 1 + n % 4}]
        return {"event": "Search Flights", "where": where, "in_last_days": 30}
    if shape == 3:
        return {"user": "country", "op": "in", "value": COUNTRIES[n % 5]}
    return {"event": "Book Trip", "count": {"op": "gte", "value": 1 + n % 3}, "in_last_days": 60 + n}


def prepare(count: int) -> None:
    """`count` fresh rule audiences, each refreshed over every profile."""
    from audiences.models import Audience
    from audiences.refresh import refresh_audience

    harness.reset_state()
    for i in range(count):
        refresh_audience(Audience.objects.create(name=f"bench ingest {i}", criteria=criteria(i)))
    if harness.vendor() == "postgresql":
        # The refreshes just wrote every membership at once (8.3 million for 50 audiences at 1M profiles), which
        # a live system never does: unvacuumed, a batch reads each membership it checks from the heap (its
        # page not yet all-visible), and autovacuum of the fresh rows runs during the batches it would time.
        harness.execute("VACUUM ANALYZE audiences_membership")


def client():
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from staff.models import ApiToken

    user, _ = get_user_model().objects.get_or_create(username="bench-ingest")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'bench ingest', 'write')[1]}")
    return api


def batches(profiles: list[tuple[int, str]], size: int, count: int, seed: int) -> list[list[dict]]:
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC)
    out = []
    for _ in range(count):
        batch = []
        for profile_id, external_id in rng.sample(profiles, size):
            batch.append(
                {
                    "external_id": external_id,
                    "profile_id": profile_id,
                    "name": "Play Video",
                    "attributes": {"category": rng.choice(CATEGORIES), "destination": rng.choice(DESTINATIONS)},
                    "occurred_at": (now - dt.timedelta(seconds=rng.randrange(86_400))).isoformat(),
                }
            )
        out.append(batch)
    return out


def raw_copy(batch: list[dict]) -> float:
    """Seconds to write the batch's rows straight into the events table."""
    from django.db import connection, transaction

    from audiences.models import Event

    table = Event._meta.db_table
    columns = "profile_id, name, attributes, occurred_at"
    rows = [(e["profile_id"], e["name"], json.dumps(e["attributes"]), e["occurred_at"]) for e in batch]
    with harness.timed() as t, transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            cursor.executemany(f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s)", rows)
    return t["seconds"]


def post(api, batch: list[dict]) -> tuple[float, int]:
    """Seconds to post the batch, and the membership changes it made."""
    payload = {"events": [{k: v for k, v in e.items() if k != "profile_id"} for e in batch]}
    with harness.timed() as t:
        response = api.post("/api/v1/events/bulk/", payload, format="json")
    assert response.status_code == 200, response.content[:500]
    answer = response.json()
    assert answer["events_created"] == len(batch), answer
    return t["seconds"], answer["memberships_added"] + answer["memberships_removed"]


def step(api, audiences: int, work: list[list[dict]]) -> dict:
    from audiences.models import Event

    prepare(audiences)
    start = harness.scalar(f"SELECT COALESCE(MAX(id), 0) FROM {Event._meta.db_table}")
    harness.settle()
    raw = [raw_copy(batch) for batch in work]
    harness.execute(f"DELETE FROM {Event._meta.db_table} WHERE id > %s", [start])
    harness.settle()
    posted = [post(api, batch) for batch in work]
    harness.execute(f"DELETE FROM {Event._meta.db_table} WHERE id > %s", [start])
    size = len(work[0])
    result = {"median": statistics.median(s for s, _ in posted), "raw_median": statistics.median(raw), "size": size}
    result["rate"], result["raw_rate"] = size / result["median"], size / result["raw_median"]
    result["changes"] = statistics.median(c for _, c in posted)
    harness.log(
        f"{audiences} audiences: {result['rate']:,.0f} events/s (batch median {result['median']:.2f} s, "
        f"{result['changes']:,.0f} membership changes), raw COPY {result['raw_rate']:,.0f} events/s"
    )
    return result


def run(ctx) -> list[Figure]:
    from audiences.models import Profile

    size, count = (500, 2) if ctx.args.smoke else (5_000, 5)
    profiles = list(Profile.objects.order_by("pk").values_list("pk", "external_id"))
    work = batches(profiles, size, count, seed=16)
    api = client()
    steps = {n: step(api, n, work) for n in AUDIENCE_COUNTS}
    figures = []
    for n, r in steps.items():
        ten = n == 10
        figures.append(
            Figure(
                f"ingest.{n}",
                f"event ingest via the API, {n} rule audience{'s' if n > 1 else ''} ({size:,}-event batches)",
                r["rate"],
                "events/s",
                r["raw_rate"],
                "COPY",
                target="≥ 30% of raw" if ten else "",
                ok=r["rate"] >= 0.3 * r["raw_rate"] if ten else None,
                better="higher",
                note=f"batch median {r['median']:.2f} s over {count} batches, "
                f"{r['changes']:,.0f} membership changes a batch (median)",
            )
        )
    ten = steps[10]
    figures.append(
        Figure(
            "ingest.batch",
            f"one {size:,}-event batch via the API, 10 rule audiences (median)",
            ten["median"],
            "s",
            ten["raw_median"],
            "COPY",
            target="< 1 s",
            ok=ten["median"] < 1,
        )
    )
    growth = steps[50]["median"] / steps[1]["median"]
    figures.append(
        Figure(
            "ingest.audiences",
            "event ingest cost, 50 rule audiences against 1",
            growth,
            "×",
            target="< 2×",
            ok=growth < 2,
            note=f"{harness.fmt(steps[1]['median'], 's')} → {harness.fmt(steps[50]['median'], 's')} per batch",
        )
    )
    return figures
