"""Staff groups (Operators, Viewers) and the credentials permission, in the admin and in the API."""

import importlib

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.db import connection
from rest_framework.test import APIClient

from outputs.models import Output
from tests.admin.conftest import page
from tests.connections.factories import ConnectionFactory
from tests.outputs.factories import ANOTHER_MAILCHIMP_KEY, MAILCHIMP_KEY, MailchimpOutputFactory

pytestmark = pytest.mark.django_db

REFUSED = "You may not change {}: changing credentials needs the “Can change output credentials” permission."
INLINES = {"connections-TOTAL_FORMS": "0", "connections-INITIAL_FORMS": "0"}


def form(output, **changes):
    data = {
        "name": output.name,
        "base_url": output.base_url,
        "setting__api_key": "",
        "setting__email_type": "html",
        "setting__double_optin": "",
        "setting__delete_on_subscription_end": "",
        **INLINES,
    }
    return {**data, **changes}


def perms(name) -> set[str]:
    group = Group.objects.get(name=name)
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def test_it_creates_the_operators_and_viewers_groups():
    operators, viewers = perms("Operators"), perms("Viewers")

    assert {"audiences.change_audience", "audiences.change_profile", "connections.change_connection",
            "outputs.change_output", "staff.view_auditentry"} <= operators  # fmt: skip
    assert "outputs.change_output_credentials" not in operators
    assert not {p for p in operators if p.startswith(("audiences.delete_audience", "outputs.add", "outputs.delete"))}
    assert all(p.split(".")[1].startswith("view_") for p in viewers)
    assert {"connections.view_connection", "outputs.view_output", "audiences.view_profile"} <= viewers
    assert "audiences.view_identities" in operators and "audiences.view_identities" not in viewers
    assert Permission.objects.get(codename="view_identities").name == "Can see member identities"


def test_it_creates_the_integrators_group_with_the_credentials_and_identities_permissions_only():
    assert perms("Integrators") == {"outputs.change_output_credentials", "audiences.view_identities"}

    migration = importlib.import_module("staff.migrations.0007_integrators")
    migration.create_integrators(apps, type("Editor", (), {"connection": connection})())

    assert Group.objects.filter(name="Integrators").count() == 1
    assert perms("Integrators") == {"outputs.change_output_credentials", "audiences.view_identities"}


def test_the_groups_migration_can_run_again_without_duplicating_anything():
    migration = importlib.import_module("staff.migrations.0001_groups")
    before = {name: perms(name) for name in ("Operators", "Viewers")}

    migration.create_groups(apps, type("Editor", (), {"connection": connection})())

    assert Group.objects.filter(name__in=["Operators", "Viewers"]).count() == 2
    assert {name: perms(name) for name in ("Operators", "Viewers")} == before


def test_superusers_and_only_those_given_it_may_change_credentials(admin_user, operator, viewer):
    assert admin_user.has_perm("outputs.change_output_credentials")
    assert not operator.has_perm("outputs.change_output_credentials")
    assert not viewer.has_perm("outputs.change_output_credentials")
    assert Permission.objects.get(codename="change_output_credentials").name == "Can change output credentials"


def test_an_operator_sees_that_a_secret_is_set_without_a_field_to_replace_it(operator_client):
    output = MailchimpOutputFactory()

    html = page(operator_client.get(f"/admin/outputs/output/{output.pk}/change/"))

    assert '<div class="readonly">set</div>' in html
    assert 'name="setting__api_key"' not in html
    assert "Only staff with the “Can change output credentials” permission can replace it." in html
    assert MAILCHIMP_KEY not in html
    assert 'name="setting__email_type"' in html  # the other settings stay editable


def test_an_operator_who_posts_a_secret_is_refused_and_nothing_changes(operator_client):
    output = MailchimpOutputFactory()

    response = operator_client.post(
        f"/admin/outputs/output/{output.pk}/change/",
        form(output, setting__api_key=ANOTHER_MAILCHIMP_KEY, setting__email_type="text"),
    )

    assert REFUSED.format("API key") in page(response)
    output.refresh_from_db()
    assert output.secrets == {"api_key": MAILCHIMP_KEY}
    assert output.settings["email_type"] == "html"


