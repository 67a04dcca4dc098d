"""Every door that erases a profile removes it at the partner it reached (the sandbox shows it), fixes the
audience's size and forgets the profile: the API's DELETE and bulk erase, the admin's delete, "Delete
selected" and "Erase selected profiles", and the `erase_profiles` command."""

from io import StringIO

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command

from audiences.ingest import ProfileInput, upsert_profiles
from audiences.models import Audience, Identity, Profile, RefreshRun
from audiences.refresh import refresh_audience
from connections import services
from connections.drain import drain
from connections.models import OutboxMessage
from tests.connections.factories import sandbox_output
from tests.outputs.factories import LIST_ID

pytestmark = pytest.mark.django_db(transaction=True)

PREMIUM = {"user": "status", "op": "eq", "value": "Premium"}
# Removal archives the member, so "gone from the list" is what the sandbox shows.
SETTINGS = {"email_type": "html", "double_optin": False, "delete_on_subscription_end": True}


@pytest.fixture
def parisians_at_mailchimp(sandbox):
    """u0, u1 and u2 are members of a rule audience connected to Mailchimp, and already at the partner."""
    output = sandbox_output(sandbox, settings=SETTINGS)
    upsert_profiles([ProfileInput(f"u{i}", {"status": "Premium"}, [("email", f"u{i}@example.com")]) for i in range(3)])
    audience = Audience.objects.create(name="Potential Parisians", criteria=PREMIUM)
    refresh_audience(audience)
    conn = services.connect(audience, output, {"list_id": LIST_ID})
    drain(conn.pk)
    assert _members(sandbox) == {f"u{i}@example.com": "subscribed" for i in range(3)}
    return audience, conn


def _members(sandbox):
    return {email: m["status"] for email, m in sandbox.mailchimp_list_state(LIST_ID)["members"].items()}


def assert_erased_at_the_partner(sandbox, parisians_at_mailchimp, *external_ids):
    audience, conn = parisians_at_mailchimp
    drain(conn.pk)
    gone = {f"{e}@example.com" for e in external_ids}
    members = _members(sandbox)
    assert {email for email, status in members.items() if status == "archived"} == gone
    assert sandbox.mailchimp_list_state(LIST_ID)["member_count"] == 3 - len(gone)
    audience.refresh_from_db()
    assert audience.size == 3 - len(gone)
    assert not Profile.objects.filter(external_id__in=external_ids).exists()
    assert not Identity.objects.filter(value__in=gone).exists()
    # Forgotten once delivered: no outbox row holds the erased addresses any more.
    assert not OutboxMessage.objects.filter(value__in=gone).exists()


def audit_messages(user):
    return list(
        LogEntry.objects.filter(user=user, action_flag=DELETION)
        .order_by("object_repr")
        .values_list("object_repr", "change_message")
    )


# --- the API ------------------------------------------------------------------------------------------------


def test_it_erases_a_profile_with_delete(sandbox, parisians_at_mailchimp, api, read_api, api_user):
    assert read_api.delete("/api/v1/profiles/u0/").status_code == 403
    response = api.delete("/api/v1/profiles/u0/")

    assert response.status_code == 204
    assert_erased_at_the_partner(sandbox, parisians_at_mailchimp, "u0")
    assert audit_messages(api_user) == [
        ("u0", "API: Erased: removed from 1 audience (and at every partner it reached), then deleted.")
    ]
    assert api.delete("/api/v1/profiles/u0/").status_code == 404


def test_it_erases_a_list_in_one_run_and_reports_unknown_ids(sandbox, parisians_at_mailchimp, api, read_api, api_user):
    refused = read_api.post("/api/v1/profiles/erase/", {"external_ids": ["u0"]}, format="json")
    assert refused.status_code == 403
    response = api.post("/api/v1/profiles/erase/", {"external_ids": ["u0", "nobody", "u2", "u0"]}, format="json")

    assert response.status_code == 200
    assert response.json() == {"erased": 2, "memberships_removed": 2, "unknown": ["nobody"]}
    assert RefreshRun.objects.filter(trigger="erasure").count() == 1
    assert_erased_at_the_partner(sandbox, parisians_at_mailchimp, "u0", "u2")
    assert [repr for repr, _ in audit_messages(api_user)] == ["u0", "u2"]


