import hashlib
import threading

import pytest
import requests

from outputs.sandbox.client import SandboxError
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY

API_KEY_INVALID = {
    "type": "https://mailchimp.com/developer/marketing/docs/errors/",
    "title": "API Key Invalid",
    "status": 401,
    "detail": "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
}


def _hash(email):
    return hashlib.md5(email.lower().encode()).hexdigest()


def _problem(response):
    """The problem document without its per-request instance id (which must be a UUID string)."""
    body = response.json()
    assert len(body.pop("instance")) == 36
    return body


def _batch(demo, members, update_existing=True, auth=("anystring", MAILCHIMP_KEY)):
    return requests.post(
        f"{demo['mailchimp']['base_url']}/lists/{LIST_ID}",
        auth=auth,
        json={"members": members, "update_existing": update_existing},
        timeout=10,
    )


def test_it_answers_ping_and_tracks_members_in_the_list(demo, client):
    base = demo["mailchimp"]["base_url"]
    ping = requests.get(f"{base}/ping", auth=("anystring", MAILCHIMP_KEY), timeout=5)
    assert ping.status_code == 200
    assert ping.json() == {"health_status": "Everything's Chimpy!"}

    put = requests.put(
        f"{base}/lists/{LIST_ID}/members/{_hash('Ada@Example.com')}",
        auth=("anystring", MAILCHIMP_KEY),
        json={"email_address": "Ada@Example.com", "status_if_new": "subscribed", "email_type": "html"},
        timeout=5,
    )
    assert put.status_code == 200
    assert put.json()["status"] == "subscribed"
    batch = _batch(
        demo,
        [
            {"email_address": "bob@example.com", "status": "subscribed"},
            {"email_address": "cy@example.com", "status": "pending"},
            {"email_address": "ada@example.com", "status": "unsubscribed"},
        ],
    )
    assert batch.status_code == 200
    body = batch.json()
    assert (body["total_created"], body["total_updated"], body["error_count"]) == (2, 1, 0)
    assert [m["email_address"] for m in body["new_members"]] == ["bob@example.com", "cy@example.com"]

    listed = requests.get(f"{base}/lists/{LIST_ID}", auth=("anystring", MAILCHIMP_KEY), timeout=5).json()
    assert listed["id"] == LIST_ID
    assert listed["double_optin"] is False
    assert listed["stats"]["member_count"] == 1
    assert listed["stats"]["unsubscribe_count"] == 1

    member = requests.get(
        f"{base}/lists/{LIST_ID}/members/{_hash('bob@example.com')}", auth=("x", MAILCHIMP_KEY), timeout=5
    )
    assert member.json()["status"] == "subscribed"

    state = client.mailchimp_list_state(LIST_ID)
    assert state["member_count"] == 1
    assert state["counts"] == {"subscribed": 1, "pending": 1, "unsubscribed": 1, "archived": 0, "cleaned": 0}
    assert state["members"]["Ada@Example.com"] == {"status": "unsubscribed", "email_type": "html", "operations": 2}


def test_it_accepts_the_key_as_apikey_or_bearer_authorization(demo):
    base = demo["mailchimp"]["base_url"]
    for header in (f"apikey {MAILCHIMP_KEY}", f"Bearer {MAILCHIMP_KEY}"):
        assert requests.get(f"{base}/ping", headers={"Authorization": header}, timeout=5).status_code == 200


def test_it_refuses_a_key_used_on_another_datacenter(demo, sandbox):
    response = requests.get(f"{sandbox.url}/mailchimp/us1/3.0/ping", auth=("anystring", MAILCHIMP_KEY), timeout=5)
    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert _problem(response) == API_KEY_INVALID


def test_it_refuses_an_unknown_key_and_a_revoked_key_alike(demo, client):
    base = demo["mailchimp"]["base_url"]
    unknown = requests.get(f"{base}/ping", auth=("anystring", "f" * 32 + "-us6"), timeout=5)
    assert unknown.status_code == 401
    assert _problem(unknown) == API_KEY_INVALID

    client.revoke("mailchimp", MAILCHIMP_KEY)
    revoked = requests.get(f"{base}/lists/{LIST_ID}", auth=("anystring", MAILCHIMP_KEY), timeout=5)
    assert revoked.status_code == 401
    assert revoked.headers["Content-Type"].startswith("application/problem+json")
    assert _problem(revoked) == API_KEY_INVALID


