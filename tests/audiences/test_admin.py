import pytest

from audiences.models import Audience
from tests.audiences.factories import AudienceFactory, IdentityFactory, MembershipFactory, ProfileFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(admin_client):
    return admin_client


def test_the_admin_pages_load(staff):
    audience = AudienceFactory(name="Potential Parisians")
    profile = ProfileFactory()
    IdentityFactory(profile=profile)
    MembershipFactory(audience=audience, profile=profile)
    for url in [
        "/admin/",
        "/admin/audiences/profile/",
        f"/admin/audiences/profile/{profile.pk}/change/",
        "/admin/audiences/audience/",
        f"/admin/audiences/audience/{audience.pk}/change/",
        "/admin/audiences/audience/add/",
        "/admin/audiences/refreshrun/",
    ]:
        assert staff.get(url).status_code == 200, url


def test_an_operator_finds_a_profile_by_an_identity_value(staff):
    IdentityFactory(profile__external_id="jane-001", value="jane@example.com")
    ProfileFactory(external_id="someone-else")
    page = staff.get("/admin/audiences/profile/", {"q": "Jane@Example.com"}).content.decode()
    assert "jane-001" in page
    assert "someone-else" not in page


def test_invalid_criteria_are_shown_next_to_the_field(staff):
    response = staff.post(
        "/admin/audiences/audience/add/",
        {
            "name": "Broken",
            "description": "",
            "kind": "rules",
            "criteria": '{"user": "status", "op": "equals", "value": "x"}',
        },
    )
    assert response.status_code == 200
    assert "op: unknown operator &#x27;equals&#x27;" in response.content.decode()
    assert not Audience.objects.exists()


def test_saving_an_audience_refreshes_it_and_says_so(staff):
    ProfileFactory.create_batch(3, attributes={"status": "Premium"})
    response = staff.post(
        "/admin/audiences/audience/add/",
        {
            "name": "Premium",
            "description": "",
            "kind": "rules",
            "criteria": '{"user": "status", "op": "eq", "value": "premium"}',
            # the read-only connections inline's management form, as a browser sends it
            "connections-TOTAL_FORMS": "0",
            "connections-INITIAL_FORMS": "0",
        },
        follow=True,
    )
    assert "Premium refreshed: 3 added, 0 removed, 3 members" in response.content.decode()
    assert Audience.objects.get().size == 3


def test_the_refresh_now_action_reports_the_changes(staff):
    audience = AudienceFactory(name="Premium")
    ProfileFactory(attributes={"status": "Premium"})
    response = staff.post(
        "/admin/audiences/audience/",
        {"action": "refresh_now", "_selected_action": [audience.pk]},
        follow=True,
    )
    assert "Premium refreshed: 1 added, 0 removed, 1 members" in response.content.decode()


def test_the_audience_page_shows_the_identity_breakdown_and_downloads_csv(staff):
    audience = AudienceFactory()
    profile = ProfileFactory()
    IdentityFactory(profile=profile, value="x@example.com")
    MembershipFactory(audience=audience, profile=profile)
    page = staff.get(f"/admin/audiences/audience/{audience.pk}/change/").content.decode()
    assert "members per identity type" in page.lower()
    csv_response = staff.get(f"/admin/audiences/audience/{audience.pk}/export/")
    assert b"x@example.com" in b"".join(csv_response.streaming_content)
