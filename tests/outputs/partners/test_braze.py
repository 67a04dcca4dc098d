"""Braze against the partner sandbox: real HTTP, the users' attributes checked on the sandbox side."""

import time

import pytest
import requests

from outputs.partners.base import Account, Message, Outcome
from outputs.partners.braze.adapter import Braze, _wait
from outputs.partners.registry import get
from outputs.schema import clean_value

KEY = "8d2f6a1c-4b7e-4e0a-9c3d-5f1e2a7b9c0d"
AUDIENCE = "Potential Parisians"
IDFA = "aebe52e7-03ee-455a-b3c4-e57283966239"
BY_EXTERNAL_ID = {"identifier": "external_id"}


@pytest.fixture
def partner():
    return get("braze")


@pytest.fixture
def braze(sandbox):
    sandbox.braze_key(KEY, ["users.track"])
    return sandbox


def account(sandbox, key=KEY):
    return Account({"api_key": key, "rest_endpoint": "https://rest.iad-01.braze.com"}, f"{sandbox.base_url}/braze")


def add(key, value, identity_type="customer_id", audience=AUDIENCE):
    return Message(key, "add", identity_type, value, audience)


def remove(key, value, identity_type="customer_id", audience=AUDIENCE):
    return Message(key, "remove", identity_type, value, audience)


def users(sandbox):
    return sandbox.braze_users()["users"]


def credentials_hint(sandbox):
    host = sandbox.base_url.removeprefix("http://")
    return (
        "Check in Braze (Settings → APIs and Identifiers) that the key exists and has not been deleted, and "
        f"that the REST endpoint is your instance's ({host}): a key works only on its own instance."
    )


PERMISSION_HINT = (
    "The key lacks the users.track permission: Settings → APIs and Identifiers → edit the key → "
    "tick users.track under User Data."
)


# --- declarations -----------------------------------------------------------------------------------------


def test_it_is_registered_with_brazes_limits(partner):
    assert isinstance(partner, Braze)
    assert (partner.slug, partner.pattern, partner.batch_size, partner.requests_per_second) == (
        "braze",
        "indirect",
        75,
        1000.0,
    )
    assert set(partner.identity_types) == {
        "customer_id",
        "email",
        "ios_idfa",
        "ios_idfv",
        "android_aaid",
        "android_uuid",
    }
    assert [s.name for s in partner.output_settings] == ["api_key", "rest_endpoint", "array_cap"]
    assert [s.name for s in partner.connection_settings] == ["membership", "attribute_name", "identifier"]


def test_it_narrows_identity_types_to_the_chosen_identifier(partner):
    assert partner.accepted_types({}) == {"customer_id"}
    assert partner.accepted_types({"identifier": "email"}) == {"email"}
    assert partner.accepted_types({"identifier": "device_alias"}) == {
        "ios_idfa",
        "ios_idfv",
        "android_aaid",
        "android_uuid",
    }


def test_it_validates_the_rest_endpoint(partner):
    endpoint = {s.name: s for s in partner.output_settings}["rest_endpoint"]
    assert clean_value(endpoint, "https://rest.iad-01.braze.com") == "https://rest.iad-01.braze.com"
    assert clean_value(endpoint, "https://rest.fra-01.braze.eu/") == "https://rest.fra-01.braze.eu/"
    assert clean_value(endpoint, "https://rest.us-10.braze.com") == "https://rest.us-10.braze.com"
    wrongs = (
        "http://rest.iad-01.braze.com",
        "https://rest.example.com",
        "https://rest.iad-01.braze.com/users",
        "https://attacker.braze.com",  # a name under braze.com is not an instance's endpoint
        "https://rest.iad-01.braze.com:8443",
    )
    for wrong in wrongs:
        with pytest.raises(ValueError) as excinfo:
            clean_value(endpoint, wrong)
        assert str(excinfo.value) == (
            "Use your Braze instance's REST endpoint as listed at https://www.braze.com/docs/api/basics/#endpoints, "
            "such as https://rest.iad-01.braze.com."
        )


