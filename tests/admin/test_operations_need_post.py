"""Viewers cannot act: every admin operation that changes state or calls a partner is a POST (with the CSRF
token the admin requires of every POST) that needs a declared permission, and a GET of it changes nothing.

The actions and views are found, not listed: every action of every ModelAdmin and every view its get_urls()
adds. What they could change is read before and after, the partner sandbox's request counts included.
"""

import pytest
from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import URLPattern, reverse

from audiences.models import Audience, RefreshRun
from connections.admin.operations import OPERATIONS
from connections.models import Connection, OutboxMessage
from outputs.models import Output
from staff.models import ApiToken
from tests.admin import identity_world as world
from tests.audiences.factories import AudienceFactory

pytestmark = pytest.mark.django_db(transaction=True)

STANDARD_VIEWS = ("_changelist", "_add", "_history", "_delete", "_change", "_autocomplete")


def state(sandbox) -> dict:
    """Everything an admin operation can change here or at a partner."""
    return {
        "outputs": list(Output.objects.values_list("pk", "credentials_ok", "credentials_checked_at")),
        "connections": list(Connection.objects.values_list("pk", "status", "verified_at", "drain_queued_at")),
        "audiences": list(Audience.objects.values_list("pk", "size", "last_refreshed_at")),
        "refresh runs": RefreshRun.objects.count(),
        "messages": list(OutboxMessage.objects.values_list("pk", "state", "attempts", "next_attempt_at")),
        "history": LogEntry.objects.count(),
        "tokens": list(ApiToken.objects.values_list("pk", "revoked_at")),
        "partner requests": sandbox.stats()["requests"],
    }


@pytest.fixture
def seeded(sandbox):
    made = world.seed(sandbox)
    AudienceFactory(name="Premium")  # a rule-based audience: "Refresh now" has work to do
    return made


def custom_views() -> list[tuple[str, str]]:
    """(name, URL) of every view a ModelAdmin adds, filled with its objects (and each connection operation)."""
    urls = []
    for model, model_admin in admin.site._registry.items():
        pks = list(model._default_manager.order_by("pk").values_list("pk", flat=True)[:2])
        for pattern in model_admin.get_urls():
            if not isinstance(pattern, URLPattern) or not pattern.name or pattern.name.endswith(STANDARD_VIEWS):
                continue
            kwargs = [{}]
            for arg in pattern.pattern.converters:
                values = {"pk": pks, "object_id": pks, "op": list(OPERATIONS)}.get(arg)
                assert values is not None, f"Tell the walk how to fill <{arg}> of admin:{pattern.name}."
                kwargs = [{**k, arg: v} for k in kwargs for v in values]
            urls += [(pattern.name, reverse(f"admin:{pattern.name}", kwargs=k)) for k in kwargs]
    return urls


def actions() -> list[tuple]:
    """(ModelAdmin, action name, function) of every action the admin offers anyone."""
    return [
        (model_admin, name, func)
        for model_admin in admin.site._registry.values()
        for func, name, _ in model_admin._get_base_actions()
    ]


def test_every_admin_action_declares_the_permission_it_needs():
    undeclared = [
        f"{type(m).__name__}.{name}" for m, name, func in actions() if not getattr(func, "allowed_permissions", None)
    ]

    assert undeclared == []


def test_a_viewer_is_offered_no_action_and_running_one_anyway_changes_nothing(seeded, sandbox):
    viewer = world.staff_without_identities()[-1]
    client = Client(enforce_csrf_checks=False)
    client.force_login(viewer)
    before = state(sandbox)

    for model_admin, name, _ in actions():
        opts = model_admin.model._meta
        changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
        pks = [str(pk) for pk in model_admin.model._default_manager.values_list("pk", flat=True)[:5]]
        page = client.get(changelist)
        if page.status_code == 200:
            assert f'value="{name}"' not in page.content.decode(), f"{opts.model_name}: {name} is offered"
        client.post(changelist, {"action": name, ACTION_CHECKBOX_NAME: pks, "post": "yes"})

    assert state(sandbox) == before


def test_a_viewer_gets_and_posts_every_custom_admin_view_and_nothing_changes(seeded, sandbox):
    client = Client()
    client.force_login(world.staff_without_identities()[-1])
    before = state(sandbox)

    answers = {url: (client.get(url).status_code, client.post(url).status_code) for _, url in custom_views()}

    assert state(sandbox) == before
    assert answers[f"/admin/outputs/output/{seeded['output'].pk}/check/"] == (403, 403)
    assert answers[f"/admin/connections/connection/{seeded['connection'].pk}/operate/pause/"] == (403, 403)


def test_a_get_of_any_operation_changes_nothing_even_for_a_superuser(seeded, sandbox, admin_user):
    client = Client()
    client.force_login(admin_user)
    before = state(sandbox)

    answers = {url: client.get(url).status_code for _, url in custom_views()}

    assert state(sandbox) == before
    check = f"/admin/outputs/output/{seeded['output'].pk}/check/"
    assert answers[check] == 200  # a page that asks first
    assert "Yes, check now" in client.get(check).content.decode()


def test_the_credentials_check_runs_on_a_post_with_the_csrf_token_only(seeded, sandbox, operator):
    output = seeded["output"]
    url = f"/admin/outputs/output/{output.pk}/check/"
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)

    forged = client.post(url)  # what another site's form or image tag could send
    asked = client.get(url)
    token = asked.context["csrf_token"]
    checked = client.post(url, {"csrfmiddlewaretoken": str(token)})

    assert (forged.status_code, asked.status_code, checked.status_code) == (403, 200, 302)
    output.refresh_from_db()
    assert output.credentials_ok is True and sandbox.stats()["requests"]["mailchimp"] > 0


def test_a_viewer_cannot_refresh_an_audience_nor_check_credentials_through_the_actions(seeded, sandbox):
    premium = Audience.objects.get(name="Premium")
    client = Client()
    client.force_login(world.staff_without_identities()[-1])
    before = state(sandbox)

    client.post("/admin/audiences/audience/", {"action": "refresh_now", ACTION_CHECKBOX_NAME: [premium.pk]})
    client.post("/admin/outputs/output/", {"action": "check_selected", ACTION_CHECKBOX_NAME: [seeded["output"].pk]})

    assert state(sandbox) == before
    assert Audience.objects.get(pk=premium.pk).last_refreshed_at is None


def test_a_connection_page_offers_each_user_only_the_operations_they_may_run(seeded, admin_user):
    url = f"/admin/connections/connection/{seeded['connection'].pk}/change/"
    client = Client()

    def offered(user):
        client.force_login(user)
        html = client.get(url).content.decode()
        return [op for op in OPERATIONS if f"/operate/{op}/" in html]

    assert offered(world.staff_without_identities()[-1]) == []  # a Viewer
    assert offered(world.operator()) == ["sync", "pause", "retry-failed"]  # disconnecting needs delete
    assert offered(admin_user) == ["sync", "pause", "retry-failed", "disconnect-remove", "disconnect-keep"]
