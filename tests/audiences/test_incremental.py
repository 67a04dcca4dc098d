"""Incremental re-evaluation after ingest gives exactly the membership a full refresh computes on the same data.

Random audiences (events by name and attribute, counts, user attributes, negations, exclusions, identities) and
random batches of events and profile changes; ingest evaluates the audiences together, a full refresh each one
alone. After every batch, each audience's members must be those a full refresh of a copy of its criteria
selects at that moment.
"""

import datetime as dt
import random

import pytest
from django.utils import timezone

from audiences.ingest import ProfileInput, ingest_events, upsert_profiles
from audiences.models import Audience, Membership
from audiences.refresh import refresh_audience
from tests.audiences.factories import AudienceFactory

pytestmark = pytest.mark.django_db

NAMES = ("Play Video", "Book Trip", "Search Flights")
DESTINATIONS = ("Paris", "Rome", "Tokyo")
STATUSES = ("Premium", "Free", "Trial")


def random_condition(rng, depth=0):
    kind = rng.choice(
        ["event", "event", "count", "user", "identity"] + (["all", "any", "not", "include"] if depth < 2 else [])
    )
    if kind == "event":
        node = {"event": rng.choice(NAMES), "in_last_days": rng.choice([1, 7, 30])}
        if rng.random() < 0.5:
            node["where"] = [
                {"attribute": "destination", "op": rng.choice(["eq", "ne"]), "value": rng.choice(DESTINATIONS)}
            ]
        return node
    if kind == "count":
        node = {
            "event": rng.choice(NAMES),
            "count": {"op": rng.choice(["eq", "gte", "lt"]), "value": rng.randint(0, 3)},
        }
        if rng.random() < 0.3:
            node["where"] = [{"attribute": "destination", "op": "in", "value": rng.sample(DESTINATIONS, 2)}]
        return node
    if kind == "user":
        return {"user": "status", "op": rng.choice(["eq", "ne"]), "value": rng.choice(STATUSES)}
    if kind == "identity":
        return {"has_identity": "email"}
    if kind == "not":
        return {"not": random_condition(rng, depth + 1)}
    if kind == "include":
        return {"include": random_condition(rng, depth + 1), "exclude": random_condition(rng, depth + 1)}
    return {kind: [random_condition(rng, depth + 1) for _ in range(rng.randint(1, 3))]}


def events(rng, now, count, seq):
    return [
        {
            "external_id": f"u{rng.randrange(40)}",  # some are new: they become bare profiles
            "name": rng.choice(NAMES),
            "attributes": {"destination": rng.choice(DESTINATIONS)},
            "occurred_at": now - dt.timedelta(hours=rng.randrange(24 * 20)),
            "source_id": f"e{seq}-{n}",
        }
        for n in range(count)
    ]


def full_refresh_members(criteria) -> set[int]:
    twin = AudienceFactory(name=f"twin {random.random()}", criteria=criteria)
    refresh_audience(twin)
    members = set(Membership.objects.filter(audience=twin).values_list("profile_id", flat=True))
    twin.delete()
    return members


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_membership_matches_a_full_refresh(seed):
    rng = random.Random(seed)
    now = timezone.now()
    upsert_profiles(
        [ProfileInput(f"u{i}", {"status": rng.choice(STATUSES)}, [("email", f"u{i}@example.com")]) for i in range(20)]
    )
    ingest_events(events(rng, now, 60, "seed"))
    audiences = [AudienceFactory(name=f"a{i}", criteria=random_condition(rng)) for i in range(12)]
    for audience in audiences:
        refresh_audience(audience)

    for step in range(8):
        if step % 3 == 2:
            changed = rng.sample(range(40), 6)
            upsert_profiles([ProfileInput(f"u{i}", {"status": rng.choice(STATUSES)}) for i in changed])
        else:
            ingest_events(events(rng, now, rng.randint(1, 25), step))
        for audience in audiences:
            incremental = set(Membership.objects.filter(audience=audience).values_list("profile_id", flat=True))
            assert incremental == full_refresh_members(audience.criteria), (step, audience.criteria)
            assert Audience.objects.get(pk=audience.pk).size == len(incremental)