def test_it_defaults_the_connection_settings(partner):
    by_name = {s.name: s for s in partner.connection_settings}
    assert clean_value(by_name["attribute_name"], "") == "relay_audiences"
    assert clean_value(by_name["identifier"], None) == "external_id"
    assert clean_value(by_name["membership"], None) == "attribute"  # new connections: no array cap to hit


def test_it_takes_an_array_cap_braze_allows(partner):
    cap = {s.name: s for s in partner.output_settings}["array_cap"]
    assert (clean_value(cap, None), clean_value(cap, "100")) == (25, 100)
    for wrong in (0, 101):
        with pytest.raises(ValueError) as excinfo:
            clean_value(cap, wrong)
        assert str(excinfo.value) == "Braze keeps from 1 to 100 values in an array attribute."


def test_it_sends_to_the_rest_endpoint_unless_the_base_url_is_overridden(partner):
    settings = {"api_key": KEY, "rest_endpoint": "https://rest.iad-01.braze.com/"}
    assert partner.base_url(Account(settings)) == "https://rest.iad-01.braze.com"
    assert partner.base_url(Account(settings, "http://127.0.0.1:8125/braze")) == "http://127.0.0.1:8125/braze"


# --- sending ----------------------------------------------------------------------------------------------


def test_it_tags_users_with_the_audience(partner, braze):
    result = partner.send(account(braze), {}, [add(1, "u1"), add(2, "u2")])

    assert result.fault is None
    assert result.outcomes == {1: Outcome("accepted"), 2: Outcome("accepted")}
    assert [(a.method, a.path, a.status) for a in result.attempts] == [("POST", "/braze/users/track", 201)]
    assert users(braze) == {
        "external_id:u1": {"relay_audiences": [AUDIENCE]},
        "external_id:u2": {"relay_audiences": [AUDIENCE]},
    }


def test_it_adds_and_removes_one_audience_without_touching_others(partner, braze):
    connection = {"attribute_name": "audiences"}
    partner.send(account(braze), connection, [add(1, "u1"), add(2, "u1", audience="Big Spenders")])

    partner.send(account(braze), connection, [remove(1, "u1")])

    assert users(braze) == {"external_id:u1": {"audiences": ["Big Spenders"]}}


def test_it_adds_and_removes_idempotently(partner, braze):
    partner.send(account(braze), {}, [add(1, "u1")])
    again = partner.send(account(braze), {}, [add(1, "u1")])
    assert again.outcomes[1].status == "accepted"
    assert users(braze)["external_id:u1"]["relay_audiences"] == [AUDIENCE]

    partner.send(account(braze), {}, [remove(1, "u1")])
    again = partner.send(account(braze), {}, [remove(1, "u1")])
    assert again.outcomes[1].status == "accepted"
    assert users(braze)["external_id:u1"]["relay_audiences"] == []
    assert braze.stats()["duplicates"]["braze"] == 2  # the repeats changed nothing


def test_it_matches_users_by_email(partner, braze):
    result = partner.send(account(braze), {"identifier": "email"}, [add(1, "ada@example.com", "email")])

    assert result.outcomes[1].status == "accepted"
    assert list(users(braze)) == ["email:ada@example.com"]
    assert users(braze)["email:ada@example.com"]["relay_audiences"] == [AUDIENCE]


def test_it_matches_devices_by_an_alias_labelled_with_the_id_type(partner, braze):
    messages = [add(1, IDFA, "ios_idfa"), add(2, "38400000-8cf0-11bd-b23e-10b96e40000d", "android_aaid")]

    result = partner.send(account(braze), {"identifier": "device_alias"}, messages)

    assert {o.status for o in result.outcomes.values()} == {"accepted"}
    assert users(braze) == {
        f"alias:ios_idfa:{IDFA}": {"relay_audiences": [AUDIENCE]},
        "alias:android_aaid:38400000-8cf0-11bd-b23e-10b96e40000d": {"relay_audiences": [AUDIENCE]},
    }


