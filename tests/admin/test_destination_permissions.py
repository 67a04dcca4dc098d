"""Where credentials and member data go is a credential: moving a destination needs the credentials permission.

An Operator (no “Can change output credentials”) and a write token of theirs may change an output's other
settings, never its base URL, a webhook's URL or Braze's REST endpoint: in the API, the API through a staff
session, and the admin. Someone allowed to move one gets the credentials checked at the new place once the
change is saved, and the history names the old and the new place.
"""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django_q.conf import Conf
from rest_framework.test import APIClient

from outputs.models import Output
from tests.admin.conftest import page
from tests.admin.factories import ApiTokenFactory
from tests.outputs.factories import MAILCHIMP_KEY, MailchimpOutputFactory

pytestmark = pytest.mark.django_db

ATTACKER = "http://attacker.example/steal"
PERMISSION = "the “Can change output credentials” permission."
INLINES = {"connections-TOTAL_FORMS": "0", "connections-INITIAL_FORMS": "0"}


def refused(name: str) -> str:
    return (
        f"You may not change {name}: it decides where credentials and member data are sent, so changing it needs "
        f"{PERMISSION}"
    )


def token_of(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {ApiTokenFactory(user=user).plaintext}")
    return client


def session_of(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def webhook_output(url="https://hooks.example.com/relay") -> Output:
    output = Output(kind="webhook", name="Hooks", settings={"url": url})
    output.set_secrets({"secret": "whsec-s3cret"})
    output.save()
    return output


def braze_output() -> Output:
    output = Output(kind="braze", name="Braze", settings={"rest_endpoint": "https://rest.iad-01.braze.com"})
    output.set_secrets({"api_key": "braze-s3cret"})
    output.save()
    return output


def history(output) -> list[str]:
    entries = LogEntry.objects.filter(object_id=str(output.pk)).order_by("pk")
    return [entry.get_change_message() for entry in entries]


@pytest.fixture(params=["token", "session"])
def operator_api(request, operator) -> APIClient:
    """The API as an Operator: through a write token of theirs, and signed in to the admin."""
    return token_of(operator) if request.param == "token" else session_of(operator)


# --- the API ------------------------------------------------------------------------------------------------


def test_an_operator_cannot_move_the_base_url(operator_api):
    output = MailchimpOutputFactory()
    stored = output.base_url

    response = operator_api.patch(f"/api/v1/outputs/{output.pk}/", {"base_url": ATTACKER}, format="json")

    assert response.status_code == 403
    assert response.json() == {"base_url": [refused("base_url")]}
    output.refresh_from_db()
    assert output.base_url == stored


def test_an_operator_cannot_move_a_webhooks_url(operator_api):
    output = webhook_output()

    response = operator_api.patch(
        f"/api/v1/outputs/{output.pk}/", {"settings": {"url": "https://attacker.example/hook"}}, format="json"
    )

    assert response.status_code == 403
    assert response.json() == {"settings": {"url": [refused("url")]}}
    output.refresh_from_db()
    assert output.settings["url"] == "https://hooks.example.com/relay"


def test_an_operator_cannot_move_brazes_rest_endpoint(operator_api):
    output = braze_output()

    response = operator_api.patch(
        f"/api/v1/outputs/{output.pk}/", {"settings": {"rest_endpoint": "https://rest.fra-01.braze.eu"}}, format="json"
    )

    assert response.status_code == 403
    assert response.json() == {"settings": {"rest_endpoint": [refused("rest_endpoint")]}}
    output.refresh_from_db()
    assert output.settings["rest_endpoint"] == "https://rest.iad-01.braze.com"


def test_an_operator_cannot_create_an_output_pointed_anywhere(operator):
    operator.user_permissions.add(Permission.objects.get(codename="add_output"))
    body = {"kind": "webhook", "name": "Hooks", "settings": {"url": "https://attacker.example/hook", "secret": "s"}}

    response = token_of(type(operator).objects.get(pk=operator.pk)).post("/api/v1/outputs/", body, format="json")

    assert response.status_code == 403
    assert response.json()["settings"]["url"] == [refused("url")]
    assert not Output.objects.exists()


def test_an_operator_may_send_the_destination_back_unchanged_with_other_changes(operator):
    output = webhook_output()

    response = token_of(operator).patch(
        f"/api/v1/outputs/{output.pk}/",
        {"name": "Hooks (CRM)", "base_url": "", "settings": {"url": "https://hooks.example.com/relay "}},
        format="json",
    )

    assert response.status_code == 200, response.json()
    output.refresh_from_db()
    assert (output.name, output.settings["url"]) == ("Hooks (CRM)", "https://hooks.example.com/relay")


# --- the admin ----------------------------------------------------------------------------------------------


def test_an_operator_sees_the_destinations_read_only(operator_client):
    output = webhook_output()

    html = page(operator_client.get(f"/admin/outputs/output/{output.pk}/change/"))

    assert 'name="base_url"' in html and 'name="setting__url"' in html
    for name in ("base_url", "setting__url"):
        field = html[html.index(f'name="{name}"') :].split(">", 1)[0]
        assert "disabled" in field, field
    assert "Where credentials and member data are sent: only staff with the “Can change output credentials” " in html
    assert 'name="name"' in html and "disabled" not in html[html.index('name="name"') :].split(">", 1)[0]


def test_an_operator_who_posts_a_new_base_url_is_refused_and_nothing_changes(operator_client):
    output = MailchimpOutputFactory()
    stored = output.base_url
    form = {
        "name": "Mailchimp (renamed)",
        "base_url": ATTACKER,
        "setting__email_type": "html",
        **INLINES,
    }

    response = operator_client.post(f"/admin/outputs/output/{output.pk}/change/", form)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["base_url"] == [refused("base URL override")]
    output.refresh_from_db()
    assert (output.name, output.base_url) == ("Mailchimp (marketing)", stored)


def test_an_operator_who_posts_a_new_webhook_url_is_refused(operator_client):
    output = webhook_output()
    form = {"name": "Hooks", "base_url": "", "setting__url": "https://attacker.example/hook", **INLINES}

    response = operator_client.post(f"/admin/outputs/output/{output.pk}/change/", form)

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["setting__url"] == [refused("URL")]
    output.refresh_from_db()
    assert output.settings["url"] == "https://hooks.example.com/relay"


def test_an_operator_still_changes_the_other_settings(operator_client):
    output = MailchimpOutputFactory()
    form = {"name": output.name, "base_url": output.base_url, "setting__email_type": "text", **INLINES}

    response = operator_client.post(f"/admin/outputs/output/{output.pk}/change/", form)

    assert response.status_code == 302
    output.refresh_from_db()
    assert output.settings["email_type"] == "text"


# --- someone allowed to: checked at the new place after the save, and in the history -----------------------


@pytest.fixture
def q_sync(monkeypatch):
    """django-q2 runs each queued task at once, in this process: the real task path."""
    monkeypatch.setattr(Conf, "SYNC", True)


def test_moving_the_base_url_checks_the_credentials_there_once_saved(
    api, sandbox, q_sync, django_capture_on_commit_callbacks
):
    sandbox.mailchimp_account(MAILCHIMP_KEY)
    output = MailchimpOutputFactory(credentials_ok=False, credentials_message="Mailchimp did not answer.")
    new = f"{sandbox.base_url}/mailchimp/{{dc}}"

    with django_capture_on_commit_callbacks() as callbacks:
        response = api.patch(f"/api/v1/outputs/{output.pk}/", {"base_url": new}, format="json")
        assert sandbox.stats()["requests"]["mailchimp"] == 0  # nothing goes to the new place before the commit
    assert response.status_code == 200, response.json()
    output.refresh_from_db()
    assert (output.credentials_ok, output.credentials_checked_at) == (None, None)  # the old answer is forgotten
    for callback in callbacks:
        callback()

    output.refresh_from_db()
    assert output.credentials_ok is True
    assert sandbox.stats()["requests"]["mailchimp"] == 1
    assert history(output) == [
        f"API: Changed base_url from http://127.0.0.1:9/mailchimp/{{dc}} to {new}.",
        "Checked credentials at the new destination (ok): Mailchimp accepted the API key (data center us6).",
    ]


def test_a_refused_move_contacts_nobody(operator, sandbox, django_capture_on_commit_callbacks):
    sandbox.mailchimp_account(MAILCHIMP_KEY)
    output = MailchimpOutputFactory()

    with django_capture_on_commit_callbacks(execute=True):
        token_of(operator).patch(
            f"/api/v1/outputs/{output.pk}/", {"base_url": f"{sandbox.base_url}/mailchimp/{{dc}}"}, format="json"
        )

    assert sandbox.stats()["requests"]["mailchimp"] == 0
    assert history(output) == []


def test_the_admin_history_names_the_old_and_new_destination(admin_client, django_capture_on_commit_callbacks):
    output = webhook_output("https://hooks.example.com/relay?token=receiver-s3cret")
    form = {
        "name": "Hooks (CRM)",
        "base_url": "",
        "setting__url": "https://crm.example.com/relay",
        "setting__secret": "",
        **INLINES,
    }

    with django_capture_on_commit_callbacks():
        response = admin_client.post(f"/admin/outputs/output/{output.pk}/change/", form)

    assert response.status_code == 302
    assert history(output) == [
        "Changed Name. Changed URL from https://hooks.example.com/relay to https://crm.example.com/relay."
    ]
    assert "receiver-s3cret" not in history(output)[0]  # a query string may hold the receiver's token
