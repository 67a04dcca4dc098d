"""Outputs: secrets encrypted at rest and write-only; settings validated by the partner's schema."""

import logging

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command
from django.db import connection

from outputs import crypto
from outputs.models import Output
from outputs.partners import registry
from tests.outputs.factories import MAILCHIMP_KEY

pytestmark = pytest.mark.django_db

# The management form of the read-only connections inline on the output page.
INLINES = {"connections-TOTAL_FORMS": "0", "connections-INITIAL_FORMS": "0"}


def mailchimp_body(**settings):
    return {
        "kind": "mailchimp",
        "name": "Mailchimp (marketing)",
        "settings": {
            "api_key": MAILCHIMP_KEY,
            "email_type": "html",
            "double_optin": False,
            "delete_on_subscription_end": False,
            **settings,
        },
    }


def stored_column(output):
    with connection.cursor() as cursor:
        cursor.execute("SELECT secrets_encrypted, settings FROM outputs_output WHERE id = %s", [output.pk])
        return " ".join(str(v) for v in cursor.fetchone())


def test_the_api_stores_secrets_encrypted_and_never_returns_them(api):
    response = api.post("/api/v1/outputs/", mailchimp_body(), format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["secrets_set"] == ["api_key"]
    assert "api_key" not in response.json()["settings"]
    assert MAILCHIMP_KEY not in response.content.decode()
    output = Output.objects.get()
    assert MAILCHIMP_KEY not in stored_column(output)
    assert output.secrets == {"api_key": MAILCHIMP_KEY}
    listing = api.get("/api/v1/outputs/").content.decode() + api.get(f"/api/v1/outputs/{output.pk}/").content.decode()
    assert MAILCHIMP_KEY not in listing


def test_leaving_a_secret_out_keeps_it_and_sending_one_replaces_it(api):
    output_id = api.post("/api/v1/outputs/", mailchimp_body(), format="json").json()["id"]

    api.patch(f"/api/v1/outputs/{output_id}/", {"settings": {"email_type": "text"}}, format="json")
    output = Output.objects.get()
    assert output.secrets == {"api_key": MAILCHIMP_KEY} and output.settings["email_type"] == "text"

    new_key = "fedcba9876543210fedcba9876543210-us19"
    api.patch(f"/api/v1/outputs/{output_id}/", {"settings": {"api_key": new_key}}, format="json")
    assert Output.objects.get().secrets == {"api_key": new_key}


@pytest.mark.parametrize(
    ("settings", "errors"),
    [
        ({"email_type": "pdf"}, {"email_type": ["Must be one of html, text."]}),
        ({"colour": "red"}, {"colour": ["Unknown setting."]}),
        ({"api_key": ""}, {"api_key": ["This setting is required."]}),
    ],
)
def test_bad_settings_are_a_400_naming_the_setting(api, settings, errors):
    response = api.post("/api/v1/outputs/", mailchimp_body(**settings), format="json")
    assert response.status_code == 400
    assert response.json() == {"settings": errors}
    assert not Output.objects.exists()


def test_an_unknown_partner_is_refused(api):
    response = api.post("/api/v1/outputs/", {"kind": "myspace", "name": "x", "settings": {}}, format="json")
    assert response.status_code == 400
    assert response.json() == {"kind": ['"myspace" is not a valid choice.']}


def test_the_partner_of_an_output_cannot_change(api):
    output_id = api.post("/api/v1/outputs/", mailchimp_body(), format="json").json()["id"]
    response = api.patch(f"/api/v1/outputs/{output_id}/", {"kind": "braze"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"kind": ["The partner of an output cannot change; create a new output."]}


def test_the_catalog_lists_every_partner_with_its_schemas(api):
    partners = {p["slug"]: p for p in api.get("/api/v1/partners/").json()}

    assert list(partners) == registry.slugs()
    mailchimp = partners["mailchimp"]
    assert (mailchimp["pattern"], mailchimp["identity_types"]) == ("direct", ["email"])
    assert mailchimp["limits"]["batch_size"] == 500 and mailchimp["limits"]["max_concurrency"] == 10
    assert mailchimp["delivery"]["mode"] == "realtime"
    assert {s["name"]: s["secret"] for s in mailchimp["output_settings"]}["api_key"] is True
    assert [s["name"] for s in mailchimp["connection_settings"]] == ["list_id"]
    assert partners["braze"]["pattern"] == "indirect"
    assert partners["xandr"]["delivery"]["mode"] == "interval"
    assert api.get("/api/v1/partners/mailchimp/").json()["name"] == "Mailchimp"
    assert api.get("/api/v1/partners/myspace/").status_code == 404


@pytest.mark.parametrize("partner", registry.all_partners(), ids=lambda p: p.slug)
def test_the_catalog_shows_each_partner_as_its_module_declares_it(api, partner):
    shown = api.get(f"/api/v1/partners/{partner.slug}/").json()

    assert (shown["name"], shown["pattern"]) == (partner.name, partner.pattern)
    assert shown["identity_types"] == list(partner.identity_types)
    assert shown["limits"]["batch_size"] == partner.batch_size
    assert shown["limits"]["max_concurrency"] == partner.max_concurrency
    assert shown["delivery"]["mode"] == partner.delivery.mode
    for part in ("output_settings", "connection_settings"):
        declared = [(s.name, s.secret, s.required) for s in getattr(partner, part)]
        assert [(s["name"], s["secret"], s["required"]) for s in shown[part]] == declared, part


def test_checking_credentials_answers_in_one_sentence_and_is_remembered(api, sandbox):
    sandbox.mailchimp_account(MAILCHIMP_KEY)
    body = {**mailchimp_body(), "base_url": sandbox.url + "/mailchimp/{dc}"}
    output_id = api.post("/api/v1/outputs/", body, format="json").json()["id"]

    ok = api.post(f"/api/v1/outputs/{output_id}/check/").json()
    assert ok["status"] == "ok"

    sandbox.revoke("mailchimp", MAILCHIMP_KEY)
    failing = api.post(f"/api/v1/outputs/{output_id}/check/").json()
    assert failing["status"] == "failing"
    assert MAILCHIMP_KEY not in str(failing)
    output = Output.objects.get()
    assert output.credentials_ok is False and output.credentials_message


def test_the_admin_masks_secrets_and_builds_the_form_from_the_schema(admin_client, api):
    output_id = api.post("/api/v1/outputs/", mailchimp_body(), format="json").json()["id"]

    page = admin_client.get(f"/admin/outputs/output/{output_id}/change/").content.decode()

    assert MAILCHIMP_KEY not in page
    assert "API key: set" in page
    for label in ("API key", "Email type", "Double opt-in", "Delete on subscription end"):
        assert label.lower() in page.lower(), label
    assert admin_client.get("/admin/outputs/output/add/").status_code == 200
    add = admin_client.get("/admin/outputs/output/add/?kind=braze").content.decode()
    assert "Braze settings" in add


def test_an_output_is_added_in_the_admin_with_its_secret_encrypted(admin_client):
    response = admin_client.post(
        "/admin/outputs/output/add/?kind=mailchimp",
        {
            "name": "Mailchimp",
            "base_url": "",
            "setting__api_key": MAILCHIMP_KEY,
            "setting__email_type": "html",
            **INLINES,
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    output = Output.objects.get()
    assert output.secrets == {"api_key": MAILCHIMP_KEY}
    assert MAILCHIMP_KEY not in stored_column(output)


def test_a_bad_setting_in_the_admin_is_shown_next_to_its_field(admin_client):
    response = admin_client.post(
        "/admin/outputs/output/add/?kind=mailchimp",
        {
            "name": "Mailchimp",
            "base_url": "",
            "setting__api_key": "not-a-key",
            "setting__email_type": "html",
            **INLINES,
        },
    )
    assert response.status_code == 200
    assert not Output.objects.exists()
    assert "errorlist" in response.content.decode()


def test_secrets_rotate_to_a_new_key(api, settings):
    old = Fernet.generate_key().decode()
    settings.SECRETS_ENCRYPTION_KEYS = [old]
    crypto.reset_keys()
    api.post("/api/v1/outputs/", mailchimp_body(), format="json")
    before = Output.objects.get().secrets_encrypted

    new = Fernet.generate_key().decode()
    settings.SECRETS_ENCRYPTION_KEYS = [new, old]
    crypto.reset_keys()
    call_command("rotate_secrets")

    settings.SECRETS_ENCRYPTION_KEYS = [new]
    crypto.reset_keys()
    output = Output.objects.get()
    assert output.secrets_encrypted != before
    assert output.secrets == {"api_key": MAILCHIMP_KEY}

    settings.SECRETS_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    crypto.reset_keys()
    with pytest.raises(CommandError, match="cannot be decrypted with any configured key; nothing was changed"):
        call_command("rotate_secrets")
    crypto.reset_keys()


def test_no_secret_reaches_the_logs(api, sandbox, caplog):
    sandbox.mailchimp_account(MAILCHIMP_KEY)
    body = {**mailchimp_body(), "base_url": sandbox.url + "/mailchimp/{dc}"}
    with caplog.at_level(logging.DEBUG):
        output_id = api.post("/api/v1/outputs/", body, format="json").json()["id"]
        api.post(f"/api/v1/outputs/{output_id}/check/")
        sandbox.revoke("mailchimp", MAILCHIMP_KEY)
        api.post(f"/api/v1/outputs/{output_id}/check/")
    assert caplog.records
    assert MAILCHIMP_KEY not in caplog.text


def test_an_output_of_no_known_partner_does_not_validate():
    output = Output(kind="myspace", name="x")

    with pytest.raises(ValidationError) as refused:
        output.full_clean()

    assert refused.value.message_dict == {
        "kind": [f"unknown partner 'myspace'; expected one of {', '.join(registry.slugs())}"]
    }
