"""No admin page shows a member's identity to staff without “Can see member identities”.

The pages are found, not listed: every ModelAdmin of the admin site (its list, the change, history and
delete pages of each of its objects, the views its get_urls() adds) and every page of config/urls.py
outside the admin and the API. A new page is walked without anyone adding it here.
"""

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, reverse

import config.urls
from audiences.permissions import HIDDEN, REFUSED
from connections.admin.operations import OPERATIONS
from tests.admin import identity_world as world

pytestmark = pytest.mark.django_db(transaction=True)

STANDARD_VIEWS = ("_changelist", "_add", "_history", "_delete", "_change", "_autocomplete")
# How the walk fills the arguments of a custom admin view, by the argument's name.
FILLS = {"pk": "object", "object_id": "object", "op": list(OPERATIONS)}


def _objects(model):
    return list(model._default_manager.order_by("pk")[:3])


def admin_urls() -> list[str]:
    urls = [reverse("admin:index")]
    for model, model_admin in admin.site._registry.items():
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        urls.append(reverse(f"{name}_changelist"))
        objects = _objects(model)
        for obj in objects:
            urls += [reverse(f"{name}_{view}", args=[obj.pk]) for view in ("change", "history", "delete")]
        for pattern in model_admin.get_urls():
            if not isinstance(pattern, URLPattern) or not pattern.name or pattern.name.endswith(STANDARD_VIEWS):
                continue
            urls += _filled(pattern, objects)
    for pattern in config.urls.urlpatterns:  # the operator pages beside the admin (the API has its own walk)
        if isinstance(pattern, URLPattern) and pattern.name:
            urls.append(reverse(pattern.name) + (f"?q={world.EXTERNAL_ID}" if pattern.name == "relay-trace" else ""))
    return urls


def _filled(pattern, objects) -> list[str]:
    kwargs = [{}]
    for arg in pattern.pattern.converters:
        fill = FILLS.get(arg)
        assert fill is not None, f"Tell the walk how to fill <{arg}> of admin:{pattern.name}."
        values = [o.pk for o in objects] if fill == "object" else fill
        kwargs = [{**k, arg: v} for k in kwargs for v in values]
    return [reverse(f"admin:{pattern.name}", kwargs=k) for k in kwargs]


def _walk(user, urls) -> dict[str, list[str]]:
    client = Client()
    client.force_login(user)
    found = {}
    for url in urls:
        response = client.get(url)
        assert response.status_code < 500, (user.username, url, response.status_code)
        leaked = world.leaks(world.body_of(response))
        if leaked:
            found[url] = leaked
    return found


def test_it_shows_no_identity_on_any_admin_page_to_staff_without_the_permission(sandbox):
    world.seed(sandbox)
    urls = admin_urls()
    users = world.staff_without_identities()
    assert len(users) > 10 and len(urls) > 40  # every view permission, every page

    leaks = {user.username: found for user in users if (found := _walk(user, urls))}

    assert leaks == {}


def test_an_operator_sees_the_identities_where_a_page_shows_them(sandbox):
    made = world.seed(sandbox)
    conn, profile, audience = made["connection"], made["profile"], made["audience"]
    found = _walk(world.operator(), admin_urls())

    assert set(found[f"/admin/audiences/profile/{profile.pk}/change/"]) >= {
        world.EMAIL,
        world.PHONE,
        world.DEVICE_ID,
        world.CUSTOMER_ID,
    }
    assert set(found[f"/admin/connections/connection/{conn.pk}/change/"]) >= {world.EMAIL, world.REFUSED_EMAIL}
    assert world.REFUSED_EMAIL in found["/admin/connections/outboxmessage/"]
    assert world.EMAIL in found[f"/admin/trace/?q={world.EXTERNAL_ID}"]
    assert world.CUSTOMER_ID in found[f"/admin/audiences/audience/{audience.pk}/export/"]


def test_the_pages_with_more_to_them_say_why_the_identities_are_missing(sandbox):
    made = world.seed(sandbox)
    viewer = world.staff_without_identities()[-1]
    client = Client()
    client.force_login(viewer)

    profile = client.get(f"/admin/audiences/profile/{made['profile'].pk}/change/").content.decode()
    conn = client.get(f"/admin/connections/connection/{made['connection'].pk}/change/").content.decode()
    audience = client.get(f"/admin/audiences/audience/{made['audience'].pk}/change/").content.decode()

    assert f"1 Email, 1 Customer ID, 1 Mobile number, 1 Android advertising ID (AAID). {HIDDEN}" in profile
    assert world.EXTERNAL_ID in profile and "Trace where it goes" not in profile
    assert f"<p>{HIDDEN}</p>" in conn and "Recent deliveries" in conn and "size funnel" in conn.lower()
    assert f"The CSV lists every member&#x27;s identities. {HIDDEN}" in audience
    assert "Download members as CSV" not in audience


def test_pages_that_are_only_identities_answer_403_with_a_sentence(sandbox):
    made = world.seed(sandbox)
    client = Client()
    client.force_login(world.staff_without_identities()[-1])  # a Viewer

    for url in (
        f"/admin/audiences/audience/{made['audience'].pk}/export/",
        "/admin/connections/outboxmessage/",
        f"/admin/trace/?q={world.EXTERNAL_ID}",
    ):
        response = client.get(url)
        assert (response.status_code, REFUSED in response.content.decode()) == (403, True), url


def test_a_staff_user_without_any_permission_cannot_download_an_audience(sandbox):
    made = world.seed(sandbox)
    client = Client()
    client.force_login(world.staff_without_identities()[0])

    response = client.get(f"/admin/audiences/audience/{made['audience'].pk}/export/")

    assert response.status_code == 403
    assert world.leaks(world.body_of(response)) == []


def test_the_profile_search_finds_by_identity_only_for_staff_who_may_see_identities(sandbox):
    world.seed(sandbox)
    viewer, operator = world.staff_without_identities()[-1], world.operator()
    client = Client()

    def found(user, term):
        client.force_login(user)
        return world.EXTERNAL_ID in client.get("/admin/audiences/profile/", {"q": term}).content.decode()

    assert (found(viewer, world.EMAIL), found(viewer, world.EXTERNAL_ID)) == (False, True)
    assert (found(operator, world.EMAIL), found(operator, world.EXTERNAL_ID)) == (True, True)