def test_it_answers_resource_not_found_for_a_missing_or_deleted_list(demo, client):
    base = demo["mailchimp"]["base_url"]
    missing = requests.get(f"{base}/lists/nosuchlist", auth=("x", MAILCHIMP_KEY), timeout=5)
    assert missing.status_code == 404
    assert _problem(missing) == {
        "type": "https://mailchimp.com/developer/marketing/docs/errors/",
        "title": "Resource Not Found",
        "status": 404,
        "detail": "The requested resource could not be found.",
    }
    client.delete_mailchimp_list(LIST_ID)
    deleted = _batch(demo, [{"email_address": "a@example.com", "status": "subscribed"}])
    assert deleted.status_code == 404
    assert deleted.json()["title"] == "Resource Not Found"


def test_it_accepts_500_members_and_refuses_501(demo, client):
    members = [{"email_address": f"user{i}@example.com", "status": "subscribed"} for i in range(501)]
    accepted = _batch(demo, members[:500])
    assert accepted.status_code == 200
    assert accepted.json()["total_created"] == 500

    refused = _batch(demo, members)
    assert refused.status_code == 400
    assert refused.headers["Content-Type"].startswith("application/problem+json")
    body = _problem(refused)
    assert body["title"] == "Invalid Resource"
    assert body["errors"] == [
        {"field": "members", "message": "Schema describes array with at most 500 items, 501 found."}
    ]
    assert client.mailchimp_list_state(LIST_ID)["member_count"] == 500


