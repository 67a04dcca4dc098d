import hashlib
import json

import requests

AUDIENCE = "23850000000000001"
TOKEN = "EAAdemo"


def _sha(value):
    return hashlib.sha256(value.encode()).hexdigest()


SESSION = {"session_id": 9001, "batch_seq": 1, "last_batch_flag": True}


def _users(demo, data, schema="EMAIL_SHA256", method="POST", token=TOKEN, session=SESSION, audience=AUDIENCE):
    payload = {"schema": schema, "data": data}
    form = {"access_token": token, "payload": json.dumps(payload)}
    if session is not None:
        form["session"] = session if isinstance(session, str) else json.dumps(session)
    return requests.request(method, f"{demo['facebook']['base_url']}/v21.0/{audience}/users", data=form, timeout=10)


def _error(response):
    error = response.json()["error"]
    assert error.pop("fbtrace_id")
    return error


def test_it_adds_reads_and_removes_audience_members(demo, client):
    emails = [_sha(f"user{i}@example.com") for i in range(3)]
    added = _users(demo, [[e] for e in emails], session={"session_id": 9001, "batch_seq": 1, "last_batch_flag": True})
    assert added.status_code == 200
    assert added.json() == {
        "audience_id": AUDIENCE,
        "session_id": 9001,
        "num_received": 3,
        "num_invalid_entries": 0,
        "invalid_entry_samples": {},
    }
    madid = _users(demo, [["aebe52e7-03ee-455a-b3c4-e57283966239"]], schema=["MADID"])
    assert madid.json()["num_invalid_entries"] == 0

    read = requests.get(
        f"{demo['facebook']['base_url']}/v19.0/{AUDIENCE}",
        params={"fields": "name,approximate_count_lower_bound,operation_status", "access_token": TOKEN},
        timeout=5,
    )
    assert read.json() == {
        "id": AUDIENCE,
        "name": "Audience Relay demo",
        "approximate_count_lower_bound": 4,
        "operation_status": {"code": 200, "description": "Normal"},
    }

    removed = _users(demo, [emails[0]], method="DELETE")
    assert removed.status_code == 200
    state = client.facebook_audience_state(AUDIENCE)
    assert state["count"] == 3
    assert state["members"][emails[1]] == "EMAIL_SHA256"
    assert state["members"]["aebe52e7-03ee-455a-b3c4-e57283966239"] == "MADID"
    assert state["sessions"]["9001"]["last_batch_flag"] is True


def test_it_accepts_10000_records_and_refuses_10001(demo, client):
    data = [[_sha(f"u{i}")] for i in range(10_001)]
    assert _users(demo, data[:10_000]).json()["num_received"] == 10_000
    refused = _users(demo, data)
    assert refused.status_code == 400
    error = _error(refused)
    assert (error["type"], error["code"]) == ("OAuthException", 100)
    assert client.facebook_audience_state(AUDIENCE)["count"] == 10_000


def test_it_counts_values_that_are_not_lowercase_sha256_as_invalid(demo, client):
    good = _sha("ada@example.com")
    response = _users(demo, [[good], ["ada@example.com"], [good.upper()], ["abc123"]])
    body = response.json()
    assert (body["num_received"], body["num_invalid_entries"]) == (4, 3)
    assert set(body["invalid_entry_samples"]) == {"ada@example.com", good.upper(), "abc123"}
    assert client.facebook_audience_state(AUDIENCE)["count"] == 1


def test_it_answers_an_expired_token_with_code_190_subcode_463(demo, client):
    client.facebook_token("EAAold", "act_1001", expired=True)
    expired = _users(demo, [[_sha("a")]], token="EAAold")
    assert expired.status_code == 400
    error = _error(expired)
    assert (error["type"], error["code"], error["error_subcode"]) == ("OAuthException", 190, 463)
    assert error["message"].startswith("Error validating access token: Session has expired on ")

    client.revoke("facebook", TOKEN)
    assert _error(_users(demo, [[_sha("a")]]))["error_subcode"] == 463


def test_it_answers_an_unknown_token_and_a_missing_audience(demo):
    unknown = _error(_users(demo, [[_sha("a")]], token="EAAnope"))
    assert (unknown["code"], unknown["message"]) == (190, "Invalid OAuth access token - Cannot parse access token")
    missing = _error(_users(demo, [[_sha("a")]], audience="23859999999999999"))
    assert (missing["type"], missing["code"], missing["error_subcode"]) == ("GraphMethodException", 100, 33)
    assert missing["message"].startswith("Unsupported post request. Object with ID '23859999999999999' does not exist")


