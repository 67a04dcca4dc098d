"""A Klaviyo connection against the sandbox over real HTTP: forwarded, verified (each hint), counted and troubleshot."""

import datetime as dt

import pytest
from django.utils import timezone

from connections import services
from connections.drain import drain
from connections.funnel import compute
from connections.models import Connection, OutboxMessage
from connections.verification import verify
from tests.audiences.factories import IdentityFactory, MembershipFactory, ProfileFactory
from tests.connections.factories import StaticAudienceFactory, add_members
from tests.connections.verification.support import TRANSIENT, assert_hint, by_name, emails, output, reverify

pytestmark = pytest.mark.django_db

KEY = "pk_6e0f2d4b8a1c3e5f7a9b0c2d4e6f8a1b3c"
LIST_ID = "Y6nRLr"
KEY_HINT = (
    "Check in Klaviyo (Settings → API keys) that the private key exists and has not been revoked; a revoked key "
    "cannot be restored, so create a new one and save it on this output."
)


def control(sandbox, path, body=None, method="POST"):
    return sandbox._call(method, f"klaviyo/{path}", body)


def klaviyo_connection(sandbox, members=3, settings=None, base_url=None):
    control(sandbox, "keys", {"api_key": KEY})
    control(sandbox, "lists", {"list_id": LIST_ID, "name": "Potential Parisians"})
    out = output("klaviyo", {}, {"api_key": KEY}, base_url or f"{sandbox.base_url}/klaviyo", name="Klaviyo")
    audience = StaticAudienceFactory(name="Potential Parisians")
    add_members(audience, emails=emails(members))
    return services.connect(audience, out, {"list_id": LIST_ID, **(settings or {})})


def in_list(sandbox):
    return sorted(p["email"] for p in control(sandbox, f"lists/{LIST_ID}", method="GET")["members"].values())


def test_it_forwards_the_audience_and_verifies_against_klaviyos_own_count(sandbox):
    conn = klaviyo_connection(sandbox)

    assert drain(conn.pk).accepted == 3

    assert in_list(sandbox) == emails(3)
    status, checks = verify(conn)
    assert status == "ok"
    assert [(c.name, c.status, c.detail) for c in checks[:2]] == [
        ("credentials", "ok", "Klaviyo accepted the private API key."),
        ("destination", "ok", "The list 'Potential Parisians' exists."),
    ]
    assert by_name(checks)["partner count"].detail == "Klaviyo reports 3, as many as were forwarded and accepted."


def test_it_fails_a_revoked_key_and_forwarding_stops_until_resumed(sandbox):
    conn = klaviyo_connection(sandbox, members=2)
    sandbox.revoke("klaviyo", KEY)

    report = drain(conn.pk)

    assert report.fault == f"Klaviyo rejected the private API key. {KEY_HINT}"
    conn.refresh_from_db()
    assert conn.status == Connection.Status.FAULTED
    assert set(OutboxMessage.objects.filter(connection=conn).values_list("state", flat=True)) == {"pending"}
    status, checks = reverify(conn)
    assert (status, checks[0].detail) == ("failing", "Klaviyo rejected the private API key.")
    assert_hint(checks[0], "klaviyo:credentials", KEY_HINT)
    assert "partner count" not in by_name(checks)

    control(sandbox, "keys", {"api_key": KEY})  # a new key (the sandbox's: the same text) saved on the output
    services.resume(conn)
    assert drain(conn.pk).accepted == 2


def test_it_fails_a_key_without_the_write_scopes_naming_them(sandbox):
    conn = klaviyo_connection(sandbox, members=1)
    control(sandbox, "keys", {"api_key": KEY, "scopes": ["lists:read", "profiles:read"]})

    report = drain(conn.pk)

    assert report.fault.startswith(
        "Klaviyo refused the private API key for POST /api/profile-bulk-import-jobs (HTTP 403). The private key "
        "lacks the scope lists:write and profiles:write."
    )
    conn.refresh_from_db()
    assert "lists:write and profiles:write" in conn.status_reason
    control(sandbox, "keys", {"api_key": KEY, "scopes": ["profiles:read"]})
    status, checks = reverify(conn)
    check = checks[0]
    assert (status, check.status, check.detail) == (
        "failing",
        "failing",
        "Klaviyo refused the private API key for GET /api/lists (HTTP 403).",
    )
    assert_hint(
        check,
        "klaviyo:scope",
        "The private key lacks the scope lists:read. Klaviyo cannot add scopes to an existing key: create a new "
        "private key (Settings → API keys → Create Private API Key) with Lists and Profiles (and Subscriptions, "
        "when this connection subscribes members) on Full access, and save it on this output.",
    )


