"""Verifying a Braze connection against the sandbox over real HTTP: each check failing and passing, each hint."""

import pytest

from audiences.models import Profile
from connections import services
from connections.drain import drain
from connections.models import Connection, OutboxMessage
from connections.verification import cap_check, verify
from tests.audiences.factories import MembershipFactory
from tests.connections.factories import StaticAudienceFactory, add_members
from tests.connections.verification.support import (
    BRAZE_KEY,
    TRANSIENT,
    assert_hint,
    braze_audiences,
    by_name,
    emails,
    output,
    string_audiences,
)

pytestmark = pytest.mark.django_db


def braze_connection(sandbox, key=BRAZE_KEY, base_url=None):
    settings = {"rest_endpoint": "https://rest.iad-01.braze.com"}
    out = output("braze", settings, {"api_key": key}, base_url or f"{sandbox.base_url}/braze")
    audience = StaticAudienceFactory()
    add_members(audience, emails=emails(2))
    return services.connect(audience, out, {"identifier": "email", "attribute_name": "relay_audiences"})


def braze_key_hint(sandbox):
    host = sandbox.base_url.removeprefix("http://")
    return (
        "Check in Braze (Settings → APIs and Identifiers) that the key exists and has not been deleted, and "
        f"that the REST endpoint is your instance's ({host}): a key works only on its own instance."
    )


def test_it_passes_a_working_braze_key(sandbox):
    sandbox.braze_key(BRAZE_KEY, ["users.track"])

    status, checks = verify(braze_connection(sandbox))

    assert status == "ok"
    assert [(c.name, c.status, c.detail) for c in checks[:2]] == [
        ("credentials", "ok", "Braze accepted the API key for users.track."),
        (
            "destination",
            "ok",
            "Users are tagged with one attribute per audience ('relay_audiences: …'), matched by email address.",
        ),
    ]
    assert "partner count" not in by_name(checks)  # Braze has no count to compare


def test_it_fails_a_revoked_braze_key(sandbox):
    sandbox.braze_key(BRAZE_KEY, ["users.track"])
    sandbox.revoke("braze", BRAZE_KEY)

    status, checks = verify(braze_connection(sandbox))

    assert status == "failing"
    assert (checks[0].status, checks[0].detail) == ("failing", "Braze rejected the API key.")
    assert_hint(checks[0], "braze:credentials", braze_key_hint(sandbox))


def test_it_fails_a_braze_key_without_the_users_track_permission(sandbox):
    # Braze answers a key it knows but that lacks the permission with 403: the hint names the permission.
    sandbox.braze_key(BRAZE_KEY, ["campaigns.trigger.send"])

    status, checks = verify(braze_connection(sandbox))

    assert status == "failing"
    assert (checks[0].status, checks[0].detail) == ("failing", "Braze refused the API key for /users/track (HTTP 403).")
    assert_hint(
        checks[0],
        "braze:permission",
        "The key lacks the users.track permission: Settings → APIs and Identifiers → edit the key → tick "
        "users.track under User Data.",
    )


def test_it_warns_when_members_of_a_braze_array_are_in_more_audiences_than_the_cap(sandbox):
    conns = braze_audiences(sandbox, 30, "array")

    status, checks = verify(conns[0])

    assert status == "warning"
    check = by_name(checks)["array cap"]
    assert (check.status, check.detail) == (
        "warning",
        "1 member of this audience is in more than 25 audiences connected to this output; Braze keeps only 25 "
        "in the array attribute 'relay_audiences'.",
    )
    assert_hint(
        check,
        "braze:array_cap",
        "Braze keeps only the 25 newest values of an array attribute and silently drops the oldest. Switch this "
        "connection to one attribute per audience (setting 'Membership written as'), or raise the attribute's "
        "maximum array length in Braze (Data Settings → Custom Attributes, up to 100) and set the output's array "
        "cap to match.",
    )


def test_it_counts_members_past_the_braze_array_cap_in_one_query(sandbox, django_assert_num_queries):
    conns = braze_audiences(sandbox, 30, "array", array_cap=30)
    conn = Connection.objects.select_related("audience", "output").get(pk=conns[0].pk)
    # Connections writing another array do not share this one: they do not count towards its cap.
    other = services.connect(
        StaticAudienceFactory(),
        conn.output,
        {"identifier": "email", "membership": "array", "attribute_name": "other_audiences"},
    )
    MembershipFactory(audience=other.audience, profile=Profile.objects.get(identities__value="u0@example.com"))

    with django_assert_num_queries(1):
        check = cap_check(conn)

    # 31 connected audiences, but only 30 write this array: within its cap.
    assert (check.status, check.detail) == ("ok", "No member is in more than 30 audiences connected to this output.")


