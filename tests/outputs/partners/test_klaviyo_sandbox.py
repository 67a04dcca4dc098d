"""The Klaviyo emulator holds to the rules of Klaviyo's API reference (docs/partners/klaviyo.md), over raw HTTP."""

import pytest
import requests

REVISION = "2026-10-15"


@pytest.fixture
def api(demo):
    klaviyo = demo["klaviyo"]

    def call(method, path, body=None, key=klaviyo["api_key"], revision=REVISION, params=None):
        headers = {"Content-Type": "application/vnd.api+json"}
        if key is not None:
            headers["Authorization"] = f"Klaviyo-API-Key {key}"
        if revision is not None:
            headers["revision"] = revision
        return requests.request(
            method, f"{klaviyo['base_url']}{path}", headers=headers, json=body, params=params, timeout=5
        )

    return call


def members(client, list_id="Y6nRLr"):
    return sorted(p["email"] for p in client._call("GET", f"klaviyo/lists/{list_id}")["members"].values())


def import_job(emails, list_id="Y6nRLr"):
    profiles = [{"type": "profile", "attributes": {"email": e}} for e in emails]
    job = {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": profiles}}}
    if list_id:
        job["relationships"] = {"lists": {"data": [{"type": "list", "id": list_id}]}}
    return {"data": job}


def error_of(response):
    (error,) = response.json()["errors"]
    return response.status_code, error["code"], error["detail"]


def test_it_answers_json_api_errors_for_a_missing_or_revoked_key(api, client):
    assert error_of(api("GET", "/api/lists", key=None)) == (
        401,
        "not_authenticated",
        "Authentication credentials were not provided.",
    )
    assert api("GET", "/api/lists").status_code == 200
    client.revoke("klaviyo", "pk_demo_0123456789abcdef0123456789abcdef")
    refused = api("GET", "/api/lists")
    assert error_of(refused) == (401, "not_authenticated", "Incorrect authentication credentials.")
    assert refused.headers["Content-Type"] == "application/vnd.api+json"


def test_it_requires_a_revision_header(api):
    assert error_of(api("GET", "/api/lists", revision=None))[:2] == (400, "invalid")
    assert error_of(api("GET", "/api/lists", revision="latest"))[:2] == (400, "invalid")
    assert error_of(api("GET", "/api/lists", revision="2019-01-01")) == (
        404,
        "not_found",
        "No valid revisions found for method",
    )
    assert api("GET", "/api/lists", revision="2026-07-15.pre").status_code == 200


def test_it_refuses_a_key_without_the_endpoints_scopes(api, client):
    client._call("POST", "klaviyo/keys", {"api_key": "pk_read", "scopes": ["lists:read", "profiles:read"]})

    assert api("GET", "/api/lists", key="pk_read").status_code == 200
    assert error_of(api("POST", "/api/profile-bulk-import-jobs", import_job(["a@b.fr"]), key="pk_read")) == (
        403,
        "permission_denied",
        "You do not have permission to perform this action.",
    )
    client._call("POST", "klaviyo/keys", {"api_key": "pk_full", "scopes": ["lists:full", "profiles:full"]})
    assert api("POST", "/api/profile-bulk-import-jobs", import_job(["a@b.fr"]), key="pk_full").status_code == 202


def test_a_bulk_import_creates_profiles_and_adds_them_to_the_list(api, client):
    answer = api("POST", "/api/profile-bulk-import-jobs", import_job(["Ada@Example.com", "bob@example.com"]))

    assert answer.status_code == 202
    job = answer.json()["data"]
    assert (job["type"], job["attributes"]["status"], job["attributes"]["total_count"]) == (
        "profile-bulk-import-job",
        "queued",
        2,
    )
    assert members(client) == ["ada@example.com", "bob@example.com"]
    done = api("GET", f"/api/profile-bulk-import-jobs/{job['id']}").json()["data"]["attributes"]
    assert (done["status"], done["completed_count"]) == ("complete", 2)


def test_a_bulk_import_takes_10000_profiles_and_one_list(api):
    emails = [f"m{i}@example.com" for i in range(10_001)]
    assert api("POST", "/api/profile-bulk-import-jobs", import_job(emails[:10_000])).status_code == 202
    too_many = api("POST", "/api/profile-bulk-import-jobs", import_job(emails))
    assert too_many.status_code == 400
    body = import_job(["a@b.fr"])
    body["data"]["relationships"]["lists"]["data"].append({"type": "list", "id": "Other"})
    assert error_of(api("POST", "/api/profile-bulk-import-jobs", body))[2] == "Only one list may be given."


def test_a_bulk_import_into_a_missing_list_is_404(api):
    assert error_of(api("POST", "/api/profile-bulk-import-jobs", import_job(["a@b.fr"], "NoSuch"))) == (
        404,
        "not_found",
        "A list with id NoSuch does not exist.",
    )


def test_an_invalid_email_is_refused_with_a_pointer_to_it(api, client):
    refused = api("POST", "/api/profile-bulk-import-jobs", import_job(["a@b.fr", "not-an-email"]))

    assert refused.status_code == 400
    assert refused.json()["errors"][0]["source"]["pointer"] == "/data/attributes/profiles/data/1/attributes/email"
    assert members(client) == []  # nothing half-written


def test_list_membership_takes_existing_profile_ids_1000_at_a_time(api, client):
    api("POST", "/api/profile-bulk-import-jobs", import_job(["ada@example.com"], None))
    found = api("GET", "/api/profiles", params={"filter": 'any(email,["ada@example.com"])', "page[size]": "100"})
    (profile,) = found.json()["data"]
    path = "/api/lists/Y6nRLr/relationships/profiles"

    assert api("POST", path, {"data": [{"type": "profile", "id": profile["id"]}]}).status_code == 204
    assert members(client) == ["ada@example.com"]
    unknown = api("POST", path, {"data": [{"type": "profile", "id": "01NOPE"}]})
    assert (unknown.status_code, unknown.json()["errors"][0]["source"]["pointer"]) == (400, "/data/0/id")
    too_many = api("POST", path, {"data": [{"type": "profile", "id": profile["id"]}] * 1001})
    assert too_many.status_code == 400
    assert api("DELETE", path, {"data": [{"type": "profile", "id": profile["id"]}]}).status_code == 204
    assert members(client) == []


def test_get_profiles_pages_at_most_100(api):
    assert api("GET", "/api/profiles", params={"page[size]": "101"}).status_code == 400
    assert api("GET", "/api/profiles", params={"filter": "any(email,['a@b.fr'])", "page[size]": "100"}).json() == {
        "data": [],
        "links": {"self": "/api/profiles", "next": None, "prev": None},
    }


def test_a_bulk_subscription_waits_for_confirmation_on_a_double_opt_in_list(api, client):
    client._call("POST", "klaviyo/lists", {"list_id": "Dbl", "opt_in_process": "double_opt_in"})
    profile = {
        "type": "profile",
        "attributes": {
            "email": "ada@example.com",
            "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}},
        },
    }
    job = {
        "type": "profile-subscription-bulk-create-job",
        "attributes": {"profiles": {"data": [profile]}},
        "relationships": {"list": {"data": {"type": "list", "id": "Dbl"}}},
    }

    assert api("POST", "/api/profile-subscription-bulk-create-jobs", {"data": job}).status_code == 202
    assert members(client, "Dbl") == []
    client._call("POST", "klaviyo/confirm", {"list_id": "Dbl", "email": "ada@example.com"})
    assert members(client, "Dbl") == ["ada@example.com"]


def test_the_list_counts_its_profiles_only_when_asked(api):
    api("POST", "/api/profile-bulk-import-jobs", import_job(["a@b.fr", "c@d.fr"]))

    plain = api("GET", "/api/lists/Y6nRLr").json()["data"]["attributes"]
    counted = api("GET", "/api/lists/Y6nRLr", params={"additional-fields[list]": "profile_count"})

    assert "profile_count" not in plain
    assert counted.json()["data"]["attributes"]["profile_count"] == 2


def test_the_count_is_limited_to_one_request_a_second(api):
    params = {"additional-fields[list]": "profile_count"}
    answers = [api("GET", "/api/lists/Y6nRLr", params=params) for _ in range(3)]

    throttled = [a for a in answers if a.status_code == 429]
    assert throttled  # three within two seconds: at least one is over the 1/s burst
    assert throttled[0].headers["Retry-After"] == "1"
    assert error_of(throttled[0])[:2] == (429, "throttled")
    assert throttled[0].json()["errors"][0]["detail"].startswith("Request was throttled. Expected available in")
    assert "RateLimit-Remaining" in answers[0].headers


def test_the_steady_limit_holds_for_the_rest_of_the_minute(api, client):
    client._call("POST", "klaviyo/rate_limits", {"burst": 100, "steady": 2})
    answers = [api("GET", "/api/lists") for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    assert 1 <= int(answers[2].headers["Retry-After"]) <= 60