def test_it_refuses_a_flagged_audience(demo, client):
    client.facebook_audience(AUDIENCE, "act_1001", "Flagged", flagged=True)
    response = _users(demo, [[_sha("a")]])
    assert response.status_code == 400
    error = _error(response)
    assert (error["code"], error["error_subcode"], error["error_user_title"]) == (
        100,
        1713230,
        "Audience Upload Blocked",
    )


def test_it_refuses_until_the_custom_audience_terms_are_accepted(demo, client):
    client.facebook_token("EAAnotos", "act_1001", tos_accepted=False)
    error = _error(_users(demo, [[_sha("a")]], token="EAAnotos"))
    assert error["code"] == 2663
    assert error["message"] == (
        "(#2663) Terms of service has not been accepted. To accept, go to "
        "https://www.facebook.com/customaudiences/app/tos/?act=1001"
    )


def test_it_refuses_a_non_admin_and_an_unverified_business(demo, client):
    client.facebook_token("EAAuser", "act_1001", admin=False)
    client.facebook_token("EAAnobiz", "act_1001", business_verified=False)
    not_admin = _users(demo, [[_sha("a")]], token="EAAuser")
    assert not_admin.status_code == 403
    assert _error(not_admin)["code"] == 273
    unverified = _users(demo, [[_sha("a")]], token="EAAnobiz")
    assert unverified.status_code == 403
    assert _error(unverified)["code"] == 200


def test_it_refuses_a_field_the_node_does_not_have(demo):
    response = requests.get(
        f"{demo['facebook']['base_url']}/v21.0/{AUDIENCE}",
        params={"fields": "nope"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert response.status_code == 400
    assert (
        _error(response)["message"] == "(#100) Tried accessing nonexisting field (nope) on node type (CustomAudience)"
    )


def test_it_requires_the_upload_session(demo, client):
    missing = _users(demo, [[_sha("a")]], session=None)
    assert missing.status_code == 400
    assert _error(missing) == {
        "message": "(#100) The parameter session is required",
        "type": "OAuthException",
        "code": 100,
    }
    for session, message in (
        ("not json", "(#100) Param session must be a JSON-encoded object"),
        ({"batch_seq": 1, "last_batch_flag": True}, "(#100) Param session[session_id] must be an integer"),
        ({"session_id": 1, "last_batch_flag": True}, "(#100) Param session[batch_seq] must be an integer"),
        ({"session_id": 1, "batch_seq": 1}, "(#100) Param session[last_batch_flag] must be a boolean"),
    ):
        assert _error(_users(demo, [[_sha("a")]], session=session))["message"] == message
    assert client.facebook_audience_state(AUDIENCE)["count"] == 0  # nothing half-written


def test_it_throttles_an_ad_account_as_facebook_does(demo, client):
    client.facebook_rate_limit("act_1001", 2)
    first = _users(demo, [[_sha("a")]])
    assert json.loads(first.headers["X-Business-Use-Case-Usage"])["1001"][0]["call_count"] == 50
    assert _users(demo, [[_sha("b")]]).status_code == 200
    client.facebook_advance(20)

    throttled = _users(demo, [[_sha("c")]])

    assert throttled.status_code == 400
    assert "Retry-After" not in throttled.headers  # Facebook says how long in its usage header, in minutes
    (usage,) = json.loads(throttled.headers["X-Business-Use-Case-Usage"])["1001"]
    assert (usage["type"], usage["call_count"], usage["estimated_time_to_regain_access"]) == (
        "custom_audience",
        100,
        40,
    )
    error = _error(throttled)
    assert (error["code"], error["error_subcode"], error["is_transient"]) == (80003, 2446079, True)
    assert error["message"].startswith("(#80003) There have been too many calls to this ad-account.")
    assert client.facebook_audience_state(AUDIENCE)["count"] == 2

    client.facebook_advance(40)
    assert _users(demo, [[_sha("c")]]).status_code == 200
    assert client.facebook_audience_state(AUDIENCE)["count"] == 3


def test_it_answers_an_injected_429_with_minutes_and_no_retry_after(demo, client):
    client.fault("facebook", "status", status=429, retry_after=90)
    response = _users(demo, [[_sha("a")]])
    assert response.status_code == 429
    assert "Retry-After" not in response.headers
    (usage,) = json.loads(response.headers["X-Business-Use-Case-Usage"])["0"]
    assert usage["estimated_time_to_regain_access"] == 2
