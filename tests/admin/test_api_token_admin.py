"""API tokens in the admin, and the credentials permission as seen through API tokens and the admin's add form."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from outputs.models import Output
from staff.models import ApiToken, AuditEntry
from tests.admin.conftest import page
from tests.admin.factories import ApiTokenFactory, UserFactory
from tests.outputs.factories import ANOTHER_MAILCHIMP_KEY, MAILCHIMP_KEY, MailchimpOutputFactory

pytestmark = pytest.mark.django_db

REFUSED = "You may not change {}: changing credentials needs the “Can change output credentials” permission."
READ_ONLY = (
    "This API token is read-only: it may only use GET, HEAD and OPTIONS. "
    "Use a token with the write scope to change anything."
)


def test_the_list_shows_each_token_and_never_its_hash(admin_client):
    token = ApiTokenFactory(name="CRM sync", user__username="crm", last_used_at=timezone.now())
    ApiTokenFactory(name="Old export", revoked_at=timezone.now())

    html = page(admin_client.get("/admin/staff/apitoken/"))

    for column in ["prefix", "user", "name", "scope", "status", "expires at", "last used at", "revoked at"]:
        assert f">{column.capitalize()}</a>" in html or f">{column.capitalize()}</span>" in html, column
    assert token.prefix in html and "CRM sync" in html and "crm" in html
    assert "active" in html and "revoked" in html
    assert token.key_hash not in html and token.plaintext.split("_", 2)[2] not in html


def test_adding_a_token_shows_it_once_and_it_works(admin_client, client):
    user = UserFactory(username="crm")

    response = admin_client.post(
        "/admin/staff/apitoken/add/", {"name": "CRM sync", "user": user.pk, "scope": "read", "expires_at_0": ""}
    )

    token = ApiToken.objects.get()
    html = page(response)
    plaintext = html.split('id="api-token"')[0].rsplit('value="', 1)[1].split('"')[0]
    assert plaintext.startswith(f"ar_{token.prefix}_")
    assert "Copy it now: it is shown only this once." in html
    assert (token.name, token.user, token.scope) == ("CRM sync", user, "read")
    assert client.get("/api/v1/audiences/", HTTP_AUTHORIZATION=f"Bearer {plaintext}").status_code == 200
    assert AuditEntry.objects.get(object_id=str(token.pk)).get_action_flag_display() == "Addition"

    secret = plaintext.split("_", 2)[2]
    for later in ["/admin/staff/apitoken/", f"/admin/staff/apitoken/{token.pk}/change/"]:
        later_html = page(admin_client.get(later))
        assert secret not in later_html and token.key_hash not in later_html


def test_the_add_form_asks_for_what_a_token_needs_and_refuses_an_expiry_in_the_past(admin_client):
    user = UserFactory(username="crm")
    html = page(admin_client.get("/admin/staff/apitoken/add/"))
    assert all(f'name="{field}' in html for field in ["name", "user", "scope", "expires_at_0"])

    response = admin_client.post(
        "/admin/staff/apitoken/add/",
        {"name": "CRM sync", "user": user.pk, "scope": "write", "expires_at_0": "2020-01-01", "expires_at_1": "00:00"},
    )

    assert "Choose a time in the future: a token that has expired cannot be used." in page(response)
    assert not ApiToken.objects.exists()


def test_the_change_page_shows_the_token_without_a_way_to_change_who_or_what(admin_client):
    token = ApiTokenFactory(name="CRM sync", user__username="crm", scope="read")

    html = page(admin_client.get(f"/admin/staff/apitoken/{token.pk}/change/"))

    assert 'name="name"' in html and 'name="expires_at_0"' in html
    assert 'name="user"' not in html and 'name="scope"' not in html and 'name="key_hash"' not in html
    assert f'<div class="readonly">{token.prefix}</div>' in html


def test_revoke_selected_tokens(admin_client, client):
    first, second = ApiTokenFactory(), ApiTokenFactory()
    already = ApiTokenFactory(revoked_at=timezone.now() - timedelta(days=3))
    was = already.revoked_at

    response = admin_client.post(
        "/admin/staff/apitoken/",
        {"action": "revoke_selected", "_selected_action": [first.pk, second.pk, already.pk]},
        follow=True,
    )

    assert "Revoked 2 tokens; they stop working now." in page(response)
    for token in (first, second):
        assert client.get("/api/v1/audiences/", HTTP_AUTHORIZATION=f"Bearer {token.plaintext}").status_code == 401
        assert AuditEntry.objects.get(object_id=str(token.pk)).change_message == "Revoked."
    already.refresh_from_db()
    assert already.revoked_at == was


def test_an_operator_does_not_manage_api_tokens(operator_client):
    assert operator_client.get("/admin/staff/apitoken/").status_code == 403


# The credentials permission, through each door.


def test_a_write_token_of_a_user_without_the_credentials_permission_cannot_change_a_secret():
    output = MailchimpOutputFactory()
    token = ApiTokenFactory()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.plaintext}")

    response = client.patch(
        f"/api/v1/outputs/{output.pk}/", {"settings": {"api_key": ANOTHER_MAILCHIMP_KEY}}, format="json"
    )

    assert response.status_code == 403
    assert response.json() == {"settings": {"api_key": [REFUSED.format("api_key")]}}
    output.refresh_from_db()
    assert output.secrets == {"api_key": MAILCHIMP_KEY}


def test_a_write_token_of_a_user_with_the_credentials_permission_changes_a_secret(api):
    output = MailchimpOutputFactory()

    response = api.patch(
        f"/api/v1/outputs/{output.pk}/", {"settings": {"api_key": ANOTHER_MAILCHIMP_KEY}}, format="json"
    )

    assert response.status_code == 200, response.json()
    output.refresh_from_db()
    assert output.secrets == {"api_key": ANOTHER_MAILCHIMP_KEY}


def test_a_read_token_cannot_change_a_secret_even_with_the_permission(read_api):
    output = MailchimpOutputFactory()

    response = read_api.patch(
        f"/api/v1/outputs/{output.pk}/", {"settings": {"api_key": ANOTHER_MAILCHIMP_KEY}}, format="json"
    )

    assert response.status_code == 403
    assert response.json() == {"detail": READ_ONLY}
    output.refresh_from_db()
    assert output.secrets == {"api_key": MAILCHIMP_KEY}


def _staff_who_adds_outputs(client, *extra):
    user = UserFactory(username="adder", is_staff=True)
    codenames = ["add_output", "change_output", "view_output", *extra]
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


ADD = {
    "name": "Mailchimp (new)",
    "base_url": "",
    "setting__api_key": ANOTHER_MAILCHIMP_KEY,
    "setting__email_type": "html",
    "connections-TOTAL_FORMS": "0",
    "connections-INITIAL_FORMS": "0",
}


def test_staff_without_the_permission_cannot_add_an_output_with_a_secret_in_the_admin(client):
    staff = _staff_who_adds_outputs(client)

    html = page(staff.post("/admin/outputs/output/add/?kind=mailchimp", {**ADD, "kind": "mailchimp"}))

    assert REFUSED.format("API key") in html
    assert not Output.objects.exists()


def test_staff_with_the_permission_add_an_output_with_a_secret_in_the_admin(client):
    staff = _staff_who_adds_outputs(client, "change_output_credentials")

    response = staff.post("/admin/outputs/output/add/?kind=mailchimp", {**ADD, "kind": "mailchimp"})

    assert response.status_code == 302, page(response)
    assert Output.objects.get().secrets == {"api_key": ANOTHER_MAILCHIMP_KEY}


def test_staff_allowed_to_add_tokens_may_only_mint_them_for_themselves(client, django_user_model):
    """A token acts as its user: minting one for a superuser would hand over the superuser's rights."""
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw-boss-1")
    clerk = UserFactory(username="clerk", is_staff=True)
    clerk.user_permissions.add(*Permission.objects.filter(codename__in=["add_apitoken", "view_apitoken"]))
    client.force_login(clerk)

    for_boss = client.post("/admin/staff/apitoken/add/", {"name": "x", "user": boss.pk, "scope": "write"})
    for_self = client.post("/admin/staff/apitoken/add/", {"name": "mine", "user": clerk.pk, "scope": "read"})

    assert for_boss.status_code == 200 and "Select a valid choice." in for_boss.content.decode()
    assert "Copy it now: it is shown only this once." in page(for_self)
    assert list(ApiToken.objects.values_list("user__username", "name")) == [("clerk", "mine")]