def test_bulk_erase_refuses_bad_input_naming_the_field_and_erases_nothing(api, settings):
    upsert_profiles([ProfileInput("u0", {}, [("email", "u0@example.com")])])
    settings.BULK_MAX_RECORDS = 2

    too_many = api.post("/api/v1/profiles/erase/", {"external_ids": ["u0", "a", "b"]}, format="json")
    empty = api.post("/api/v1/profiles/erase/", {"external_ids": []}, format="json")
    missing = api.post("/api/v1/profiles/erase/", {}, format="json")
    control = api.post("/api/v1/profiles/erase/", {"external_ids": ["u0", "a\tb"]}, format="json")

    assert (too_many.status_code, too_many.json()) == (
        400,
        {"external_ids": ["at most 2 external_ids per request; this one has 3"]},
    )
    assert (empty.status_code, empty.json()) == (400, {"external_ids": ["This list may not be empty."]})
    assert (missing.status_code, missing.json()) == (400, {"external_ids": ["This field is required."]})
    assert (control.status_code, control.json()) == (
        400,
        {"external_ids": {"1": ["must not contain control characters"]}},
    )
    assert Profile.objects.filter(external_id="u0").exists()


def test_staff_need_the_delete_permission_to_erase(client, django_user_model):
    upsert_profiles([ProfileInput("u0", {}, []), ProfileInput("u1", {}, [])])
    pk = Profile.objects.get(external_id="u1").pk
    user = django_user_model.objects.create_user("olivia", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_profile", "change_profile"]))
    client.force_login(user)

    refused = client.post("/api/v1/profiles/erase/", {"external_ids": ["u0"]}, content_type="application/json")
    assert refused.status_code == 403
    assert client.delete("/api/v1/profiles/u0/").status_code == 403
    assert "Erase selected profiles" not in client.get("/admin/audiences/profile/").content.decode()
    client.post("/admin/audiences/profile/", {"action": "erase_selected", "_selected_action": [pk], "post": "yes"})
    assert Profile.objects.count() == 2

    user.user_permissions.add(Permission.objects.get(codename="delete_profile"))
    allowed = client.post("/api/v1/profiles/erase/", {"external_ids": ["u0"]}, content_type="application/json")
    assert allowed.json() == {"erased": 1, "memberships_removed": 0, "unknown": []}
    assert LogEntry.objects.get(user=user).change_message == "API: Erased: it was in no audience; deleted."
    assert "Erase selected profiles" in client.get("/admin/audiences/profile/").content.decode()


def test_the_erase_routes_are_in_the_openapi_schema(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    assert "delete" in schema["paths"]["/api/v1/profiles/{external_id}/"]
    erase = schema["paths"]["/api/v1/profiles/erase/"]["post"]
    assert erase["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErasureRequest")
    assert erase["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErasureResult")


# --- the admin ----------------------------------------------------------------------------------------------


def test_deleting_a_profile_in_the_admin_erases_it(sandbox, parisians_at_mailchimp, admin_client, admin_user):
    pk = Profile.objects.get(external_id="u1").pk

    page = admin_client.get(f"/admin/audiences/profile/{pk}/delete/").content.decode()
    response = admin_client.post(f"/admin/audiences/profile/{pk}/delete/", {"post": "yes"}, follow=True)

    assert_erased_at_the_partner(sandbox, parisians_at_mailchimp, "u1")
    assert "each partner it reached through a connection is sent its removal" in page
    assert "Erased 1 profile; it left 1 audience, and their connected partners are sent its removal." in (
        response.content.decode()
    )
    # One entry, the erasure's, not the admin's own "Deleted" as well.
    assert audit_messages(admin_user) == [
        ("u1", "Erased: removed from 1 audience (and at every partner it reached), then deleted.")
    ]


def test_delete_selected_in_the_admin_erases(sandbox, parisians_at_mailchimp, admin_client, settings):
    settings.BULK_MAX_RECORDS = 1  # a selection bigger than the API's limit is erased a run at a time
    pks = list(Profile.objects.filter(external_id__in=["u0", "u1"]).values_list("pk", flat=True))

    response = admin_client.post(
        "/admin/audiences/profile/",
        {"action": "delete_selected", "_selected_action": pks, "post": "yes"},
        follow=True,
    )

    assert_erased_at_the_partner(sandbox, parisians_at_mailchimp, "u0", "u1")
    assert "Erased 2 profiles; they left 2 audiences in all" in response.content.decode()
    assert RefreshRun.objects.filter(trigger="erasure").count() == 2


def test_the_erase_action_confirms_then_erases(sandbox, parisians_at_mailchimp, admin_client, admin_user):
    pk = Profile.objects.get(external_id="u2").pk

    confirm = admin_client.post("/admin/audiences/profile/", {"action": "erase_selected", "_selected_action": [pk]})
    assert "Erase profiles: are you sure?" in confirm.content.decode()
    assert Profile.objects.filter(pk=pk).exists()

    done = admin_client.post(
        "/admin/audiences/profile/", {"action": "erase_selected", "_selected_action": [pk], "post": "yes"}, follow=True
    )

    assert "Erased 1 profile; it left 1 audience" in done.content.decode()
    assert_erased_at_the_partner(sandbox, parisians_at_mailchimp, "u2")
    assert [repr for repr, _ in audit_messages(admin_user)] == ["u2"]


# --- the command --------------------------------------------------------------------------------------------


def run(*args) -> str:
    out = StringIO()
    call_command("erase_profiles", *args, stdout=out)
    return out.getvalue()


def test_the_command_erases_by_external_id_and_names_the_system_user(sandbox, parisians_at_mailchimp):
    output = run("--external-id", "u0", "--external-id", "ghost")

    assert "Erased 1 profile; it left 1 audience, and their connected partners are sent its removal." in output
    assert "No profile has these external IDs (never known, or already erased): ghost" in output
    assert "Audit entries name system." in output
    assert_erased_at_the_partner(sandbox, parisians_at_mailchimp, "u0")
    entry = LogEntry.objects.get(action_flag=DELETION)
    assert (entry.user.username, entry.user.is_active, entry.object_repr) == ("system", False, "u0")


def test_the_command_reads_a_file_and_records_the_given_user(sandbox, parisians_at_mailchimp, tmp_path, admin_user):
    ids = tmp_path / "ids.txt"
    ids.write_text("# erasure requests of the week\nu0\n\nu1\n")

    output = run("--file", str(ids), "--user", admin_user.username)

    assert "Erased 2 profiles; they left 2 audiences in all" in output
    assert_erased_at_the_partner(sandbox, parisians_at_mailchimp, "u0", "u1")
    assert [repr for repr, _ in audit_messages(admin_user)] == ["u0", "u1"]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--file", "/nonexistent/ids.txt"], "No file /nonexistent/ids.txt."),
        (["--file", "EMPTY"], "No external IDs in EMPTY: give one per line."),
        (
            ["--external-id", "u0", "--user", "nobody"],
            "No user 'nobody': --user names an existing user, for the audit entries.",
        ),
        (["--external-id", ""], "Not an external ID: '' (1 to 255 characters, no control characters)."),
    ],
)
def test_the_command_refuses_bad_input_and_erases_nothing(args, error, tmp_path):
    upsert_profiles([ProfileInput("u0", {}, [])])
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    args = [str(empty) if a == "EMPTY" else a for a in args]
    error = error.replace("EMPTY", str(empty))

    with pytest.raises(CommandError) as exc:
        run(*args)

    assert str(exc.value) == error
    assert Profile.objects.filter(external_id="u0").exists()


