"""Who may read and change an audience's A/B variants: the API route, the admin page and the per-variant CSV,
as each role (superuser, Operator, Viewer, staff without permissions, write and read API tokens)."""

import pytest
from django.test import Client
from django.urls import reverse

from audiences import variants as split
from audiences.models import Variant
from tests.connections.factories import EMAILS, StaticAudienceFactory, add_members

pytestmark = pytest.mark.django_db

REFUSED = "Your staff account does not have the permission for this in the admin, so not through the API either."
NEW = {"variants": [{"name": "A", "percent": 50}, {"name": "B", "percent": 50}]}


@pytest.fixture
def audience():
    audience = StaticAudienceFactory(name="Potential Parisians")
    add_members(audience, emails=EMAILS)
    split.change_split(audience, [{"name": "A", "percent": 90}, {"name": "control", "percent": 10}])
    return audience


@pytest.fixture
def nobody(django_user_model):
    return signed_in(django_user_model.objects.create_user("sam", password="pw-sam-1", is_staff=True))


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def superuser_client(admin_user):
    return signed_in(admin_user)


# Clients of their own: the shared `client` fixture would be signed in as whoever logged in last.
@pytest.fixture
def operator_client(operator):
    return signed_in(operator)


@pytest.fixture
def viewer_client(viewer):
    return signed_in(viewer)


def names(audience):
    return list(Variant.objects.filter(audience=audience).values_list("name", flat=True))


def test_reading_the_variants_takes_the_audience_view_permission(
    audience, superuser_client, operator_client, viewer_client, nobody, api, read_api
):
    url = f"/api/v1/audiences/{audience.pk}/variants/"
    for client in (superuser_client, operator_client, viewer_client, api, read_api):
        body = client.get(url).json()
        assert [(v["name"], v["percent"]) for v in body["variants"]] == [("A", 90), ("control", 10)]
        assert sum(v["size"] for v in body["variants"]) == 3
    refused = nobody.get(url)
    assert (refused.status_code, refused.json()) == (403, {"detail": REFUSED})


def test_changing_the_split_takes_the_audience_change_permission_or_a_write_token(
    audience, superuser_client, operator_client, viewer_client, nobody, api, read_api
):
    url = f"/api/v1/audiences/{audience.pk}/variants/"
    for client in (viewer_client, nobody, read_api):
        assert client.put(url, NEW, content_type="application/json").status_code == 403
        assert client.delete(url).status_code == 403
    assert names(audience) == ["A", "control"]

    changed = operator_client.put(url, NEW, content_type="application/json")
    assert changed.status_code == 200, changed.json()
    assert changed.json()["detail"].startswith("Split 'Potential Parisians' 50/50 (A, B): ")
    assert (
        api.delete(url).json()["detail"]
        == "'Potential Parisians' is no longer split; its 3 members are one audience again."
    )
    assert superuser_client.put(url, NEW, content_type="application/json").status_code == 200
    assert names(audience) == ["A", "B"]


def test_bad_variants_get_a_400_naming_the_field_and_change_nothing(audience, api):
    url = f"/api/v1/audiences/{audience.pk}/variants/"
    cases = [
        ({"variants": [{"name": "A", "percent": 60}, {"name": "B", "percent": 30}]},
         {"variants": ["The percentages must add up to 100; they add up to 90."]}),
        ({"variants": [{"name": "A", "percent": 100}]},
         {"variants": ["An audience has 2 to 5 variants (or none); got 1."]}),
        ({"variants": [{"name": "A", "percent": "half"}, {"name": "B", "percent": 50}]},
         {"variants": {"0": {"percent": ["A valid integer is required."]}}}),
        ({}, {"variants": ["This field is required."]}),
    ]  # fmt: skip
    for body, errors in cases:
        response = api.put(url, body, format="json")
        assert (response.status_code, response.json()) == (400, errors)
    gone = api.put(url, {"variants": [{"name": "B", "percent": 50}, {"name": "C", "percent": 50}]}, format="json")
    assert gone.status_code == 200  # no connections: nothing to ask
    bad_choice = api.put(f"{url}?disconnect=maybe", NEW, format="json")
    assert bad_choice.status_code == 200  # asked only when connections would go
    assert api.get(f"/api/v1/audiences/{audience.pk}/members/?variant=Z").json() == {
        "variant": ["'Potential Parisians' has no variant 'Z' (A, B)."]
    }


def test_the_admin_split_page_is_offered_and_open_to_those_who_may_change_the_audience(
    audience, superuser_client, operator_client, viewer_client, nobody
):
    page = reverse("admin:audiences_audience_variants", args=[audience.pk])
    change = reverse("admin:audiences_audience_change", args=[audience.pk])
    for client in (superuser_client, operator_client):
        html = client.get(change).content.decode()
        assert page in html and "Split 90/10 (A, control)." in html
    viewer_page = viewer_client.get(change).content.decode()
    assert "Split 90/10 (A, control)." in viewer_page and page not in viewer_page
    for client in (viewer_client, nobody):
        assert client.get(page).status_code == 403
        assert client.post(page, {"split": "A=50 B=50"}).status_code == 403
    assert nobody.get(change).status_code == 403
    assert names(audience) == ["A", "control"]

    done = operator_client.post(page, {"split": "A=50 B=50", "disconnect": ""}, follow=True)
    assert "Split &#x27;Potential Parisians&#x27; 50/50 (A, B)" in done.content.decode()
    refused = superuser_client.post(page, {"split": "A=50 B=40"}, follow=True)
    assert "The percentages must add up to 100; they add up to 90." in refused.content.decode()
    assert names(audience) == ["A", "B"]


def test_a_variants_csv_needs_the_identities_permission(audience, superuser_client, operator_client, viewer_client):
    a = Variant.objects.get(audience=audience, name="A")
    url = reverse("admin:audiences_audience_export", args=[audience.pk]) + f"?variant={a.pk}"
    members = {m.profile.external_id for m in split.members(a).select_related("profile")}
    for client in (superuser_client, operator_client):
        response = client.get(url)
        lines = b"".join(response.streaming_content).decode().splitlines()[1:]
        assert {line.split(",")[0] for line in lines} == members
        assert "potential-parisians-a-members.csv" in response["Content-Disposition"]
    assert viewer_client.get(url).status_code == 403
