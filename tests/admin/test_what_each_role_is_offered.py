"""Every admin page offers a user only what they may do: no button, link or form of any page leads a user to
a refusal (403).

The pages are found, not listed: the index, and the list, the add page and the first object's page of every
ModelAdmin. Each is opened as each role (a superuser, an Operator, a Viewer, a staff user with no permission,
and a staff user with exactly each view permission), and every link and form on it is followed as that role.
"""

import re
from urllib.parse import urljoin

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import reverse

from connections.admin.operations import OPERATIONS
from tests.admin import identity_world as world
from tests.audiences.factories import AudienceFactory

pytestmark = pytest.mark.django_db(transaction=True)

HREF = re.compile(r'<a\b[^>]*\bhref="([^"#][^"]*)"')
FORM = re.compile(
    r'<form\b[^>]*\baction="([^"]+)"[^>]*\bmethod="post"|<form\b[^>]*\bmethod="post"[^>]*\baction="([^"]+)"'
)
# Leaving the admin, or the admin's own account pages: not an operation on our data.
OUTSIDE = ("/admin/logout/", "/admin/password_change/", "/api/", "/static/")


@pytest.fixture
def seeded(sandbox):
    made = world.seed(sandbox)
    AudienceFactory(name="Premium")
    return made


def pages() -> list[str]:
    urls = [reverse("admin:index")]
    for model in admin.site._registry:
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        urls += [reverse(f"{name}_changelist"), reverse(f"{name}_add")]
        first = model._default_manager.order_by("pk").first()
        if first is not None:
            urls.append(reverse(f"{name}_change", args=[first.pk]))
    return urls


def offered(html: str, page: str) -> tuple[set[str], set[str]]:
    """(links, form actions) a page offers, as absolute paths; links to the page itself with other query
    parameters (sorting, filters, pages of the list) are the same page."""
    links = {urljoin(page, href.replace("&amp;", "&")) for href in HREF.findall(html)}
    forms = {urljoin(page, a or b) for a, b in FORM.findall(html)}
    links = {u for u in links if u.startswith("/admin/") and u.split("?")[0] != page.split("?")[0]}
    return {u for u in links if not u.startswith(OUTSIDE)}, {u for u in forms if not u.startswith(OUTSIDE)}


def refusals(user) -> list[str]:
    """ "page → link" for every link or form of a page this user may open that refuses them."""
    client = Client()
    client.force_login(user)
    refused, seen = [], {}
    for page in pages():
        response = client.get(page)
        if response.status_code != 200:
            continue
        links, forms = offered(response.content.decode(), page)
        for url in sorted(links):
            if url not in seen:
                seen[url] = client.get(url).status_code
            if seen[url] == 403:
                refused.append(f"{page} → {url}")
        for url in sorted(forms):
            if client.post(url).status_code == 403:
                refused.append(f"{page} → POST {url}")
    return refused


def test_no_page_offers_a_superuser_an_operator_or_a_viewer_a_link_that_refuses_them(seeded, admin_user):
    for user in (admin_user, world.operator(), world.staff_without_identities()[-1]):
        assert refusals(user) == [], user.username


def test_no_page_offers_staff_with_one_view_permission_or_none_a_link_that_refuses_them(seeded):
    found = {user.username: refusals(user) for user in world.staff_without_identities()[:-1]}

    assert {name: refused for name, refused in found.items() if refused} == {}


def test_each_role_is_offered_exactly_the_connection_operations_and_checks_it_may_run(seeded, admin_user):
    conn, output = seeded["connection"], seeded["output"]
    client = Client()

    def offered_to(user) -> dict:
        client.force_login(user)
        connection_page = client.get(f"/admin/connections/connection/{conn.pk}/change/").content.decode()
        output_page = client.get(f"/admin/outputs/output/{output.pk}/change/").content.decode()
        connections = client.get("/admin/connections/connection/").content.decode()
        return {
            "buttons": [op for op in OPERATIONS if f"/operate/{op}/" in connection_page],
            "verify": f"/connection/{conn.pk}/verify/" in connection_page,
            "check credentials": f"/output/{output.pk}/check/" in output_page,
            "actions": re.findall(r'<option value="(\w+)">', connections),
        }

    everything = {
        "buttons": ["sync", "pause", "retry-failed", "disconnect-remove", "disconnect-keep"],
        "verify": True,
        "check credentials": True,
        "actions": [
            "verify_selected",
            "sync_selected",
            "pause_selected",
            "resume_selected",
            "retry_failed_selected",
            "disconnect_remove_selected",
            "disconnect_keep_selected",
        ],  # fmt: skip
    }
    assert offered_to(admin_user) == everything
    assert (
        offered_to(world.operator())
        == {  # disconnecting needs delete connection
            **everything,
            "buttons": ["sync", "pause", "retry-failed"],
            "actions": everything["actions"][:5],
        }
    )
    nothing = {"buttons": [], "verify": False, "check credentials": False, "actions": []}
    assert offered_to(world.staff_without_identities()[-1]) == nothing  # a Viewer


def test_staff_who_may_not_add_are_refused_the_first_step_of_adding_too(seeded):
    client = Client()
    client.force_login(world.staff_without_identities()[-1])  # a Viewer

    assert client.get("/admin/connections/connection/add/").status_code == 403
    assert client.get("/admin/outputs/output/add/").status_code == 403
