"""The Google Ads emulator on its own, driven with plain requests: the rules docs/partners/google_ads.md cites."""

import hashlib

import pytest
import requests

DEV, CLIENT, SECRET, REFRESH = "dev-token", "client.apps.googleusercontent.com", "client-secret", "1//refresh"
CUSTOMER, LIST = "1234567890", "5550001"
EMAIL = hashlib.sha256(b"test@example.com").hexdigest()


@pytest.fixture
def gads(sandbox):
    sandbox.reset()
    account = {"developer_token": DEV, "client_id": CLIENT, "client_secret": SECRET, "refresh_token": REFRESH}
    sandbox._call("POST", "google_ads/accounts", {**account, "customer_id": CUSTOMER})
    sandbox._call("POST", "google_ads/lists", {"user_list_id": LIST, "customer_id": CUSTOMER})
    return Client(sandbox)


class Client:
    def __init__(self, sandbox):
        self.sandbox, self.base = sandbox, f"{sandbox.base_url}/google_ads"
        self.token = self.exchange().json()["access_token"]

    def exchange(self, **form):
        data = {"grant_type": "refresh_token", "client_id": CLIENT, "client_secret": SECRET, "refresh_token": REFRESH}
        return requests.post(f"{self.base}/token", data={**data, **form}, timeout=10)

    def post(self, path, body, **headers):
        sent = {"Authorization": f"Bearer {self.token}", "developer-token": DEV, **headers}
        return requests.post(f"{self.base}/v24/customers/{CUSTOMER}/{path}", json=body, headers=sent, timeout=30)

    def job(self):
        body = {
            "job": {
                "type": "CUSTOMER_MATCH_USER_LIST",
                "customerMatchUserListMetadata": {"userList": f"customers/{CUSTOMER}/userLists/{LIST}"},
            }
        }
        return self.post("offlineUserDataJobs:create", body).json()["resourceName"].partition(f"{CUSTOMER}/")[2]

    def status(self, job):
        query = "SELECT offline_user_data_job.status FROM offline_user_data_job WHERE offline_user_data_job.id = "
        query += job.rpartition("/")[2]
        return self.post("googleAds:search", {"query": query}).json()["results"][0]["offlineUserDataJob"]["status"]


def create(value=EMAIL, field="hashedEmail"):
    return {"create": {"userIdentifiers": [{field: value}]}}


def codes(response):
    return [e["errorCode"] for d in response.json()["error"]["details"] for e in d.get("errors", [])]


def test_it_exchanges_a_refresh_token_and_refuses_a_revoked_one(gads, sandbox):
    answer = gads.exchange().json()
    assert (answer["token_type"], answer["expires_in"], answer["scope"]) == (
        "Bearer",
        3599,
        "https://www.googleapis.com/auth/adwords",
    )

    sandbox.revoke("google_ads", REFRESH)
    refused = gads.exchange()
    assert (refused.status_code, refused.json()) == (
        400,
        {"error": "invalid_grant", "error_description": "Token has been expired or revoked."},
    )
    assert gads.exchange(client_secret="wrong").json()["error"] == "invalid_client"
    # the access tokens of a revoked grant stop working too
    assert codes(gads.post("googleAds:search", {"query": "SELECT customer.id FROM customer"})) == [
        {"authenticationError": "OAUTH_TOKEN_EXPIRED"}
    ]


def test_it_requires_the_developer_token_and_access_to_the_customer(gads):
    missing = gads.post("googleAds:search", {"query": "SELECT customer.id FROM customer"}, **{"developer-token": ""})
    assert missing.status_code == 401

    other = requests.post(
        f"{gads.base}/v24/customers/9999999999/googleAds:search",
        json={"query": "SELECT customer.id FROM customer"},
        headers={"Authorization": f"Bearer {gads.token}", "developer-token": DEV},
        timeout=10,
    )
    assert other.status_code == 403
    assert codes(other) == [{"authorizationError": "USER_PERMISSION_DENIED"}]


def test_a_job_runs_once_through_its_lifecycle(gads):
    job = gads.job()
    assert gads.status(job) == "PENDING"
    assert gads.post(f"{job}:addOperations", {"operations": [create()]}).status_code == 200

    assert gads.post(f"{job}:run", {}).status_code == 200
    assert gads.status(job) == "SUCCESS"

    again = gads.post(f"{job}:run", {})
    late = gads.post(f"{job}:addOperations", {"operations": [create()]})
    assert codes(again) == codes(late) == [{"offlineUserDataJobError": "JOB_ALREADY_STARTED"}]
    assert gads.sandbox._call("GET", f"google_ads/lists/{LIST}")["members"] == {EMAIL: "hashedEmail"}


def test_a_held_job_stays_running_until_finished(gads):
    gads.sandbox._call("POST", "google_ads/processing", {"hold": True})
    job = gads.job()
    gads.post(f"{job}:addOperations", {"operations": [create()]})
    gads.post(f"{job}:run", {})

    assert gads.status(job) == "RUNNING"
    assert gads.sandbox._call("GET", f"google_ads/lists/{LIST}")["count"] == 0
    gads.sandbox._call("POST", "google_ads/jobs/finish", {"status": "SUCCESS"})
    assert gads.status(job) == "SUCCESS"


