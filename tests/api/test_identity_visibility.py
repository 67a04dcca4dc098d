"""No API answer holds a member's identity for a caller without “Can see member identities”.

The routes are found, not listed: every viewset of the router, its list and detail and each of its extra
actions that answers a GET. Each user calls them twice, signed in (as the admin's pages do) and with an API
token of theirs: a token acts as its user, so the token's user needs the permission too.
"""

import pytest
from rest_framework.test import APIClient

from audiences.models import Audience, Profile
from audiences.permissions import API_REFUSED
from config.api_router import router
from connections.models import Connection
from outputs.models import Output
from outputs.partners import registry
from staff.models import ApiToken
from tests.admin import identity_world as world

pytestmark = pytest.mark.django_db(transaction=True)

# One real object per route, by the router's basename: how the walk reaches a detail route.
LOOKUPS = {
    "profile": lambda: world.EXTERNAL_ID,
    "event": lambda: None,  # events are listed, never opened one by one
    "audience": lambda: Audience.objects.get(name="Walkers").pk,
    "output": lambda: Output.objects.get().pk,
    "partner": lambda: registry.all_partners()[0].slug,
    "connection": lambda: Connection.objects.get().pk,
}


def api_get_urls() -> list[str]:
    urls = ["/api/v1/"]
    for prefix, viewset, basename in router.registry:
        assert basename in LOOKUPS, f"Tell the walk which {basename} to open."
        lookup = LOOKUPS[basename]()
        urls.append(f"/api/v1/{prefix}/")
        if lookup is not None and hasattr(viewset, "retrieve"):
            urls.append(f"/api/v1/{prefix}/{lookup}/")
        for action in viewset.get_extra_actions():
            if "get" not in action.mapping:
                continue
            if not action.detail:
                urls.append(f"/api/v1/{prefix}/{action.url_path}/")
            elif lookup is not None:
                urls.append(f"/api/v1/{prefix}/{lookup}/{action.url_path}/")
    return urls


def clients(user) -> dict[str, APIClient]:
    signed_in = APIClient()
    signed_in.force_login(user)
    with_token = APIClient()
    with_token.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user, 'walk', 'read')[1]}")
    return {"session": signed_in, "token": with_token}


def _walk(user, urls) -> dict[str, list[str]]:
    found = {}
    for how, client in clients(user).items():
        for url in urls:
            response = client.get(url)
            assert response.status_code < 500, (user.username, how, url, response.status_code)
            leaked = world.leaks(world.body_of(response))
            if leaked:
                found[f"{how} {url}"] = leaked
    return found


def test_no_api_answer_holds_an_identity_for_a_caller_without_the_permission(sandbox):
    world.seed(sandbox)
    urls = api_get_urls()
    users = world.staff_without_identities()
    assert len(urls) > 15 and "/api/v1/profiles/" in urls

    leaks = {user.username: found for user in users if (found := _walk(user, urls))}

    assert leaks == {}


def test_the_answers_that_are_identities_are_a_403_saying_why(sandbox):
    made = world.seed(sandbox)
    audience, conn = made["audience"].pk, made["connection"].pk
    viewer = world.staff_without_identities()[-1]

    for how, client in clients(viewer).items():
        for url in (
            "/api/v1/profiles/",
            f"/api/v1/profiles/{world.EXTERNAL_ID}/",
            f"/api/v1/audiences/{audience}/members/",
            f"/api/v1/audiences/{audience}/export/",
            f"/api/v1/connections/{conn}/messages/",
        ):
            response = client.get(url)
            assert (response.status_code, response.json()) == (403, {"detail": API_REFUSED}), (how, url)


def test_a_caller_with_the_permission_reads_the_identities_signed_in_or_with_a_token(sandbox):
    made = world.seed(sandbox)
    found = _walk(world.operator(), api_get_urls())
    audience, conn = made["audience"].pk, made["connection"].pk

    for how in ("session", "token"):
        assert set(found[f"{how} /api/v1/profiles/{world.EXTERNAL_ID}/"]) >= {world.EMAIL, world.CUSTOMER_ID}
        assert world.PHONE in found[f"{how} /api/v1/audiences/{audience}/members/"]
        assert world.DEVICE_ID in found[f"{how} /api/v1/audiences/{audience}/export/"]
        assert world.REFUSED_EMAIL in found[f"{how} /api/v1/connections/{conn}/messages/"]
    # The connection itself, its deliveries and its verification name no member, whoever asks.
    assert f"session /api/v1/connections/{conn}/" not in found
    assert f"session /api/v1/connections/{conn}/deliveries/" not in found
    assert Profile.objects.count() == 2
