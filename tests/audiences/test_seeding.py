import datetime as dt
import re
from collections import Counter
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audiences import seeding
from audiences.models import Event, Identity, Profile
from audiences.seeding import DEFAULT_MIX, parse_mix, seed_profiles
from identities import normalize

pytestmark = pytest.mark.django_db

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def seed(*args, **options):
    out, err = StringIO(), StringIO()
    call_command("seed_profiles", *args, stdout=out, stderr=err, **options)
    return out.getvalue()


def snapshot():
    """Everything seeded, without database ids."""
    profiles = {p.id: p.external_id for p in Profile.objects.all()}
    return (
        sorted((p.external_id, sorted(p.attributes.items())) for p in Profile.objects.all()),
        sorted((profiles[i.profile_id], i.type, i.value) for i in Identity.objects.all()),
        sorted(
            (profiles[e.profile_id], e.name, sorted(e.attributes.items()), e.occurred_at) for e in Event.objects.all()
        ),
    )


def test_it_creates_the_requested_counts_and_reports_them():
    output = seed(count=300, seed=1)

    assert Profile.objects.count() == 300
    match = re.fullmatch(
        r"Created 300 profiles, ([\d,]+) identities and ([\d,]+) events"
        r" in [\d.]+ s \([\d,]+ profiles/s\)\.\n",
        output,
    )
    assert match, output
    assert Identity.objects.count() == int(match[1].replace(",", "")) > 0
    assert Event.objects.count() == int(match[2].replace(",", "")) > 0
    assert Profile.objects.filter(external_id="seed-0000001").exists()
    assert Profile.objects.filter(external_id="seed-0000300").exists()


def test_it_works_across_several_chunks(monkeypatch):
    monkeypatch.setattr(seeding, "CHUNK_SIZE", 70)
    calls = []

    created = seed_profiles(250, seed=3, progress=lambda done, total: calls.append((done, total)))

    assert calls == [(70, 250), (140, 250), (210, 250), (250, 250)]
    assert created == {
        "profiles": Profile.objects.count(),
        "identities": Identity.objects.count(),
        "events": Event.objects.count(),
    }
    assert created["profiles"] == 250
    assert not Profile.objects.filter(identities__isnull=True, events__isnull=True).count() > 50


def test_it_stores_identity_values_already_normalized():
    seed(count=300, seed=2, mix="email=1,customer_id=1,mobile_number=1,ios_idfa=1,android_aaid=1,ios_idfv=1")

    identities = list(Identity.objects.values_list("type", "value"))
    assert {t for t, _ in identities} == {
        "email",
        "customer_id",
        "mobile_number",
        "ios_idfa",
        "android_aaid",
        "ios_idfv",
    }
    for identity_type, value in identities:
        assert normalize(identity_type, value) == value


def test_it_gives_every_profile_an_email_when_the_mix_says_1():
    seed(count=200, seed=4, mix="email=1.0")

    per_profile = Counter(Identity.objects.filter(type="email").values_list("profile_id", flat=True))
    assert len(per_profile) == 200
    assert set(per_profile.values()) == {1}
    assert not Identity.objects.exclude(type="email").exists()  # types not in the mix get none


def test_it_gives_no_emails_when_the_mix_says_0():
    seed(count=200, seed=5, mix="email=0,customer_id=1")

    assert not Identity.objects.filter(type="email").exists()
    assert Identity.objects.filter(type="customer_id").count() == 200


def test_it_honours_the_default_mix_roughly():
    seed(count=600, seed=6)

    counts = Counter(Identity.objects.values_list("type", flat=True))
    for identity_type, probability in DEFAULT_MIX.items():
        assert abs(counts[identity_type] / 600 - probability) < 0.08, (identity_type, counts)