def test_an_operator_changes_other_settings_and_the_secret_is_kept(operator_client):
    output = MailchimpOutputFactory()

    response = operator_client.post(
        f"/admin/outputs/output/{output.pk}/change/", form(output, setting__email_type="text")
    )

    assert response.status_code == 302
    output.refresh_from_db()
    assert output.settings["email_type"] == "text"
    assert output.secrets == {"api_key": MAILCHIMP_KEY}


def test_a_superuser_replaces_a_secret(admin_client):
    output = MailchimpOutputFactory()

    response = admin_client.post(
        f"/admin/outputs/output/{output.pk}/change/", form(output, setting__api_key=ANOTHER_MAILCHIMP_KEY)
    )

    assert response.status_code == 302
    output.refresh_from_db()
    assert output.secrets == {"api_key": ANOTHER_MAILCHIMP_KEY}


def test_a_viewer_opens_an_output_and_a_connection_but_cannot_change_them(viewer_client):
    conn = ConnectionFactory()
    output = conn.output

    html = page(viewer_client.get(f"/admin/outputs/output/{output.pk}/change/"))
    assert 'name="_save"' not in html and MAILCHIMP_KEY not in html
    assert "<tr><th>API key</th><td>set</td></tr>" in html  # the settings as stored, read-only
    assert "<tr><th>Email type</th><td>HTML</td></tr><tr><th>Double opt-in</th><td>No</td></tr>" in html
    assert viewer_client.post(f"/admin/outputs/output/{output.pk}/change/", form(output)).status_code == 403
    assert viewer_client.get(f"/admin/connections/connection/{conn.pk}/change/").status_code == 200
    assert viewer_client.get(f"/admin/connections/connection/{conn.pk}/operate/pause/").status_code == 403


def test_an_operator_runs_operations_on_a_connection(operator_client):
    conn = ConnectionFactory()

    response = operator_client.post(f"/admin/connections/connection/{conn.pk}/operate/pause/")

    assert response.status_code == 302
    conn.refresh_from_db()
    assert conn.status == "paused"


def _api_as(user) -> APIClient:
    """The API as an integration acting as `user`: a write token of theirs."""
    from tests.admin.factories import ApiTokenFactory

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiTokenFactory(user=user).plaintext}")
    return client


def test_the_api_refuses_a_secret_from_a_user_without_the_permission_and_names_it(operator):
    output = MailchimpOutputFactory()

    response = _api_as(operator).patch(
        f"/api/v1/outputs/{output.pk}/",
        {"settings": {"api_key": ANOTHER_MAILCHIMP_KEY, "email_type": "text"}},
        format="json",
    )

    assert response.status_code == 403
    assert response.json() == {"settings": {"api_key": [REFUSED.format("api_key")]}}
    output.refresh_from_db()
    assert output.secrets == {"api_key": MAILCHIMP_KEY} and output.settings["email_type"] == "html"


def test_the_api_refuses_to_create_an_output_with_secrets_without_the_permission(operator):
    body = {
        "kind": "mailchimp",
        "name": "Mailchimp (new)",
        "settings": {"api_key": ANOTHER_MAILCHIMP_KEY, "email_type": "html"},
    }

    response = _api_as(operator).post("/api/v1/outputs/", body, format="json")

    assert response.status_code == 403
    assert "api_key" in response.json()["settings"]
    assert not Output.objects.filter(name="Mailchimp (new)").exists()


def test_the_api_lets_a_user_without_the_permission_change_other_settings(operator):
    output = MailchimpOutputFactory()

    response = _api_as(operator).patch(
        f"/api/v1/outputs/{output.pk}/", {"settings": {"email_type": "text", "api_key": ""}}, format="json"
    )

    assert response.status_code == 200, response.json()
    output.refresh_from_db()
    assert output.settings["email_type"] == "text" and output.secrets == {"api_key": MAILCHIMP_KEY}


def test_the_api_lets_a_user_with_the_permission_replace_a_secret(operator):
    operator.user_permissions.add(Permission.objects.get(codename="change_output_credentials"))
    output = MailchimpOutputFactory()

    response = _api_as(type(operator).objects.get(pk=operator.pk)).patch(
        f"/api/v1/outputs/{output.pk}/", {"settings": {"api_key": ANOTHER_MAILCHIMP_KEY}}, format="json"
    )

    assert response.status_code == 200, response.json()
    output.refresh_from_db()
    assert output.secrets == {"api_key": ANOTHER_MAILCHIMP_KEY}