def test_it_rejects_identities_the_connection_does_not_match_on_without_calling(partner, braze):
    result = partner.send(account(braze), BY_EXTERNAL_ID, [add(1, "ada@example.com", "email")])

    assert result.outcomes[1] == Outcome(
        "rejected", "This Braze connection matches users by external ID; it accepts only customer IDs."
    )
    assert result.attempts == []
    email_only = partner.send(account(braze), {"identifier": "email"}, [add(1, IDFA, "ios_idfa")])
    assert email_only.outcomes[1].reason == (
        "This Braze connection matches users by email; it accepts only email addresses."
    )


def test_it_records_brazes_reason_for_each_refused_object(partner, braze):
    messages = [add(1, "ada@example.com", "email"), add(2, "not-an-email", "email"), add(3, "bob@example.com", "email")]

    result = partner.send(account(braze), {"identifier": "email"}, messages)

    assert result.fault is None
    assert result.outcomes == {
        1: Outcome("accepted"),
        2: Outcome("rejected", "Braze rejected this user: 'email' is not a valid email address."),
        3: Outcome("accepted"),
    }
    assert set(users(braze)) == {"email:ada@example.com", "email:bob@example.com"}


def test_it_sends_a_full_batch_of_75_in_one_call(partner, braze):
    result = partner.send(account(braze), {}, [add(i, f"u{i}") for i in range(75)])

    assert len(result.attempts) == 1
    assert len(result.outcomes) == 75 and {o.status for o in result.outcomes.values()} == {"accepted"}
    assert len(users(braze)) == 75


def test_it_never_sends_more_than_75_objects_in_one_call(partner, braze):
    # The engine hands over batch_size messages at most; a longer list is still split, because Braze
    # refuses a request with 76 attribute objects as a whole.
    result = partner.send(account(braze), {}, [add(i, f"u{i}") for i in range(76)])

    assert [(a.method, a.status) for a in result.attempts] == [("POST", 201), ("POST", 201)]
    assert len(result.outcomes) == 76 and {o.status for o in result.outcomes.values()} == {"accepted"}
    assert len(users(braze)) == 76


# --- error classes ----------------------------------------------------------------------------------------


def test_it_faults_on_an_unknown_key(partner, braze):
    result = partner.send(account(braze, key="0000-unknown-key-0000"), {}, [add(1, "u1")])

    assert result.outcomes == {}
    assert (result.fault.kind, result.fault.message, result.fault.hint) == (
        "credentials",
        "Braze rejected the API key.",
        credentials_hint(braze),
    )


def test_it_faults_on_a_key_without_the_users_track_permission(partner, braze):
    braze.braze_key("5e6f7a8b-limited-key", ["campaigns.trigger.send"])

    result = partner.send(account(braze, key="5e6f7a8b-limited-key"), {}, [add(1, "u1")])

    # Braze answers 403 for a key it knows that lacks the permission: the hint says which permission.
    assert (result.fault.kind, result.fault.message, result.fault.hint) == (
        "credentials",
        "Braze refused the API key for /users/track (HTTP 403).",
        PERMISSION_HINT,
    )
    assert users(braze) == {}


def test_it_faults_on_a_revoked_key(partner, braze):
    partner.send(account(braze), {}, [add(1, "u1")])
    braze.revoke("braze", KEY)

    result = partner.send(account(braze), {}, [add(2, "u2")])

    assert result.fault.message == "Braze rejected the API key."
    assert 2 not in result.outcomes


def test_it_faults_when_braze_refuses_the_key_for_the_endpoint(partner, braze):
    braze.fault("braze", "status", status=403)

    result = partner.send(account(braze), {}, [add(1, "u1")])

    assert (result.fault.kind, result.fault.message, result.fault.hint) == (
        "credentials",
        "Braze refused the API key for /users/track (HTTP 403).",
        PERMISSION_HINT,
    )