def test_it_makes_realistic_attributes_and_events():
    seed_profiles(400, seed=7, now=NOW, days=10)

    statuses = Counter(p.attributes["status"] for p in Profile.objects.all())
    assert set(statuses) == {"Premium", "Free", "Trial"}
    assert statuses["Free"] > statuses["Premium"] > statuses["Trial"]
    for profile in Profile.objects.all():
        assert set(profile.attributes) == {"status", "country", "age", "signup_channel"}
        assert 18 <= profile.attributes["age"] <= 75
    for event in Event.objects.all():
        assert NOW - dt.timedelta(days=10) <= event.occurred_at <= NOW
        if event.name == "Play Video":
            assert event.attributes["category"] in {"Destination Intro", "Highlights", "Food & Drink"}
            assert event.attributes["destination"] in {"Paris", "Rome", "Tokyo", "Lisbon", "New York"}
        elif event.name == "Book Trip":
            assert isinstance(event.attributes["price"], int | float)
        else:
            assert event.name in {"View Destination", "Search Flights"}
            assert "destination" in event.attributes
    assert Event.objects.values("name").distinct().count() == 4


def test_it_makes_a_meaningful_share_qualify_for_premium_and_a_recent_paris_intro():
    seed_profiles(600, seed=8)

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
    assert 0.08 <= qualifying / 600 <= 0.22, qualifying


def test_it_is_deterministic_with_a_seed():
    seed_profiles(150, seed=42, prefix="det", now=NOW)
    first = snapshot()
    Profile.objects.all().delete()

    seed_profiles(150, seed=42, prefix="det", now=NOW)

    assert snapshot() == first


def test_it_gives_different_data_for_a_different_seed():
    seed_profiles(100, seed=1, prefix="one", now=NOW)
    first = snapshot()
    Profile.objects.all().delete()

    seed_profiles(100, seed=2, prefix="one", now=NOW)

    assert snapshot() != first


def test_it_keeps_identities_unique_across_prefixes_with_the_same_seed():
    mix = "email=1,customer_id=1,mobile_number=1,android_aaid=1"
    seed(count=150, seed=9, prefix="first", mix=mix)
    seed(count=150, seed=9, prefix="second", mix=mix)

    assert Profile.objects.count() == 300
    assert Identity.objects.count() == 4 * 300
    pairs = list(Identity.objects.values_list("type", "value"))
    assert len(set(pairs)) == len(pairs)
    assert Profile.objects.filter(external_id__startswith="second-").count() == 150


@pytest.mark.parametrize(
    ("mix", "message"),
    [
        ("emial=0.5", "Invalid --mix: 'emial=0.5': identity type 'emial' is unknown; expected one of email,"),
        (
            "email=1.5",
            "Invalid --mix: 'email=1.5': probability for 'email' is 1.5; it must be between 0 and 1.",
        ),
        ("email=-0.1", "probability for 'email' is -0.1; it must be between 0 and 1."),
        ("email=0.5,android_aaid", "Invalid --mix: 'android_aaid' must look like type=probability"),
        ("email=lots", "Invalid --mix: 'email=lots': 'lots' is not a number."),
        ("facebook_id=0.5", "identity type 'facebook_id' is not generated by the seeder"),
        ("email=0.5,email=0.2", "identity type 'email' is given twice"),
        (",", "Invalid --mix: it is empty"),
    ],
)
def test_it_rejects_a_bad_mix_with_a_clear_message(mix, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        seed(count=10, mix=mix)
    assert not Profile.objects.exists()


def test_it_parses_a_mix():
    assert parse_mix("email=0.5, android_aaid=0.8,customer_id=1") == {
        "email": 0.5,
        "android_aaid": 0.8,
        "customer_id": 1.0,
    }


def test_it_refuses_to_reuse_a_prefix_with_a_clear_message():
    seed(count=20, prefix="demo")

    with pytest.raises(CommandError, match=r"Profiles with prefix 'demo' already exist .*--prefix"):
        seed(count=20, prefix="demo")
    assert Profile.objects.count() == 20


def test_it_does_not_mistake_a_longer_prefix_for_its_own():
    seed(count=5, prefix="demo-eu")

    seed(count=5, prefix="demo")

    assert Profile.objects.filter(external_id__regex=r"^demo-[0-9]+$").count() == 5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"count": 0}, "--count must be at least 1"),
        ({"count": 5, "days": 0}, "--days must be at least 1"),
        ({"count": 5, "prefix": "Bad Prefix"}, "Prefix 'Bad Prefix' is not valid"),
    ],
)
def test_it_rejects_bad_arguments(options, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        seed(**options)