def test_it_enforces_100000_identifiers_a_request(gads):
    job = gads.job()
    # 5,001 users of 20 identifiers: the limit counts identifiers across all of a request's operations.
    user = {"create": {"userIdentifiers": [{"mobileId": "x"}] * 20}}

    refused = gads.post(f"{job}:addOperations", {"operations": [user] * 5_001})

    assert refused.status_code == 400
    assert codes(refused) == [{"collectionSizeError": "TOO_MANY"}]
    assert refused.json()["error"]["details"][0]["errors"][0]["message"] == (
        "Too many user identifiers in this request: 100020; at most 100,000."
    )


def test_it_names_each_bad_operation_only_with_partial_failure(gads):
    job = gads.job()
    operations = [create(), create("not-a-hash"), create("aebe52e7-03ee-455a-b3c4-e57283966239", "mobileId")]

    whole = gads.post(f"{job}:addOperations", {"operations": operations})
    partial = gads.post(f"{job}:addOperations", {"operations": operations, "enablePartialFailure": True})

    assert whole.status_code == 400  # without partial failure nothing of the request is kept
    errors = partial.json()["partialFailureError"]["details"][0]["errors"]
    assert [(e["errorCode"], e["location"]["fieldPathElements"][0]) for e in errors] == [
        ({"offlineUserDataJobError": "INVALID_SHA256_FORMAT"}, {"fieldName": "operations", "index": 1}),
        ({"offlineUserDataJobError": "INCOMPATIBLE_UPLOAD_KEY_TYPE"}, {"fieldName": "operations", "index": 2}),
    ]
    gads.post(f"{job}:run", {})
    assert gads.sandbox._call("GET", f"google_ads/lists/{LIST}")["count"] == 1


def test_it_refuses_creates_and_removes_in_one_job_and_20_identifiers_a_user(gads):
    job = gads.job()
    mixed = gads.post(
        f"{job}:addOperations", {"operations": [create(), {"remove": {"userIdentifiers": [{"hashedEmail": EMAIL}]}}]}
    )
    crowded = gads.post(
        f"{job}:addOperations", {"operations": [{"create": {"userIdentifiers": [{"hashedEmail": EMAIL}] * 21}}]}
    )

    assert codes(mixed) == [{"offlineUserDataJobError": "INVALID_OPERATION_ORDER"}]
    assert codes(crowded) == [{"collectionSizeError": "TOO_MANY"}]


def test_it_refuses_jobs_for_accounts_without_terms_or_eligibility(gads, sandbox):
    account = {"developer_token": DEV, "client_id": CLIENT, "client_secret": SECRET, "refresh_token": REFRESH}
    sandbox._call("POST", "google_ads/accounts", {**account, "customer_id": CUSTOMER, "terms_accepted": False})
    body = {
        "job": {
            "type": "CUSTOMER_MATCH_USER_LIST",
            "customerMatchUserListMetadata": {"userList": f"customers/{CUSTOMER}/userLists/{LIST}"},
        }
    }
    assert codes(gads.post("offlineUserDataJobs:create", body)) == [
        {"offlineUserDataJobError": "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS"}
    ]
    sandbox._call("POST", "google_ads/accounts", {**account, "customer_id": CUSTOMER, "eligible": False})
    assert codes(gads.post("offlineUserDataJobs:create", body)) == [
        {"notAllowlistedError": "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE"}
    ]
    assert gads.post("offlineUserDataJobs:create", {**body, "validateOnly": True}).status_code == 403


def test_search_answers_only_the_fields_it_knows(gads):
    known = gads.post(
        "googleAds:search",
        {
            "query": "SELECT user_list.id, user_list.crm_based_user_list.upload_key_type FROM user_list "
            f"WHERE user_list.id = {LIST}"
        },
    )
    unknown = gads.post("googleAds:search", {"query": "SELECT user_list.colour FROM user_list"})

    assert known.json()["results"] == [
        {"userList": {"id": LIST, "crmBasedUserList": {"uploadKeyType": "CONTACT_INFO"}}}
    ]
    assert codes(unknown) == [{"queryError": "UNRECOGNIZED_FIELD"}]


def test_it_throttles_a_developer_token_with_a_retry_delay(gads):
    gads.sandbox._call("POST", "google_ads/quota", {"developer_token": DEV, "requests_per_minute": 1})
    assert gads.post("googleAds:search", {"query": "SELECT customer.id FROM customer"}).status_code == 200

    throttled = gads.post("googleAds:search", {"query": "SELECT customer.id FROM customer"})

    assert throttled.status_code == 429
    (error,) = throttled.json()["error"]["details"][0]["errors"]
    assert error["errorCode"] == {"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"}
    assert error["details"]["quotaErrorDetails"]["retryDelay"].endswith("s")
