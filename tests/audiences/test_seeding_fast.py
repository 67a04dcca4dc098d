"""Fast seeding: rows generated inside PostgreSQL, the same shape of data as the Python seeder."""

import datetime as dt
from collections import Counter
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection
from django.utils import timezone

from audiences.models import Event, Identity, Profile
from audiences.seeding import DEFAULT_MIX, SeedingError, seed_profiles
from identities import normalize

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="fast seeding runs on PostgreSQL")
TABLES = ("audiences_profile", "audiences_identity", "audiences_event")


def indexes_and_constraints():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
            "WHERE indrelid = ANY(%s::regclass[]) ORDER BY 1",
            [list(TABLES)],
        )
        indexes = cursor.fetchall()
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = ANY(%s::regclass[]) "
            "ORDER BY 1",
            [list(TABLES)],
        )
        return indexes, cursor.fetchall()


@on_postgresql
def test_it_writes_profiles_identities_and_events_like_the_python_seeder():
    before = indexes_and_constraints()

    created = seed_profiles(3000, seed=7, prefix="fast", now=NOW, days=10, fast=True)

    assert created == {
        "profiles": Profile.objects.count(),
        "identities": Identity.objects.count(),
        "events": Event.objects.count(),
    }
    assert created["profiles"] == 3000
    assert Profile.objects.filter(external_id__in=["fast-0000001", "fast-0003000"]).count() == 2
    statuses = Counter(p.attributes["status"] for p in Profile.objects.all())
    assert statuses["Free"] > statuses["Premium"] > statuses["Trial"] > 0
    for profile in Profile.objects.all():
        assert set(profile.attributes) == {"status", "country", "age", "signup_channel"}
        assert 18 <= profile.attributes["age"] <= 75
    counts = Counter(Identity.objects.values_list("type", flat=True))
    for identity_type, probability in DEFAULT_MIX.items():
        assert abs(counts[identity_type] / 3000 - probability) < 0.05, (identity_type, counts)
    for identity_type, value in Identity.objects.values_list("type", "value"):
        assert normalize(identity_type, value) == value
    assert Identity.objects.get(type="customer_id", value="CUST-fast-0000001").profile.external_id == "fast-0000001"
    for event in Event.objects.all():
        assert NOW - dt.timedelta(days=10) <= event.occurred_at <= NOW
        if event.name == "Play Video":
            assert event.attributes["category"] in {"Destination Intro", "Highlights", "Food & Drink"}
            assert event.attributes["destination"] in {"Paris", "Rome", "Tokyo", "Lisbon", "New York"}
        elif event.name == "Book Trip":
            assert isinstance(event.attributes["price"], int | float)
            assert event.attributes["currency"] == "EUR"
        else:
            assert event.name in {"View Destination", "Search Flights"}
            assert "destination" in event.attributes
    assert 2.5 < created["events"] / 3000 < 3.5  # 0 to 6 a profile
    assert indexes_and_constraints() == before  # dropped for the load, rebuilt as they were
    assert Profile.objects.create(external_id="after").pk > max(Profile.objects.values_list("pk", flat=True)[:3000])


@on_postgresql
def test_it_makes_a_meaningful_share_qualify_for_premium_and_a_recent_paris_intro():
    seed_profiles(2000, seed=8, fast=True)

    qualifying = (
        Profile.objects.filter(
            attributes__status="Premium",
            events__name="Play Video",
            events__attributes__category="Destination Intro",
            events__attributes__destination="Paris",
            events__occurred_at__gte=timezone.now() - dt.timedelta(days=3),
        )
        .distinct()
        .count()
    )
    assert 0.08 <= qualifying / 2000 <= 0.22, qualifying


@on_postgresql
def test_it_is_deterministic_with_a_seed_and_differs_with_another():
    def snapshot():
        return (
            sorted((p.external_id, sorted(p.attributes.items())) for p in Profile.objects.all()),
            sorted(Identity.objects.values_list("profile__external_id", "type", "value")),
            sorted(
                (external_id, name, sorted(attributes.items()), occurred_at)
                for external_id, name, attributes, occurred_at in Event.objects.values_list(
                    "profile__external_id", "name", "attributes", "occurred_at"
                )
            ),
        )

    seed_profiles(300, seed=42, prefix="det", now=NOW, fast=True)
    first = snapshot()
    Profile.objects.all().delete()
    seed_profiles(300, seed=42, prefix="det", now=NOW, fast=True)
    assert snapshot() == first
    Profile.objects.all().delete()
    seed_profiles(300, seed=43, prefix="det", now=NOW, fast=True)
    assert snapshot() != first


@on_postgresql
def test_it_writes_nothing_and_restores_the_indexes_when_a_value_collides():
    before = indexes_and_constraints()
    other = Profile.objects.create(external_id="someone-else")
    Identity.objects.create(profile=other, type="customer_id", value="CUST-clash-0000002")

    with pytest.raises(IntegrityError):
        seed_profiles(50, prefix="clash", mix={"customer_id": 1}, fast=True)

    assert list(Profile.objects.values_list("external_id", flat=True)) == ["someone-else"]
    assert Identity.objects.count() == 1
    assert not Event.objects.exists()
    assert indexes_and_constraints() == before


@on_postgresql
def test_the_command_seeds_fast_and_reports_the_counts():
    out = StringIO()
    call_command("seed_profiles", count=400, fast=True, prefix="cmd", stdout=out, stderr=StringIO())

    assert out.getvalue().startswith(
        f"Created 400 profiles, {Identity.objects.count():,} identities and {Event.objects.count():,} events in "
    )
    assert Profile.objects.filter(external_id__startswith="cmd-").count() == 400


@pytest.mark.skipif(connection.vendor == "postgresql", reason="the refusal is for other databases")
def test_it_refuses_fast_seeding_elsewhere_with_a_clear_message():
    with pytest.raises(SeedingError, match=r"^fast seeding needs PostgreSQL; leave fast out on other databases$"):
        seed_profiles(10, fast=True)
    with pytest.raises(CommandError, match=r"^Fast seeding needs PostgreSQL; leave fast out on other databases\.$"):
        call_command("seed_profiles", count=10, fast=True, stdout=StringIO(), stderr=StringIO())

    assert not Profile.objects.exists()