def test_it_faults_when_the_rest_endpoint_is_wrong(partner, braze):
    wrong = Account({"api_key": KEY}, f"{braze.base_url}/braze/api/v1")

    result = partner.send(wrong, {}, [add(1, "u1")])

    host = braze.base_url.removeprefix("http://")
    assert (result.fault.kind, result.fault.message) == (
        "destination",
        f"Braze has no /users/track endpoint at {host}.",
    )
    assert result.fault.hint == (
        "Check the REST endpoint in the output settings: it is listed for your dashboard's instance at "
        "https://www.braze.com/docs/api/basics/#endpoints, such as https://rest.iad-01.braze.com."
    )


def test_it_retries_on_429_after_the_time_braze_gives(partner, braze):
    braze.fault("braze", "status", status=429, retry_after=7)

    result = partner.send(account(braze), {}, [add(1, "u1"), add(2, "u2")])

    expected = Outcome("retry", "Braze is rate limiting requests (HTTP 429).", 7.0)
    assert result.outcomes == {1: expected, 2: expected}


def test_it_retries_when_the_rate_limit_is_used_up(partner, braze):
    braze.braze_rate_limit(1)
    partner.send(account(braze), {}, [add(1, "u1")])

    result = partner.send(account(braze), {}, [add(2, "u2")])

    assert (result.outcomes[2].status, result.outcomes[2].reason) == (
        "retry",
        "Braze is rate limiting requests (HTTP 429).",
    )
    assert 1 <= result.outcomes[2].retry_after <= 60


def test_it_waits_until_the_rate_limit_resets_when_there_is_no_retry_after():
    response = requests.Response()
    response.headers["X-RateLimit-Reset"] = str(int(time.time()) + 30)

    assert 28 <= _wait(response) <= 30
    assert _wait(requests.Response()) is None


def test_it_retries_on_a_server_error(partner, braze):
    braze.fault("braze", "status", status=502)

    result = partner.send(account(braze), {}, [add(1, "u1")])

    assert result.outcomes[1] == Outcome("retry", "Braze had a server error (HTTP 502).")


def test_it_retries_on_a_timeout(partner, braze, settings, monkeypatch):
    settings.PARTNER_HTTP_TIMEOUT = 0.3
    braze.fault("braze", "timeout", delay=2)

    result = partner.send(account(braze), {}, [add(1, "u1")])

    assert result.outcomes[1] == Outcome("retry", "The request timed out after 0.3 seconds.")


def test_it_retries_on_a_dropped_connection(partner, braze):
    braze.fault("braze", "drop")

    result = partner.send(account(braze), {}, [add(1, "u1")])

    host = braze.base_url.removeprefix("http://")
    assert result.outcomes[1] == Outcome("retry", f"A connection error occurred: could not reach {host}.")


def test_it_rejects_a_request_braze_refuses_as_a_whole(partner, braze):
    braze.fault("braze", "status", status=400, body={"message": "Bad syntax", "errors": ["'attributes' is invalid."]})

    result = partner.send(account(braze), {}, [add(1, "u1"), add(2, "u2")])

    expected = Outcome("rejected", "Braze refused the request (HTTP 400): Bad syntax; 'attributes' is invalid.")
    assert result.outcomes == {1: expected, 2: expected}


def test_it_never_shows_the_api_key(partner, braze):
    braze.fault("braze", "status", status=401, body={"message": f"Invalid API key: {KEY}"})
    results = [partner.send(account(braze), {}, [add(1, "u1")])]
    braze.braze_key("5e6f7a8b-limited-key-0000", ["campaigns.trigger.send"])
    results.append(partner.send(account(braze, key="5e6f7a8b-limited-key-0000"), {}, [add(1, "u1")]))
    checks = partner.verify(account(braze, key="5e6f7a8b-limited-key-0000"), {})

    shown = [c.detail + c.hint for c in checks]
    for result in results:
        shown += [o.reason for o in result.outcomes.values()]
        shown += [a.path + a.response_excerpt for a in result.attempts]
        shown += [result.fault.message, result.fault.hint]
    assert not [text for text in shown if KEY in text or "5e6f7a8b-limited-key-0000" in text]
    assert results[0].attempts[0].response_excerpt == '{"message":"Invalid API key: …"}'