def test_it_allows_ten_simultaneous_connections_per_key_and_refuses_the_eleventh(demo, client):
    client.fault("mailchimp", "slow", path="/ping", delay=1.0, count=20)
    url = f"{demo['mailchimp']['base_url']}/ping"
    start = threading.Barrier(11)
    responses = []

    def call():
        start.wait()
        responses.append(requests.get(url, auth=("anystring", MAILCHIMP_KEY), timeout=10))

    threads = [threading.Thread(target=call) for _ in range(11)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 10 + [429]
    refused = next(r for r in responses if r.status_code == 429)
    assert _problem(refused) == {
        "type": "https://mailchimp.com/developer/marketing/docs/errors/",
        "title": "Too Many Requests",
        "status": 429,
        "detail": "You have exceeded the limit of 10 simultaneous connections.",
    }
    assert client.stats()["max_concurrent"]["mailchimp"] >= 10


def test_it_reports_per_member_rejections_in_errors(demo, client):
    client.mailchimp_rejection("fake@example.com", "fake")
    client.mailchimp_rejection("gone@example.com", "compliance")
    response = _batch(
        demo,
        [
            {"email_address": "ok@example.com", "status": "subscribed"},
            {"email_address": "fake@example.com", "status": "subscribed"},
            {"email_address": "gone@example.com", "status": "subscribed"},
            {"email_address": "not-an-address", "status": "subscribed"},
        ],
    )
    assert response.status_code == 200
    body = response.json()
    assert body["total_created"] == 1
    assert body["error_count"] == 3
    errors = {e["email_address"]: (e["error"], e["error_code"]) for e in body["errors"]}
    assert errors["fake@example.com"] == (
        "fake@example.com looks fake or invalid, please enter a real email address.",
        "ERROR_GENERIC",
    )
    assert errors["gone@example.com"] == (
        "gone@example.com is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be "
        "subscribed.",
        "ERROR_GENERIC",
    )
    assert errors["not-an-address"] == ("Please provide a valid email address.", "ERROR_GENERIC")
    # A contact in a compliance state can still be unsubscribed.
    assert _batch(demo, [{"email_address": "gone@example.com", "status": "unsubscribed"}]).json()["error_count"] == 0


def test_it_reports_an_existing_member_when_update_existing_is_false(demo):
    _batch(demo, [{"email_address": "ada@example.com", "status": "subscribed"}])
    body = _batch(demo, [{"email_address": "ada@example.com", "status": "subscribed"}], update_existing=False).json()
    assert body["errors"][0]["error_code"] == "ERROR_CONTACT_EXISTS"
    assert body["total_updated"] == 0


def test_it_makes_upserts_idempotent_and_counts_the_repeats(demo, client):
    member = {"email_address": "ada@example.com", "status": "subscribed"}
    first = _batch(demo, [member]).json()
    second = _batch(demo, [member]).json()
    assert (first["total_created"], second["total_created"], second["total_updated"]) == (1, 0, 1)
    state = client.mailchimp_list_state(LIST_ID)
    assert state["member_count"] == 1
    assert state["members"]["ada@example.com"]["operations"] == 2
    assert client.stats()["duplicates"]["mailchimp"] == 1


def test_it_refuses_a_subscriber_hash_that_does_not_match_the_email(demo):
    response = requests.put(
        f"{demo['mailchimp']['base_url']}/lists/{LIST_ID}/members/{_hash('someone-else@example.com')}",
        auth=("x", MAILCHIMP_KEY),
        json={"email_address": "ada@example.com", "status_if_new": "subscribed"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["title"] == "Invalid Resource"


def test_it_archives_on_delete_and_forgets_on_delete_permanent(demo, client):
    base = demo["mailchimp"]["base_url"]
    _batch(demo, [{"email_address": "ada@example.com", "status": "subscribed"}])
    member_url = f"{base}/lists/{LIST_ID}/members/{_hash('ada@example.com')}"
    assert requests.delete(member_url, auth=("x", MAILCHIMP_KEY), timeout=5).status_code == 204
    state = client.mailchimp_list_state(LIST_ID)
    assert (state["member_count"], state["counts"]["archived"]) == (0, 1)
    assert requests.get(member_url, auth=("x", MAILCHIMP_KEY), timeout=5).json()["status"] == "archived"

    forget = requests.post(f"{member_url}/actions/delete-permanent", auth=("x", MAILCHIMP_KEY), timeout=5)
    assert forget.status_code == 204
    assert requests.get(member_url, auth=("x", MAILCHIMP_KEY), timeout=5).status_code == 404
    again = _batch(demo, [{"email_address": "ada@example.com", "status": "subscribed"}]).json()
    assert again["errors"][0]["error"].startswith("ada@example.com was permanently deleted and cannot be re-imported.")


def test_it_answers_malformed_json_with_mailchimps_parse_error(demo):
    response = requests.post(
        f"{demo['mailchimp']['base_url']}/lists/{LIST_ID}",
        auth=("x", MAILCHIMP_KEY),
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["title"] == "JSON Parse Error"
    assert response.json()["detail"] == "We encountered an unspecified JSON parsing error."


def test_it_refuses_to_archive_a_pending_cleaned_or_archived_member(demo, client):
    base = demo["mailchimp"]["base_url"]
    _batch(
        demo,
        [
            {"email_address": "pending@example.com", "status": "pending"},
            {"email_address": "cleaned@example.com", "status": "cleaned"},
            {"email_address": "archived@example.com", "status": "subscribed"},
        ],
    )
    archived = f"{base}/lists/{LIST_ID}/members/{_hash('archived@example.com')}"
    assert requests.delete(archived, auth=("x", MAILCHIMP_KEY), timeout=5).status_code == 204

    for email in ("pending@example.com", "cleaned@example.com", "archived@example.com"):
        response = requests.delete(
            f"{base}/lists/{LIST_ID}/members/{_hash(email)}", auth=("x", MAILCHIMP_KEY), timeout=5
        )
        assert response.status_code == 405
        assert _problem(response) == {
            "type": "https://mailchimp.com/developer/marketing/docs/errors/",
            "title": "Method Not Allowed",
            "status": 405,
            "detail": "This list member cannot be removed. Can not archive a contact that is bounced, pending or "
            "archived",
        }
    counts = client.mailchimp_list_state(LIST_ID)["counts"]
    assert (counts["pending"], counts["cleaned"], counts["archived"]) == (1, 1, 1)


def test_it_lets_only_a_pending_member_confirm(demo, client):
    _batch(demo, [{"email_address": "ada@example.com", "status": "pending"}])
    _batch(demo, [{"email_address": "bob@example.com", "status": "pending"}])
    requests.patch(
        f"{demo['mailchimp']['base_url']}/lists/{LIST_ID}/members/{_hash('bob@example.com')}",
        auth=("x", MAILCHIMP_KEY),
        json={"status": "unsubscribed"},
        timeout=5,
    )

    assert client.mailchimp_contact_acts(LIST_ID, "ada@example.com", "confirm") == {
        "email": "ada@example.com",
        "status": "subscribed",
    }
    with pytest.raises(SandboxError) as excinfo:
        client.mailchimp_contact_acts(LIST_ID, "bob@example.com", "confirm")

    assert str(excinfo.value).endswith(
        "answered 400: bob@example.com cannot confirm: the contact is unsubscribed, not pending."
    )
    state = client.mailchimp_list_state(LIST_ID)
    assert {e: m["status"] for e, m in state["members"].items()} == {
        "ada@example.com": "subscribed",
        "bob@example.com": "unsubscribed",
    }


def test_it_puts_a_contact_who_unsubscribes_themselves_in_a_compliance_state(demo, client):
    _batch(demo, [{"email_address": "ada@example.com", "status": "subscribed"}])

    client.mailchimp_contact_acts(LIST_ID, "ada@example.com", "unsubscribe")
    again = _batch(demo, [{"email_address": "ada@example.com", "status": "subscribed"}]).json()

    assert again["errors"][0]["error"] == (
        "ada@example.com is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be "
        "subscribed."
    )
    assert client.mailchimp_list_state(LIST_ID)["members"]["ada@example.com"]["status"] == "unsubscribed"


def test_it_refuses_new_members_without_a_required_merge_field_unless_told_to_skip(client):
    client.mailchimp_list(MAILCHIMP_KEY, "withnames", "Needs names", required_merge_fields=["FNAME"])
    base = client.mailchimp_url()
    body = {"members": [{"email_address": "ada@example.com", "status": "subscribed"}], "update_existing": True}

    refused = requests.post(f"{base}/lists/withnames", auth=("x", MAILCHIMP_KEY), json=body, timeout=5).json()
    skipped = requests.post(
        f"{base}/lists/withnames?skip_merge_validation=true", auth=("x", MAILCHIMP_KEY), json=body, timeout=5
    ).json()
    single = requests.put(
        f"{base}/lists/withnames/members/{_hash('bob@example.com')}",
        auth=("x", MAILCHIMP_KEY),
        json={"email_address": "bob@example.com", "status_if_new": "subscribed"},
        timeout=5,
    )

    assert refused["errors"] == [
        {
            "email_address": "ada@example.com",
            "error": "Your merge fields were invalid.",
            "error_code": "ERROR_GENERIC",
            "field": "FNAME",
            "field_message": "Please enter a value",
        }
    ]
    assert skipped["total_created"] == 1
    assert single.status_code == 400
    assert (single.json()["detail"], single.json()["errors"]) == (
        "Your merge fields were invalid.",
        [{"field": "FNAME", "message": "Please enter a value"}],
    )
    named = {"email_address": "bob@example.com", "status": "subscribed", "merge_fields": {"FNAME": "Bob"}}
    named_body = {"members": [named], "update_existing": True}
    assert (
        requests.post(f"{base}/lists/withnames", auth=("x", MAILCHIMP_KEY), json=named_body, timeout=5).json()[
            "total_created"
        ]
        == 1
    )


def test_it_refuses_signups_for_a_while_from_a_contact_on_many_lists(demo, client):
    client.mailchimp_rejection("busy@example.com", "busy", count=1)
    member = {"email_address": "busy@example.com", "status": "subscribed"}

    first = _batch(demo, [member]).json()
    later = _batch(demo, [member]).json()

    assert first["errors"] == [
        {
            "email_address": "busy@example.com",
            "error": "busy@example.com has signed up to a lot of lists very recently; we're not allowing more "
            "signups for now",
            "error_code": "ERROR_GENERIC",
        }
    ]
    assert later["total_created"] == 1
