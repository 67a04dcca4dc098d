import requests

KEY = "braze-demo-key"


def _track(demo, body, key=KEY):
    return requests.post(
        f"{demo['braze']['base_url']}/users/track",
        headers={"Authorization": f"Bearer {key}"},
        json=body,
        timeout=5,
    )


def test_it_adds_and_removes_array_values_once_each(demo, client):
    first = _track(
        demo,
        {
            "attributes": [
                {"external_id": "u1", "audiences": {"add": ["Lapsed buyers", "VIP"]}},
                {"email": "Ada@Example.com", "audiences": {"add": ["VIP"]}},
                {
                    "user_alias": {"alias_name": "dev-1", "alias_label": "device"},
                    "_update_existing_only": False,
                    "audiences": {"add": ["VIP"]},
                },
            ]
        },
    )
    assert first.status_code == 201
    assert first.json() == {"message": "success", "attributes_processed": 3}
    again = _track(
        demo, {"attributes": [{"external_id": "u1", "audiences": {"add": ["VIP"], "remove": ["Lapsed buyers"]}}]}
    )
    assert again.status_code == 201
    users = client.braze_users()["users"]
    assert users["external_id:u1"]["audiences"] == ["VIP"]
    assert users["email:ada@example.com"]["audiences"] == ["VIP"]
    assert users["alias:device:dev-1"]["audiences"] == ["VIP"]
    assert client.braze_users()["operations"]["external_id:u1"] == 2
    assert client.stats()["duplicates"]["braze"] == 1


def test_it_does_not_create_an_alias_only_user_unless_asked(demo, client):
    response = _track(demo, {"attributes": [{"user_alias": {"alias_name": "d", "alias_label": "l"}, "x": 1}]})
    assert response.status_code == 201
    assert "alias:l:d" not in client.braze_users()["users"]


def test_it_accepts_75_objects_and_refuses_76(demo):
    objects = [{"external_id": f"u{i}", "audiences": {"add": ["A"]}} for i in range(76)]
    assert _track(demo, {"attributes": objects[:75]}).json() == {"message": "success", "attributes_processed": 75}
    refused = _track(demo, {"attributes": objects})
    assert refused.status_code == 400
    assert refused.json()["message"] == "Max Input Length Exceeded"


def test_it_reports_invalid_objects_as_non_fatal_errors(demo):
    response = _track(
        demo,
        {
            "attributes": [
                {"external_id": "u1", "a": 1},
                {"audiences": {"add": ["A"]}},
                {"user_alias": {"alias_name": "x"}},
            ]
        },
    )
    assert response.status_code == 201
    body = response.json()
    assert body["message"] == "success"
    assert body["attributes_processed"] == 1
    assert [(e["input_array"], e["index"]) for e in body["errors"]] == [("attributes", 1), ("attributes", 2)]
    assert (
        body["errors"][0]["type"]
        == "Each object must specify an 'external_id', 'braze_id', 'user_alias', 'email' or 'phone'."
    )


def test_it_refuses_a_request_with_no_valid_object(demo):
    response = _track(demo, {"attributes": [{"audiences": {"add": ["A"]}}]})
    assert response.status_code == 400
    assert (
        response.json()["message"]
        == "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
    )


def test_it_refuses_unknown_revoked_and_unpermitted_keys(demo, client):
    unknown = _track(demo, {"attributes": [{"external_id": "u1", "a": 1}]}, key="not-a-key-1234")
    assert unknown.status_code == 401
    assert unknown.json() == {"message": "Invalid API key: not-******1234"}

    client.braze_key("export-only-key", permissions=["users.export.ids"])
    unpermitted = _track(demo, {"attributes": [{"external_id": "u1", "a": 1}]}, key="export-only-key")
    assert unpermitted.status_code == 403
    assert unpermitted.json() == {"message": "Access Denied"}

    client.revoke("braze", KEY)
    assert _track(demo, {"attributes": [{"external_id": "u1", "a": 1}]}).status_code == 401


def test_it_sends_rate_limit_headers_and_answers_429_past_the_limit(demo, client):
    client.braze_rate_limit(2)
    body = {"attributes": [{"external_id": "u1", "a": 1}]}
    first, second, third = (_track(demo, body) for _ in range(3))
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == ("2", "1")
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert int(first.headers["X-RateLimit-Reset"]) > 0
    assert third.status_code == 429
    assert int(third.headers["Retry-After"]) >= 1


def test_it_keeps_the_25_newest_array_values(demo, client):
    for n in range(30):
        _track(demo, {"attributes": [{"external_id": "u1", "audiences": {"add": [f"A{n}"]}}]})
    state = client.braze_users()
    assert state["users"]["external_id:u1"]["audiences"] == [f"A{n}" for n in range(5, 30)]
    assert (state["array_cap"], state["dropped"]) == (25, 5)


def test_it_moves_a_value_added_again_to_the_end(demo, client):
    _track(demo, {"attributes": [{"external_id": "u1", "audiences": {"add": [f"A{n}" for n in range(25)]}}]})
    _track(demo, {"attributes": [{"external_id": "u1", "audiences": {"add": ["A0"]}}]})
    _track(demo, {"attributes": [{"external_id": "u1", "audiences": {"add": ["A25"]}}]})
    audiences = client.braze_users()["users"]["external_id:u1"]["audiences"]
    assert audiences == [*(f"A{n}" for n in range(2, 25)), "A0", "A25"]  # A1 is now the oldest: dropped


def test_it_takes_the_array_cap_braze_was_asked_to_raise(demo, client):
    assert client.braze_array_cap(100) == {"cap": 100}
    _track(demo, {"attributes": [{"external_id": "u1", "audiences": {"add": [f"A{n}" for n in range(30)]}}]})
    assert len(client.braze_users()["users"]["external_id:u1"]["audiences"]) == 30
    refused = requests.post(f"{client.base_url}/_sandbox/braze/array_cap", json={"cap": 101}, timeout=5)
    assert refused.status_code == 400
    assert refused.json() == {"error": "'cap' must be a whole number from 1 to 100."}


def test_it_queues_calls_during_maintenance_and_applies_them_after(demo, client):
    client.braze_maintenance(True)
    queued = _track(demo, {"attributes": [{"external_id": "u1", "audiences": {"add": ["VIP"]}}]})
    assert (queued.status_code, queued.json()) == (202, {"message": "queued"})
    assert "external_id:u1" not in client.braze_users()["users"]
    assert client.braze_maintenance(False) == {"maintenance": False, "processed": 1}
    assert client.braze_users()["users"]["external_id:u1"]["audiences"] == ["VIP"]


def test_it_replaces_a_string_whole_and_removes_it_with_null(demo, client):
    for value in ("12,31,40", "12,40"):
        assert _track(demo, {"attributes": [{"external_id": "u1", "audiences": value}]}).status_code == 201
    assert client.braze_users()["users"]["external_id:u1"]["audiences"] == "12,40"

    _track(demo, {"attributes": [{"external_id": "u1", "audiences": None}]})

    assert "audiences" not in client.braze_users()["users"]["external_id:u1"]


def test_it_keeps_255_characters_of_a_longer_string(demo, client):
    _track(demo, {"attributes": [{"external_id": "u1", "audiences": "9" * 300}]})

    state = client.braze_users()
    assert (state["users"]["external_id:u1"]["audiences"], state["truncated"]) == ("9" * 255, 1)
