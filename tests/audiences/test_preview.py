import json

import pytest

from tests.audiences.factories import AudienceFactory, IdentityFactory, ProfileFactory

pytestmark = pytest.mark.django_db

URL = "/admin/audiences/audience/preview/"
PREMIUM = {"all": [{"user": "status", "op": "eq", "value": "Premium"}]}


def post(client, body):
    return client.post(URL, body if isinstance(body, str) else json.dumps(body), content_type="application/json")


def test_it_counts_the_matching_users_per_identity_type(admin_client):
    for n in range(3):
        profile = ProfileFactory(attributes={"status": "Premium"})
        IdentityFactory(profile=profile, value=f"premium{n}@example.com")
    IdentityFactory(profile=profile, type="android_aaid", value="38400000-8cf0-11bd-b23e-10b96e40000d")
    ProfileFactory(attributes={"status": "Free"})

    answer = post(admin_client, PREMIUM).json()

    assert answer["ok"] is True
    assert answer["size"] == 3
    assert answer["identity_types"]["email"] == 3
    assert answer["identity_types"]["android_aaid"] == 1
    assert answer["summary"] == "≈ 3 users — 3 with an email address, 1 with an Android advertising ID"


def test_it_says_where_the_criteria_are_invalid(admin_client):
    criteria = {"all": [PREMIUM["all"][0], {"user": "status", "op": "equals", "value": "x"}]}

    answer = post(admin_client, criteria).json()

    assert answer["ok"] is False
    assert answer["error"].startswith("all[1].op: unknown operator 'equals'")


def test_it_says_when_the_text_is_not_json(admin_client):
    answer = post(admin_client, '{"user": "status",').json()

    assert answer == {"ok": False, "error": "This is not valid JSON: Expecting property name enclosed in double "
                      "quotes: line 1 column 19 (char 18)."}  # fmt: skip


def test_it_asks_for_criteria_when_the_field_is_empty(admin_client):
    assert post(admin_client, "  ").json() == {"ok": False, "error": "Enter criteria to see how many users they match."}


def test_it_needs_a_staff_login(client, django_user_model):
    response = post(client, PREMIUM)
    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")

    client.force_login(django_user_model.objects.create_user("nobody", password="pw-nobody-1"))
    assert post(client, PREMIUM).status_code == 302


def test_it_needs_permission_to_view_audiences(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("stranger", password="pw-stranger-1", is_staff=True))
    assert post(client, PREMIUM).status_code == 403


def test_it_only_answers_posts(admin_client):
    assert admin_client.get(URL).status_code == 405


def test_it_puts_the_estimate_under_the_criteria_field(admin_client):
    audience = AudienceFactory()
    for url in ["/admin/audiences/audience/add/", f"/admin/audiences/audience/{audience.pk}/change/"]:
        page = admin_client.get(url).content.decode()
        assert 'var url = "/admin/audiences/audience/preview/";' in page, url
        assert 'document.getElementById("id_criteria")' in page, url