def test_it_passes_a_braze_array_within_the_outputs_cap(sandbox):
    conns = braze_audiences(sandbox, 30, "array", array_cap=30)

    status, checks = verify(conns[0])

    check = by_name(checks)["array cap"]
    assert (check.status, check.detail) == ("ok", "No member is in more than 30 audiences connected to this output.")


def test_it_rejects_and_counts_braze_string_members_whose_ids_pass_255_characters(sandbox):
    # 24 IDs of 10 digits and 23 commas: 263 characters; the member of the first audience alone fits.
    conns = string_audiences(sandbox, ids=[2_000_000_000 + n for n in range(24)])

    for conn in conns:
        drain(conn.pk)
    status, checks = verify(conns[0])

    rejected = OutboxMessage.objects.get(connection=conns[0], value="u0@example.com")
    assert (rejected.state, rejected.last_error) == (
        "rejected",
        "This user is in 24 audiences connected to this output; their IDs take 263 characters, more than the 255 "
        "Braze keeps in the string attribute 'relay_audiences'.",
    )
    assert "email:u0@example.com" not in sandbox.braze_users()["users"]  # nothing was sent for u0
    assert sandbox.braze_users()["users"]["email:u1@example.com"]["relay_audiences"] == "2000000000"
    check = by_name(checks)["string length"]
    assert (status, check.status, check.detail) == (
        "warning",
        "warning",
        "1 member of this audience is in so many audiences connected to this output that their IDs take more "
        "than the 255 characters Braze keeps in the string attribute 'relay_audiences'.",
    )
    assert_hint(
        check,
        "braze:string_cap",
        "Braze keeps at most 255 characters in a string attribute, so these members' lists are not sent. Switch "
        "this connection to one attribute per audience (setting 'Membership written as'), or give some of the "
        "output's string connections another attribute name so that each list stays shorter.",
    )


def test_it_passes_braze_string_lists_within_255_characters(sandbox):
    conns = string_audiences(sandbox, ids=[2_000_000_000 + n for n in range(23)])  # 252 characters

    _, checks = verify(conns[0])

    check = by_name(checks)["string length"]
    assert (check.status, check.detail) == ("ok", "Every member's audience IDs fit in 255 characters.")


def test_it_delivers_all_30_memberships_of_a_user_with_one_braze_attribute_per_audience(sandbox):
    conns = braze_audiences(sandbox, 30)  # the default for a new connection
    for conn in conns:
        drain(conn.pk)

    status, checks = verify(conns[0])

    assert "array cap" not in by_name(checks)  # no cap to warn about
    held = sandbox.braze_users()["users"]["email:u0@example.com"]
    assert {k: v for k, v in held.items() if k.startswith("relay_audiences")} == {
        f"relay_audiences: {conn.audience.name}": True for conn in conns
    }


def test_it_fails_a_braze_key_refused_for_the_endpoint(sandbox):
    sandbox.braze_key(BRAZE_KEY, ["users.track"])
    sandbox.fault("braze", "status", status=403)

    status, checks = verify(braze_connection(sandbox))

    assert status == "failing"
    assert checks[0].detail == "Braze refused the API key for /users/track (HTTP 403)."
    assert_hint(
        checks[0],
        "braze:permission",
        "The key lacks the users.track permission: Settings → APIs and Identifiers → edit the key → tick "
        "users.track under User Data.",
    )


def test_it_fails_a_wrong_braze_endpoint(sandbox):
    sandbox.braze_key(BRAZE_KEY, ["users.track"])

    status, checks = verify(braze_connection(sandbox, base_url=f"{sandbox.base_url}/braze/v2"))

    assert status == "failing"
    host = sandbox.base_url.removeprefix("http://")
    assert checks[0].detail == f"Braze has no /users/track endpoint at {host}."
    assert_hint(
        checks[0],
        "braze:endpoint",
        "Check the REST endpoint in the output settings: it is listed for your dashboard's instance at "
        "https://www.braze.com/docs/api/basics/#endpoints, such as https://rest.iad-01.braze.com.",
    )


def test_it_warns_when_braze_answers_with_a_server_error(sandbox):
    sandbox.braze_key(BRAZE_KEY, ["users.track"])
    sandbox.fault("braze", "status", status=503)

    status, checks = verify(braze_connection(sandbox))

    assert status == "warning"
    assert (checks[0].status, checks[0].detail) == ("warning", "Could not check the API key: Braze answered HTTP 503.")
    assert_hint(checks[0], "braze:transient", TRANSIENT)