# --- how membership is written ------------------------------------------------------------------------------

PER_AUDIENCE = {"membership": "attribute", "identifier": "external_id", "attribute_name": "relay_audiences"}
ARRAY = {**PER_AUDIENCE, "membership": "array"}


def test_it_keeps_all_30_memberships_with_one_attribute_per_audience(partner, braze):
    result = partner.send(account(braze), PER_AUDIENCE, [add(n, "u1", audience=f"Audience {n}") for n in range(30)])

    assert set(result.outcomes.values()) == {Outcome("accepted")}
    assert users(braze)["external_id:u1"] == {f"relay_audiences: Audience {n}": True for n in range(30)}
    assert braze.braze_users()["dropped"] == 0


def test_it_clears_the_audiences_attribute_when_a_user_leaves(partner, braze):
    partner.send(account(braze), PER_AUDIENCE, [add(1, "u1"), add(2, "u1", audience="Big Spenders")])

    partner.send(account(braze), PER_AUDIENCE, [remove(1, "u1")])

    assert users(braze) == {"external_id:u1": {"relay_audiences: Big Spenders": True}}


def test_it_loses_the_oldest_audiences_past_brazes_array_cap(partner, braze):
    # Why array connections get a verification warning: Braze keeps only the newest 25 and says nothing.
    result = partner.send(account(braze), ARRAY, [add(n, "u1", audience=f"Audience {n}") for n in range(30)])

    assert set(result.outcomes.values()) == {Outcome("accepted")}
    assert users(braze)["external_id:u1"]["relay_audiences"] == [f"Audience {n}" for n in range(5, 30)]


def test_it_keeps_writing_the_array_for_connections_made_before_the_choice(partner, braze):
    partner.send(account(braze), {"identifier": "external_id"}, [add(1, "u1")])

    assert users(braze) == {"external_id:u1": {"relay_audiences": [AUDIENCE]}}


def test_it_describes_the_membership_mode_in_verification(partner, braze):
    checks = partner.verify(account(braze), PER_AUDIENCE)

    assert checks[1].detail == (
        "Users are tagged with one attribute per audience ('relay_audiences: …'), matched by external ID."
    )


def test_it_counts_a_call_braze_queued_during_maintenance_as_delivered(partner, braze):
    braze.braze_maintenance(True)

    result = partner.send(account(braze), PER_AUDIENCE, [add(1, "u1")])

    assert (result.fault, result.outcomes) == (None, {1: Outcome("accepted")})
    assert [a.status for a in result.attempts] == [202]
    braze.braze_maintenance(False)  # Braze processes what it queued
    assert users(braze) == {"external_id:u1": {f"relay_audiences: {AUDIENCE}": True}}


# --- verification -----------------------------------------------------------------------------------------


def test_it_verifies_the_key_with_an_empty_track_request(partner, braze):
    checks = partner.verify(account(braze), {"identifier": "email", "attribute_name": "audiences"})

    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("credentials", "ok", "Braze accepted the API key for users.track."),
        ("destination", "ok", "Users are tagged in the array attribute 'audiences', matched by email address."),
    ]
    assert users(braze) == {}


def test_it_fails_verification_for_a_key_without_permission(partner, braze):
    braze.braze_key("5e6f7a8b-limited-key", ["campaigns.trigger.send"])

    check, destination = partner.verify(account(braze, key="5e6f7a8b-limited-key"), {})

    assert (check.name, check.status, check.detail, check.hint) == (
        "credentials",
        "failing",
        "Braze refused the API key for /users/track (HTTP 403).",
        PERMISSION_HINT,
    )
    assert (destination.status, destination.detail) == ("warning", "Not checked: the API key must work first.")


def test_it_cannot_count_users_in_braze(partner, braze):
    assert partner.partner_count(account(braze), {}) is None
