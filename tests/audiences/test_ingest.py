import datetime as dt

import pytest
from django.db import connection
from django.utils import timezone

from audiences.ingest import ProfileInput, ingest_events, upsert_profiles
from audiences.models import Event, Identity, Membership, MembershipChange, Profile, RefreshRun
from audiences.refresh import refresh_audience
from tests.audiences.factories import AudienceFactory, ProfileFactory

pytestmark = pytest.mark.django_db


def batch(n, status="Free", start=0):
    return [
        ProfileInput(
            f"u{i}",
            {"status": status, "age": 30 + i % 20},
            [("email", f"u{i}@example.com"), ("android_aaid", f"00000000-0000-4000-8000-{i:012d}")],
        )
        for i in range(start, start + n)
    ]


def test_it_creates_profiles_with_their_identities():
    result = upsert_profiles(batch(3))

    assert (result.created, result.updated, result.unchanged) == (3, 0, 0)
    assert Profile.objects.count() == 3
    assert set(Identity.objects.filter(profile__external_id="u1").values_list("type", "value")) == {
        ("email", "u1@example.com"),
        ("android_aaid", "00000000-0000-4000-8000-000000000001"),
    }


def test_resending_the_same_batch_changes_nothing():
    upsert_profiles(batch(50))
    stamps = dict(Profile.objects.values_list("external_id", "updated_at"))
    identity_ids = set(Identity.objects.values_list("pk", flat=True))
    runs = RefreshRun.objects.count()

    result = upsert_profiles(batch(50))

    assert (result.created, result.updated, result.unchanged) == (0, 0, 50)
    assert (result.identities_added, result.identities_removed) == (0, 0)
    assert dict(Profile.objects.values_list("external_id", "updated_at")) == stamps
    assert set(Identity.objects.values_list("pk", flat=True)) == identity_ids
    assert RefreshRun.objects.count() == runs


def test_a_changed_email_replaces_the_old_one():
    upsert_profiles(batch(1))

    result = upsert_profiles([ProfileInput("u0", None, [("email", "new@example.com")])])

    assert (result.identities_added, result.identities_removed) == (1, 2)
    assert list(Identity.objects.values_list("type", "value")) == [("email", "new@example.com")]


def test_omitting_identities_leaves_them_alone():
    upsert_profiles(batch(1))
    upsert_profiles([ProfileInput("u0", {"status": "Premium"})])
    assert Identity.objects.filter(profile__external_id="u0").count() == 2


def test_an_identity_claimed_by_another_profile_moves_to_it():
    upsert_profiles([ProfileInput("old-owner", {}, [("email", "shared@example.com")])])

    upsert_profiles([ProfileInput("new-owner", {}, [("email", "shared@example.com")])])

    assert Identity.objects.get(value="shared@example.com").profile.external_id == "new-owner"


def test_the_query_count_does_not_grow_with_the_batch(django_assert_max_num_queries):
    AudienceFactory(criteria={"user": "status", "op": "eq", "value": "Premium"})
    upsert_profiles(batch(10))
    with django_assert_max_num_queries(32) as small:
        upsert_profiles(batch(10, status="Premium", start=1000))
    # 100 times the profiles: the same statements, save that SQLite's 999
    # bind-parameter limit makes Django split the bulk INSERTs into chunks.
    chunks = 0 if connection.vendor == "postgresql" else 15
    with django_assert_max_num_queries(len(small.captured_queries) + chunks):
        upsert_profiles(batch(1000, status="Premium", start=2000))


def test_an_upsert_re_evaluates_just_the_changed_profiles():
    audience = AudienceFactory(criteria={"user": "status", "op": "eq", "value": "Premium"})
    upsert_profiles(batch(5))
    refresh_audience(audience)
    assert Membership.objects.filter(audience=audience).count() == 0

    result = upsert_profiles([ProfileInput("u3", {"status": "Premium"})])

    assert result.memberships_added == 1
    run = RefreshRun.objects.latest("pk")
    assert run.trigger == "profiles"
    assert list(MembershipChange.objects.filter(run=run).values_list("profile_id", "action")) == [
        (Profile.objects.get(external_id="u3").pk, "add")
    ]
    audience.refresh_from_db()
    assert audience.size == 1

    upsert_profiles([ProfileInput("u3", {"status": "Free"})])
    audience.refresh_from_db()
    assert audience.size == 0


def test_events_reach_membership_at_once_and_repeats_are_ignored():
    audience = AudienceFactory(criteria={"event": "Book Trip", "in_last_days": 7})
    ProfileFactory(external_id="traveller")
    event = {
        "external_id": "traveller",
        "name": "Book Trip",
        "attributes": {"price": 420},
        "occurred_at": timezone.now() - dt.timedelta(hours=2),
        "source_id": "evt-1",
    }

    first = ingest_events([event])
    again = ingest_events([event])

    assert (first.events_created, first.duplicates, first.memberships_added) == (1, 0, 1)
    assert (again.events_created, again.duplicates, again.memberships_added) == (0, 1, 0)
    assert Event.objects.count() == 1
    assert Membership.objects.filter(audience=audience, profile__external_id="traveller").exists()


def test_events_for_unknown_users_create_bare_profiles():
    result = ingest_events([{"external_id": "newcomer", "name": "Search Flights", "occurred_at": timezone.now()}])
    assert result.profiles_created == 1
    assert Profile.objects.get(external_id="newcomer").attributes == {}


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_creating_the_same_new_profiles_all_succeed():
    """Two integrations (or an event and a profile batch) naming the same new users at the same moment: one
    wins each race, the other is run again and updates what the winner created. No batch fails."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers: there is no race to lose")
    import threading

    from django.db import close_old_connections

    AudienceFactory(name="Premium", criteria={"user": "status", "op": "eq", "value": "Premium"})
    AudienceFactory(name="Free", criteria={"user": "status", "op": "eq", "value": "Free"})
    errors, start = [], threading.Barrier(2)

    def writer(kind):
        try:
            for round_ in range(15):
                ids = [f"race-{round_}-{n}" for n in range(40)]
                start.wait(timeout=30)
                if kind == "profiles":
                    upsert_profiles(
                        [ProfileInput(e, {"status": "Premium"}, [("email", f"{e}@example.com")]) for e in ids]
                    )
                else:
                    now = timezone.now()
                    ingest_events([{"external_id": e, "name": "video_view", "occurred_at": now} for e in ids])
        except Exception as exc:  # noqa: BLE001 - the test reports whatever a batch raised
            errors.append(repr(exc))
            start.abort()
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=writer, args=(k,)) for k in ("profiles", "events")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert Profile.objects.filter(external_id__startswith="race-").count() == 600
    assert Profile.objects.filter(external_id__startswith="race-", attributes__status="Premium").count() == 600
    assert Event.objects.count() == 600