# --- what the forwarding side forgets ----------------------------------------------------------------------


def test_an_erasure_forgets_the_history_of_audiences_the_profile_left_earlier(sandbox, parisians_at_mailchimp):
    _, conn = parisians_at_mailchimp
    upsert_profiles([ProfileInput("u0", {"status": "Free"})])  # leaves the audience, removal delivered
    drain(conn.pk)
    assert OutboxMessage.objects.filter(value="u0@example.com").exists()

    run("--external-id", "u0")

    assert not OutboxMessage.objects.filter(value="u0@example.com").exists()


# --- identity edits in the admin ----------------------------------------------------------------------------


def change_identities(admin_client, external_id, rows, new=()):
    """Post the profile's admin page: `rows` {identity pk: value or None to delete}, `new` values to add."""
    profile = Profile.objects.get(external_id=external_id)
    memberships = list(profile.memberships.values_list("pk", flat=True))
    data = {
        "external_id": profile.external_id,
        "attributes": '{"status": "Premium"}',
        "identities-TOTAL_FORMS": str(len(rows) + len(new)),
        "identities-INITIAL_FORMS": str(len(rows)),
        "memberships-TOTAL_FORMS": str(len(memberships)),
        "memberships-INITIAL_FORMS": str(len(memberships)),
    }
    for i, (pk, value) in enumerate(rows.items()):
        data |= {f"identities-{i}-id": pk, f"identities-{i}-profile": profile.pk, f"identities-{i}-type": "email"}
        data[f"identities-{i}-value"] = value or Identity.objects.get(pk=pk).value
        if value is None:
            data[f"identities-{i}-DELETE"] = "on"
    for i, value in enumerate(new, start=len(rows)):
        data |= {f"identities-{i}-profile": profile.pk, f"identities-{i}-type": "email", f"identities-{i}-value": value}
    for i, pk in enumerate(memberships):
        data |= {f"memberships-{i}-id": pk, f"memberships-{i}-profile": profile.pk}
    response = admin_client.post(f"/admin/audiences/profile/{profile.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()


def test_an_email_changed_inline_is_removed_at_the_partner_and_the_new_one_added(
    sandbox, parisians_at_mailchimp, admin_client
):
    _, conn = parisians_at_mailchimp
    pk = Identity.objects.get(value="u0@example.com").pk

    change_identities(admin_client, "u0", {pk: " U0.New@Example.com "})
    drain(conn.pk)

    members = _members(sandbox)
    assert (members["u0@example.com"], members["u0.new@example.com"]) == ("archived", "subscribed")
    assert list(Identity.objects.filter(profile__external_id="u0").values_list("value", flat=True)) == [
        "u0.new@example.com"
    ]


def test_an_email_added_inline_is_added_at_the_partner(sandbox, parisians_at_mailchimp, admin_client):
    _, conn = parisians_at_mailchimp
    pk = Identity.objects.get(value="u1@example.com").pk

    change_identities(admin_client, "u1", {pk: "u1@example.com"}, new=["u1.work@example.com"])
    drain(conn.pk)

    members = _members(sandbox)
    assert (members["u1@example.com"], members["u1.work@example.com"]) == ("subscribed", "subscribed")


def test_an_email_deleted_inline_is_removed_at_the_partner(sandbox, parisians_at_mailchimp, admin_client):
    audience, conn = parisians_at_mailchimp
    pk = Identity.objects.get(value="u2@example.com").pk

    change_identities(admin_client, "u2", {pk: None})
    drain(conn.pk)

    assert _members(sandbox)["u2@example.com"] == "archived"
    assert not Identity.objects.filter(pk=pk).exists()
    audience.refresh_from_db()
    assert audience.size == 3  # still a member, with no address Mailchimp accepts
