"""Audit history: every change to an output or a connection, by whom and when, in the admin and over the API."""

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType

from connections.models import Connection
from outputs.models import Output
from staff import audit
from tests.admin.conftest import page
from tests.connections.factories import ConnectionFactory, StaticAudienceFactory
from tests.outputs.factories import ANOTHER_MAILCHIMP_KEY, MAILCHIMP_KEY, MailchimpOutputFactory

pytestmark = pytest.mark.django_db

INLINES = {"connections-TOTAL_FORMS": "0", "connections-INITIAL_FORMS": "0"}


def history(obj) -> list[tuple[str, str]]:
    entries = LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
    ).order_by("action_time", "id")
    return [(e.user.username, e.get_change_message()) for e in entries]


def no_secret_anywhere(*secrets):
    text = " ".join(f"{e.object_repr} {e.change_message}" for e in LogEntry.objects.all())
    return not any(s in text for s in secrets)


def test_it_records_an_admin_change_to_an_output_by_label_never_by_value(admin_client, admin_user):
    output = MailchimpOutputFactory()
    data = {"name": "Mailchimp (renamed)", "base_url": output.base_url, "setting__api_key": ANOTHER_MAILCHIMP_KEY,
            "setting__email_type": "text", **INLINES}  # fmt: skip

    assert admin_client.post(f"/admin/outputs/output/{output.pk}/change/", data).status_code == 302

    [(who, what)] = history(output)
    assert who == admin_user.username
    assert what == "Changed Name, API key and Email type."  # labels, no values, no required star
    assert no_secret_anywhere(ANOTHER_MAILCHIMP_KEY, MAILCHIMP_KEY)


def test_it_records_api_changes_to_an_output_with_the_api_user(api, api_user):
    body = {
        "kind": "mailchimp",
        "name": "Mailchimp (api)",
        "settings": {"api_key": MAILCHIMP_KEY, "email_type": "html"},
    }
    output_id = api.post("/api/v1/outputs/", body, format="json").json()["id"]
    api.patch(
        f"/api/v1/outputs/{output_id}/",
        {"settings": {"api_key": ANOTHER_MAILCHIMP_KEY, "email_type": "text"}},
        format="json",
    )
    api.patch(f"/api/v1/outputs/{output_id}/", {"name": "Mailchimp (api)"}, format="json")
    output = Output.objects.get(pk=output_id)

    assert history(output) == [
        ("integration", "API: Added."),
        ("integration", "API: Changed email_type and api_key."),
        ("integration", "API: Saved with no changes."),
    ]
    assert no_secret_anywhere(ANOTHER_MAILCHIMP_KEY, MAILCHIMP_KEY)

    api.delete(f"/api/v1/outputs/{output_id}/")
    assert history(output)[-1] == ("integration", "API: Deleted.")


def test_the_history_page_shows_changes_made_over_the_api(api, admin_client):
    conn = ConnectionFactory()
    api.post(f"/api/v1/connections/{conn.pk}/pause/")

    html = page(admin_client.get(f"/admin/connections/connection/{conn.pk}/history/"))

    assert "integration" in html
    assert "API: Paused &#x27;" in html


def test_it_records_connections_created_changed_operated_and_disconnected_over_the_api(api):
    output = MailchimpOutputFactory()
    audience = StaticAudienceFactory(name="Potential Parisians")
    created = api.post(
        "/api/v1/connections/", {"audience": audience.pk, "output": output.pk, "settings": {"list_id": "a1b2c3d4e5"}},
        format="json",
    )  # fmt: skip
    conn = Connection.objects.get(pk=created.json()["id"])
    api.patch(f"/api/v1/connections/{conn.pk}/", {"settings": {"list_id": "f6e5d4c3b2"}}, format="json")
    api.post(f"/api/v1/connections/{conn.pk}/pause/")
    api.post(f"/api/v1/connections/{conn.pk}/resume/")
    api.post(f"/api/v1/connections/{conn.pk}/retry-failed/")
    api.delete(f"/api/v1/connections/{conn.pk}/?remove_from_partner=false")

    label = "'Potential Parisians' → 'Mailchimp (marketing)'"
    assert [what for _, what in history(conn)] == [
        f"API: Connected {label}. No current member has an identity Mailchimp accepts, so nothing was queued.",
        "API: Changed list_id.",
        f"API: Paused {label}. New membership changes wait until you resume.",
        f"API: Resumed {label}. Nothing is waiting.",
        f"API: {label} has no failed messages to retry.",
        f"API: Disconnected {label}. The audience's members stay at Mailchimp.",
    ]
    assert LogEntry.objects.filter(object_id=str(conn.pk), action_flag=3).count() == 1  # the disconnect: a deletion


def test_it_records_a_credentials_check_from_the_admin_and_the_api(admin_client, api):
    output = MailchimpOutputFactory()  # its base URL answers nothing: the check fails at once

    admin_client.post(f"/admin/outputs/output/{output.pk}/check/")
    api.post(f"/api/v1/outputs/{output.pk}/check/")

    [(_, in_admin), (who, over_api)] = history(output)
    assert in_admin.startswith("Checked credentials (failing): Could not reach Mailchimp")
    assert who == "integration" and over_api.startswith("API: Checked credentials (failing): Could not reach Mailchimp")
    assert no_secret_anywhere(MAILCHIMP_KEY)


def test_it_lists_the_audit_history_read_only_for_viewers(viewer_client, admin_user):
    output = MailchimpOutputFactory()
    audit.record(admin_user, output, "Changed api_key.")

    html = page(viewer_client.get("/admin/staff/auditentry/"))

    assert "Changed api_key." in html and admin_user.username in html
    assert f'href="/admin/outputs/output/{output.pk}/change/"' in html
    entry = LogEntry.objects.get()
    assert viewer_client.post(f"/admin/staff/auditentry/{entry.pk}/delete/").status_code == 403


def test_the_audit_list_filters_by_what_changed(admin_client, admin_user):
    conn = ConnectionFactory()
    audit.record(admin_user, conn.output, "Changed email_type.")
    audit.record(admin_user, conn, "Changed list_id.")

    outputs = page(admin_client.get("/admin/staff/auditentry/", {"kind": "output"}))
    connections = page(admin_client.get("/admin/staff/auditentry/", {"kind": "connection", "action": "2"}))

    assert "Changed email_type." in outputs and "Changed list_id." not in outputs
    assert "Changed list_id." in connections and "Changed email_type." not in connections


def test_it_names_changed_fields_without_their_values():
    before = {"name": "A", "api_key": "old-secret", "email_type": "html"}
    after = {"name": "A", "api_key": "new-secret", "email_type": "text"}

    assert audit.sentence(audit.changed_fields(before, after)) == "Changed api_key and email_type."
    assert audit.sentence([]) == "Saved with no changes."


def test_nothing_is_recorded_without_a_user():
    assert audit.record(None, MailchimpOutputFactory(), "Changed by a task.") is None
    assert not LogEntry.objects.exists()
