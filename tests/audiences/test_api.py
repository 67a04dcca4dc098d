import csv
import io

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from audiences.models import Audience, Event, Identity, Membership, Profile
from tests.audiences.factories import AudienceFactory, EventFactory, IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db

PREMIUM = {"user": "status", "op": "eq", "value": "Premium"}


def test_every_endpoint_needs_authentication():
    client = APIClient()
    assert client.get("/api/v1/audiences/").status_code == 401
    assert client.post("/api/v1/profiles/bulk/", {}, format="json").status_code == 401


def test_bulk_upsert_answers_with_counts(api):
    body = {
        "profiles": [
            {
                "external_id": "u1",
                "attributes": {"status": "Premium"},
                "identities": [{"type": "email", "value": " U1@Example.com "}],
            },
            {"external_id": "u2", "attributes": {"status": "Free"}},
        ]
    }
    response = api.post("/api/v1/profiles/bulk/", body, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["created"] == 2
    assert Identity.objects.get().value == "u1@example.com"
    assert api.post("/api/v1/profiles/bulk/", body, format="json").json()["unchanged"] == 2


@pytest.mark.parametrize(
    ("profiles", "errors"),
    [
        (
            [{"external_id": "u1", "identities": [{"type": "fax", "value": "1"}]}],
            {"profiles": {"0": {"identities": {"0": {"type": ['"fax" is not a valid choice.']}}}}},
        ),
        (
            [{"external_id": "u1", "identities": [{"type": "email", "value": "nope"}]}],
            {"profiles": {"0": {"identities": {"0": {"value": ["'nope' is not a valid email address"]}}}}},
        ),
        (
            [{"external_id": "u1"}, {"external_id": "u1"}],
            {"profiles": {"1": {"external_id": ["'u1' appears twice in this batch (first at index 0)"]}}},
        ),
        ([{"attributes": {}}], {"profiles": {"0": {"external_id": ["This field is required."]}}}),
        (
            [{"external_id": "u1", "attributes": ["not", "a", "dict"]}],
            {"profiles": {"0": {"attributes": ['Expected a dictionary of items but got type "list".']}}},
        ),
    ],
)
def test_bad_profiles_get_a_400_naming_the_field_and_nothing_is_written(api, profiles, errors):
    good = {"external_id": "fine", "identities": [{"type": "email", "value": "fine@example.com"}]}
    response = api.post("/api/v1/profiles/bulk/", {"profiles": [*profiles, good]}, format="json")

    assert response.status_code == 400
    assert response.json() == errors
    assert Profile.objects.count() == 0


def test_a_batch_that_is_not_an_object_is_a_400(api):
    response = api.post("/api/v1/profiles/bulk/", [1, 2], format="json")
    assert response.status_code == 400
    assert "profiles" in response.json() or "non_field_errors" in response.json()


def test_an_identity_given_to_two_profiles_in_one_batch_is_refused(api):
    same = [{"type": "email", "value": "twin@example.com"}]
    body = {"profiles": [{"external_id": "a", "identities": same}, {"external_id": "b", "identities": same}]}
    response = api.post("/api/v1/profiles/bulk/", body, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "profiles": {"1": {"identities": ["email 'twin@example.com' is also given to profiles[0]"]}}
    }


def test_a_profile_shows_its_identities_memberships_and_recent_events(api):
    profile = ProfileFactory(external_id="ext.42@crm", attributes={"status": "Premium"})
    IdentityFactory(profile=profile, value="jane@example.com")
    EventFactory(profile=profile)
    audience = AudienceFactory(name="Potential Parisians", criteria=PREMIUM)
    api.post(f"/api/v1/audiences/{audience.pk}/refresh/")

    data = api.get("/api/v1/profiles/ext.42@crm/").json()

    assert data["identities"] == [{"type": "email", "value": "jane@example.com"}]
    assert [m["audience"] for m in data["memberships"]] == ["Potential Parisians"]
    assert data["recent_events"][0]["name"] == "Play Video"


def test_profiles_can_be_found_by_any_identity_value(api):
    IdentityFactory(profile__external_id="jane", value="jane@example.com")
    ProfileFactory(external_id="other")
    found = api.get("/api/v1/profiles/", {"identity": "  JANE@example.com"}).json()
    assert [p["external_id"] for p in found["results"]] == ["jane"]


def test_events_are_ingested_in_bulk(api):
    body = {
        "events": [
            {
                "external_id": "u1",
                "name": "Play Video",
                "occurred_at": "2026-11-27T10:00:00Z",
                "attributes": {"destination": "Paris"},
            }
        ]
    }
    response = api.post("/api/v1/events/bulk/", body, format="json")
    assert response.status_code == 200
    assert response.json() == {
        "events_created": 1, "duplicates": 0, "profiles_created": 1, "memberships_added": 0, "memberships_removed": 0,
    }  # fmt: skip
    bad = api.post(
        "/api/v1/events/bulk/",
        {"events": [{"external_id": "u1", "name": "x", "occurred_at": "yesterday"}]},
        format="json",
    )
    assert bad.status_code == 400
    assert list(bad.json()["events"]["0"]) == ["occurred_at"]


def test_events_sent_again_are_counted_as_duplicates_and_stored_once(api):
    AudienceFactory(name="Travellers", criteria={"event": "Book Trip", "in_last_days": 3})
    event = {"external_id": "u1", "name": "Book Trip", "occurred_at": timezone.now().isoformat(), "source_id": "e-1"}
    later = {**event, "source_id": "e-2"}

    first = api.post("/api/v1/events/bulk/", {"events": [event]}, format="json").json()
    again = api.post("/api/v1/events/bulk/", {"events": [event, later]}, format="json").json()

    assert first == {
        "events_created": 1, "duplicates": 0, "profiles_created": 1, "memberships_added": 1, "memberships_removed": 0,
    }  # fmt: skip
    assert again == {
        "events_created": 1, "duplicates": 1, "profiles_created": 0, "memberships_added": 0, "memberships_removed": 0,
    }  # fmt: skip
    assert Event.objects.count() == 2


def test_profiles_answer_what_they_changed_and_nothing_about_events(api):
    body = {"profiles": [{"external_id": "u1", "identities": [{"type": "email", "value": "u1@example.com"}]}]}

    response = api.post("/api/v1/profiles/bulk/", body, format="json")

    assert response.json() == {
        "created": 1, "updated": 0, "unchanged": 0, "identities_added": 1, "identities_removed": 0,
        "memberships_added": 0, "memberships_removed": 0,
    }  # fmt: skip


def test_audiences_are_created_refreshed_and_listed(api):
    ProfileFactory.create_batch(2, attributes={"status": "premium"})
    response = api.post("/api/v1/audiences/", {"name": "Premium", "criteria": PREMIUM}, format="json")
    assert response.status_code == 201, response.json()
    audience_id = response.json()["id"]

    refreshed = api.post(f"/api/v1/audiences/{audience_id}/refresh/").json()

    assert (refreshed["added"], refreshed["size"]) == (2, 2)
    listed = api.get("/api/v1/audiences/").json()["results"]
    assert [(a["name"], a["size"]) for a in listed] == [("Premium", 2)]


def test_bad_criteria_are_refused_with_the_path_and_reason(api):
    criteria = {"all": [PREMIUM, {"user": "status", "op": "equals", "value": "x"}]}
    response = api.post("/api/v1/audiences/", {"name": "Broken", "criteria": criteria}, format="json")
    assert response.status_code == 400
    assert response.json()["criteria"][0].startswith("all[1].op: unknown operator 'equals'")
    assert not Audience.objects.exists()


def test_a_rule_audience_needs_criteria(api):
    response = api.post("/api/v1/audiences/", {"name": "Empty"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"criteria": ["a rule-based audience needs criteria"]}


def test_preview_counts_without_saving(api):
    p = ProfileFactory(attributes={"status": "Premium"})
    IdentityFactory(profile=p, type="email", value="p@example.com")
    ProfileFactory(attributes={"status": "Free"})

    response = api.post("/api/v1/audiences/preview/", {"criteria": PREMIUM}, format="json")

    assert response.status_code == 200
    assert response.json()["size"] == 1
    assert response.json()["identity_types"]["email"] == 1
    assert not Audience.objects.exists()


def test_static_members_are_added_by_external_id_or_identity_and_removed(api):
    audience = AudienceFactory(kind=Audience.Kind.STATIC, criteria=None)
    ProfileFactory(external_id="a")
    IdentityFactory(profile__external_id="b", type="email", value="b@example.com")
    url = f"/api/v1/audiences/{audience.pk}/members/"

    added = api.post(
        url,
        {"external_ids": ["a"], "identities": [{"type": "email", "value": "B@example.com"}]},
        format="json",
    )
    assert added.status_code == 200, added.json()
    assert added.json()["added"] == 2
    page = api.get(url).json()
    assert [m["external_id"] for m in page["results"]] == ["a", "b"]

    removed = api.post(url + "remove/", {"external_ids": ["a"]}, format="json").json()
    assert (removed["removed"], removed["size"]) == (1, 1)

    unknown = api.post(url, {"external_ids": ["ghost"]}, format="json")
    assert unknown.status_code == 400
    assert unknown.json() == {"external_ids": ["no profile has external ID 'ghost'"]}


def test_unknown_members_are_named_under_the_field_that_gave_them(api):
    audience = AudienceFactory(kind=Audience.Kind.STATIC, criteria=None)
    ProfileFactory(external_id="a")
    url = f"/api/v1/audiences/{audience.pk}/members/"

    by_identity = api.post(url, {"identities": [{"type": "email", "value": "Ghost@Example.com"}]}, format="json")
    both = api.post(
        url,
        {"external_ids": ["a", "ghost"], "identities": [{"type": "email", "value": "ghost@example.com"}]},
        format="json",
    )

    assert by_identity.status_code == 400
    assert by_identity.json() == {"identities": ["no profile has email 'ghost@example.com'"]}
    assert both.json() == {
        "external_ids": ["no profile has external ID 'ghost'"],
        "identities": ["no profile has email 'ghost@example.com'"],
    }
    assert not audience.memberships.exists()


def test_members_of_a_rule_audience_cannot_be_edited(api):
    audience = AudienceFactory(criteria=PREMIUM)
    response = api.post(f"/api/v1/audiences/{audience.pk}/members/", {"external_ids": ["a"]}, format="json")
    assert response.status_code == 400
    assert response.json() == {"kind": ["members of a rule-based audience follow its criteria"]}


def test_an_audience_downloads_as_csv(api):
    audience = AudienceFactory(criteria=PREMIUM, name="Potential Parisians")
    p = ProfileFactory(external_id="jane", attributes={"status": "Premium"})
    IdentityFactory(profile=p, type="email", value="jane@example.com")
    IdentityFactory(profile=p, type="android_aaid", value="38400000-8cf0-11bd-b23e-10b96e40000d")
    api.post(f"/api/v1/audiences/{audience.pk}/refresh/")

    response = api.get(f"/api/v1/audiences/{audience.pk}/export/")

    assert response["Content-Disposition"] == 'attachment; filename="potential-parisians-members.csv"'
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1
    assert rows[0]["external_id"] == "jane"
    assert rows[0]["email"] == "jane@example.com"
    assert rows[0]["android_aaid"] == "38400000-8cf0-11bd-b23e-10b96e40000d"
    assert Membership.objects.count() == 1


def test_the_openapi_schema_and_docs_are_served(api):
    schema = api.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/profiles/bulk/" in schema.content
    assert api.get("/api/docs/").status_code == 200