def test_it_fails_a_missing_list(sandbox):
    conn = klaviyo_connection(sandbox)
    control(sandbox, f"lists/{LIST_ID}", method="DELETE")

    status, checks = verify(conn)

    assert status == "failing"
    assert (checks[1].status, checks[1].detail) == ("failing", f"Klaviyo has no list '{LIST_ID}'.")
    assert_hint(
        checks[1],
        "klaviyo:list",
        "Check the List ID in the connection settings: in Klaviyo, open Audience → Lists & Segments, then the list; "
        "its ID is the last part of the page's address (such as Y6nRLr) and under Settings.",
    )


def test_a_base_url_with_api_on_the_end_fails_with_the_base_url_hint(sandbox):
    conn = klaviyo_connection(sandbox, base_url=f"{sandbox.base_url}/klaviyo/api")

    status, checks = verify(conn)

    assert status == "failing"
    assert checks[0].detail == (
        f"Klaviyo answered HTTP 404 at {sandbox.base_url}/klaviyo/api/api/lists: there is no Klaviyo API here."
    )
    assert_hint(
        checks[0],
        "klaviyo:base_url",
        "Check the base URL override of this output: empty for Klaviyo itself (https://a.klaviyo.com); otherwise "
        "it stands for that address, without /api (`manage.py partner_sandbox` prints the sandbox's).",
    )


def test_it_warns_when_klaviyo_is_rate_limiting_and_retries_after_its_retry_after(sandbox):
    conn = klaviyo_connection(sandbox, members=2)
    sandbox.fault("klaviyo", "status", status=429, retry_after=30, count=1)

    status, checks = verify(conn)
    assert (status, checks[0].status) == ("warning", "warning")
    assert_hint(checks[0], "klaviyo:transient", TRANSIENT)

    sandbox.fault("klaviyo", "status", status=429, retry_after=30, count=1)
    started = timezone.now()
    report = drain(conn.pk)
    assert (report.retried, report.accepted) == (2, 0)
    for message in OutboxMessage.objects.filter(connection=conn):
        assert message.state == "pending" and message.next_attempt_at >= started + dt.timedelta(seconds=30)
    OutboxMessage.objects.filter(connection=conn).update(next_attempt_at=timezone.now())
    assert drain(conn.pk).accepted == 2


def test_the_funnel_says_who_a_subscribing_connection_cannot_send(sandbox):
    conn = klaviyo_connection(sandbox, members=2, settings={"consent": "subscribe"})
    customer_only = ProfileFactory()
    IdentityFactory(profile=customer_only, type="customer_id", value="C-1")
    MembershipFactory(audience=conn.audience, profile=customer_only)

    step = compute(conn).steps[1]

    assert (step.count, step.lost) == (2, 1)
    assert step.reason == (
        "2 have an email address; Klaviyo accepts only email addresses or mobile numbers, so Klaviyo receives 2."
    )


def test_an_output_is_added_connected_and_verified_over_the_api_with_the_key_write_only(api, sandbox):
    control(sandbox, "keys", {"api_key": KEY})
    control(sandbox, "lists", {"list_id": LIST_ID, "name": "Potential Parisians"})
    body = {
        "kind": "klaviyo",
        "name": "Klaviyo",
        "base_url": f"{sandbox.base_url}/klaviyo",
        "settings": {"api_key": KEY},
    }
    created = api.post("/api/v1/outputs/", body, format="json")
    assert created.status_code == 201, created.json()
    assert created.json()["secrets_set"] == ["api_key"] and KEY not in created.content.decode()
    audience = StaticAudienceFactory(name="Potential Parisians")
    add_members(audience, emails=emails(2))

    wrong = api.post(
        "/api/v1/connections/",
        {"audience": audience.pk, "output": created.json()["id"], "settings": {"list_id": LIST_ID, "consent": "maybe"}},
        format="json",
    )
    assert wrong.status_code == 400
    assert list(wrong.json()["settings"]) == ["consent"]
    connected = api.post(
        "/api/v1/connections/",
        {"audience": audience.pk, "output": created.json()["id"], "settings": {"list_id": LIST_ID}},
        format="json",
    )
    assert connected.status_code == 201, connected.json()
    conn_id = connected.json()["id"]
    assert drain(conn_id).accepted == 2

    verified = api.post(f"/api/v1/connections/{conn_id}/verify/").json()
    assert verified["status"] == "ok"
    assert in_list(sandbox) == emails(2)
    assert KEY not in str(verified)
