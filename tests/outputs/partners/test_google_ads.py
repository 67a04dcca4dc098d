"""Google Ads Customer Match against the partner sandbox: real HTTP, the user list checked on the sandbox side."""

import datetime as dt
import hashlib

import pytest
from django.utils import timezone

from outputs.partners.base import Account, Message
from outputs.partners.google_ads import adapter
from outputs.partners.google_ads.adapter import GoogleAdsCustomerMatch
from outputs.partners.registry import get
from outputs.schema import clean_value

DEV = "gads-dev-token-s3cret"
CLIENT, CLIENT_SECRET = "relay.apps.googleusercontent.com", "client-s3cret"
REFRESH = "1//refresh-s3cret-token"
CUSTOMER, SHOWN = "1234567890", "123-456-7890"
LIST = "5550001"
CONNECTION = {"user_list_id": LIST, "upload_key_type": "CONTACT_INFO", "consent": "UNSPECIFIED"}
IDFA = "aebe52e7-03ee-455a-b3c4-e57283966239"
# sha256("test@example.com") and sha256("+16505551212"): the values Google's samples hash.
TEST_EMAIL_SHA256 = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
PHONE_SHA256 = hashlib.sha256(b"+16505551212").hexdigest()


def control(sandbox, method, path, payload=None):
    return sandbox._call(method, f"google_ads/{path}", payload)


def setup(sandbox, key_type="CONTACT_INFO", list_type="CRM_BASED", **account):
    sandbox.reset()
    body = {
        "developer_token": DEV,
        "client_id": CLIENT,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH,
        "customer_id": CUSTOMER,
        **account,
    }
    control(sandbox, "POST", "accounts", body)
    control(
        sandbox,
        "POST",
        "lists",
        {
            "user_list_id": LIST,
            "customer_id": CUSTOMER,
            "name": "Potential Parisians",
            "upload_key_type": key_type,
            "type": list_type,
        },
    )


def held(sandbox):
    return control(sandbox, "GET", f"lists/{LIST}")


@pytest.fixture(autouse=True)
def fresh_tokens():
    # Access tokens and waited-for jobs are kept for the life of the process; each test starts from none.
    adapter._tokens.clear()
    adapter._pending.clear()


@pytest.fixture
def partner():
    return get("google_ads")


@pytest.fixture
def account(sandbox):
    setup(sandbox)
    return make_account(sandbox)


def make_account(sandbox, **settings):
    values = {
        "developer_token": DEV,
        "client_id": CLIENT,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH,
        "customer_id": SHOWN,
        "login_customer_id": "",
        "api_version": "v24",
        **settings,
    }
    return Account(values, f"{sandbox.base_url}/google_ads")


def add(key, value, identity_type="email"):
    return Message(key, "add", identity_type, value, "Potential Parisians")


def remove(key, value, identity_type="email"):
    return Message(key, "remove", identity_type, value, "Potential Parisians")


def emails(count, start=0):
    return [add(i, f"person{i}@example.com") for i in range(start, start + count)]


def statuses(result):
    return {k: o.status for k, o in result.outcomes.items()}


# --- normalization -----------------------------------------------------------------------------------------


def test_it_hashes_emails_trimmed_and_lower_case(partner):
    assert partner.identity_types["email"]("test@example.com") == TEST_EMAIL_SHA256
    assert partner.identity_types["email"]("  Test@Example.COM ") == TEST_EMAIL_SHA256


def test_it_hashes_phone_numbers_in_e164_with_the_plus(partner):
    assert partner.identity_types["mobile_number"]("+16505551212") == PHONE_SHA256
    assert partner.identity_types["mobile_number"]("+1 650 555 1212") == PHONE_SHA256
    assert PHONE_SHA256 != hashlib.sha256(b"16505551212").hexdigest()  # the "+" is part of what Google hashes


def test_it_sends_mobile_ids_and_customer_ids_raw(partner):
    assert partner.identity_types["ios_idfa"](IDFA) == IDFA
    assert partner.identity_types["customer_id"](" C-1234 ") == "C-1234"


def test_each_list_kind_forwards_only_its_identity_types(partner):
    assert partner.accepted_types({"upload_key_type": "CONTACT_INFO"}) == {"email", "mobile_number"}
    assert partner.accepted_types({"upload_key_type": "CRM_ID"}) == {"customer_id"}
    assert partner.accepted_types({"upload_key_type": "MOBILE_ADVERTISING_ID"}) == {"ios_idfa", "android_aaid"}
    assert partner.accepted_types({}) == {"email", "mobile_number"}


# --- delivery ----------------------------------------------------------------------------------------------


def test_it_adds_hashed_emails_and_phones_through_one_job(sandbox, partner, account):
    result = partner.send(account, CONNECTION, [add(1, "test@example.com"), add(2, "+16505551212", "mobile_number")])

    assert result.fault is None
    assert statuses(result) == {1: "accepted", 2: "accepted"}
    assert result.outcomes[1].reason == "Google Ads matched 91–100% of its upload job."
    state = held(sandbox)
    assert state["members"] == {TEST_EMAIL_SHA256: "hashedEmail", PHONE_SHA256: "hashedPhoneNumber"}
    (job,) = state["jobs"]
    assert (job["status"], job["operations"]) == ("SUCCESS", 2)
    paths = [(a.method, a.path) for a in result.attempts]
    assert paths[0] == ("POST", "/google_ads/token")
    assert paths[1:4] == [
        ("POST", f"/google_ads/v24/customers/{CUSTOMER}/offlineUserDataJobs:create"),
        ("POST", f"/google_ads/v24/customers/{CUSTOMER}/offlineUserDataJobs/{job['id']}:addOperations"),
        ("POST", f"/google_ads/v24/customers/{CUSTOMER}/offlineUserDataJobs/{job['id']}:run"),
    ]
    assert paths[4] == ("POST", f"/google_ads/v24/customers/{CUSTOMER}/googleAds:search")


def test_it_removes_in_a_job_of_its_own(sandbox, partner, account):
    partner.send(account, CONNECTION, [add(1, "test@example.com"), add(2, "other@example.com")])

    result = partner.send(account, CONNECTION, [remove(3, "test@example.com"), add(4, "third@example.com")])

    assert statuses(result) == {3: "accepted", 4: "accepted"}
    state = held(sandbox)
    assert set(state["members"]) == {
        hashlib.sha256(v).hexdigest() for v in (b"other@example.com", b"third@example.com")
    }
    assert len(state["jobs"]) == 3  # one add job, then one add and one remove job: never mixed


def test_it_reuses_its_access_token_until_it_lapses(sandbox, partner, account):
    partner.send(account, CONNECTION, emails(1))

    second = partner.send(account, CONNECTION, emails(1, start=1))

    assert "/google_ads/token" not in [a.path for a in second.attempts]


def test_it_cuts_a_batch_into_requests_of_the_recommended_size_in_one_job(sandbox, partner, account, monkeypatch):
    assert adapter.PER_REQUEST == 10_000  # Google recommends 10,000 a request; its limit is 100,000
    monkeypatch.setattr(adapter, "PER_REQUEST", 1_000)  # the same cut, a tenth of the work

    result = partner.send(account, CONNECTION, emails(2_500))

    assert sum(s == "accepted" for s in statuses(result).values()) == 2_500
    assert [a.path.rpartition(":")[2] for a in result.attempts].count("addOperations") == 3
    state = held(sandbox)
    assert state["count"] == 2_500 and len(state["jobs"]) == 1


def test_it_rejects_the_operations_google_names_in_its_partial_failure(sandbox, account):
    class Unhashed(GoogleAdsCustomerMatch):
        identity_types = {**GoogleAdsCustomerMatch.identity_types, "email": str.strip}

    result = Unhashed().send(
        account, CONNECTION, [add(1, "plain@example.com"), add(2, "+16505551212", "mobile_number")]
    )

    assert result.outcomes[1].status == "rejected"
    assert result.outcomes[1].reason == (
        "Google Ads refused this identifier: The SHA256 encoded value is malformed (INVALID_SHA256_FORMAT)."
    )
    assert result.outcomes[2].status == "accepted"
    assert list(held(sandbox)["members"]) == [PHONE_SHA256]


def test_it_rejects_identity_types_the_list_does_not_take(sandbox, partner, account):
    result = partner.send(account, CONNECTION, [add(1, "test@example.com"), add(2, IDFA, "ios_idfa")])

    assert result.outcomes[1].status == "accepted"
    assert result.outcomes[2].reason == (
        "The user list of this connection takes contact info (email addresses and phone numbers), not ios_idfa."
    )


def test_it_uploads_mobile_ids_and_crm_ids_to_lists_of_their_kind(sandbox, partner):
    setup(sandbox, key_type="MOBILE_ADVERTISING_ID")
    account = make_account(sandbox)

    result = partner.send(
        account, {**CONNECTION, "upload_key_type": "MOBILE_ADVERTISING_ID"}, [add(1, IDFA, "ios_idfa")]
    )

    assert statuses(result) == {1: "accepted"}
    assert held(sandbox)["members"] == {IDFA: "mobileId"}

    setup(sandbox, key_type="CRM_ID")
    result = partner.send(account, {**CONNECTION, "upload_key_type": "CRM_ID"}, [add(2, "C-1234", "customer_id")])
    assert statuses(result) == {2: "accepted"}
    assert held(sandbox)["members"] == {"C-1234": "thirdPartyUserId"}


def test_it_sends_the_consent_of_the_connection(sandbox, partner, account):
    result = partner.send(account, {**CONNECTION, "consent": "GRANTED"}, emails(1))

    assert statuses(result) == {0: "accepted"}


def test_it_waits_for_a_running_job_then_reads_it_instead_of_uploading_again(sandbox, partner, account, monkeypatch):
    control(sandbox, "POST", "processing", {"hold": True})
    monkeypatch.setattr(partner, "job_wait", 0.3)

    first = partner.send(account, CONNECTION, emails(2))

    (job,) = held(sandbox)["jobs"]
    assert {(o.status, o.reason) for o in first.outcomes.values()} == {
        ("retry", f"Google Ads is still processing upload job {job['id']}; the job will be checked again.")
    }
    still = partner.send(account, CONNECTION, emails(2))
    assert {o.status for o in still.outcomes.values()} == {"retry"}
    assert len(held(sandbox)["jobs"]) == 1  # read again, not uploaded again

    control(sandbox, "POST", "jobs/finish", {"status": "SUCCESS"})
    done = partner.send(account, CONNECTION, emails(2))

    assert statuses(done) == {0: "accepted", 1: "accepted"}
    assert held(sandbox)["count"] == 2 and len(held(sandbox)["jobs"]) == 1


def test_it_uploads_again_what_a_failed_job_held(sandbox, partner, account, monkeypatch):
    control(sandbox, "POST", "processing", {"hold": True})
    monkeypatch.setattr(partner, "job_wait", 0.2)
    partner.send(account, CONNECTION, emails(2))
    control(sandbox, "POST", "jobs/finish", {"status": "FAILED", "failure_reason": "UNKNOWN"})
    control(sandbox, "POST", "processing", {"hold": False})

    result = partner.send(account, CONNECTION, emails(2))

    assert statuses(result) == {0: "accepted", 1: "accepted"}
    assert [j["status"] for j in held(sandbox)["jobs"]] == ["FAILED", "SUCCESS"]


# --- faults ------------------------------------------------------------------------------------------------


def test_it_faults_on_a_revoked_refresh_token(sandbox, partner, account):
    sandbox.revoke("google_ads", REFRESH)

    result = partner.send(account, CONNECTION, emails(2))

    assert result.outcomes == {}
    assert result.fault.kind == "credentials"
    assert result.fault.message == "Google refused the refresh token of this output: Token has been expired or revoked."
    assert result.fault.hint.startswith("Generate a new refresh token (scope https://www.googleapis.com/auth/adwords)")


def test_it_gets_a_new_access_token_when_google_says_the_old_one_expired(sandbox, partner, account):
    partner.send(account, CONNECTION, emails(1))
    key = next(iter(adapter._tokens))
    adapter._tokens[key] = ("ya29.lapsed-token", 1e12)  # we think it is good; Google does not know it

    result = partner.send(account, CONNECTION, emails(1, start=1))

    assert statuses(result) == {1: "accepted"}
    assert [a.status for a in result.attempts][:3] == [401, 200, 200]  # refused, exchanged again, repeated


def test_it_faults_on_a_client_secret_google_does_not_know(sandbox, partner):
    setup(sandbox)

    result = partner.send(make_account(sandbox, client_secret="wrong"), CONNECTION, emails(1))

    assert (result.fault.kind, result.fault.message) == (
        "credentials",
        "Google did not accept the OAuth client ID and secret of this output.",
    )


def test_it_faults_on_a_token_without_the_ads_scope(sandbox, partner):
    setup(sandbox, scope="https://www.googleapis.com/auth/userinfo.email")

    result = partner.send(make_account(sandbox), CONNECTION, emails(1))

    assert result.fault.message == "The refresh token of this output was not granted the Google Ads API scope."


def test_it_faults_on_a_developer_token_with_test_access_only(sandbox, partner):
    setup(sandbox, approved=False)

    result = partner.send(make_account(sandbox), CONNECTION, emails(1))

    assert result.fault.message == (
        "Google Ads did not accept the developer token of this output (DEVELOPER_TOKEN_NOT_APPROVED)."
    )


def test_it_needs_the_login_customer_id_to_reach_a_client_through_its_manager(sandbox, partner):
    setup(sandbox, manager_id="999-888-7777")

    refused = partner.send(make_account(sandbox), CONNECTION, emails(1))
    through = partner.send(make_account(sandbox, login_customer_id="999-888-7777"), CONNECTION, emails(1, start=1))

    assert (refused.fault.kind, refused.fault.message) == (
        "account",
        f"The Google account of this output's refresh token may not access customer {SHOWN}.",
    )
    assert statuses(through) == {1: "accepted"}


def test_it_faults_when_the_customer_match_terms_are_not_accepted(sandbox, partner):
    setup(sandbox, terms_accepted=False)

    result = partner.send(make_account(sandbox), CONNECTION, emails(1))

    assert (result.fault.kind, result.fault.message) == (
        "account",
        f"Customer {SHOWN} has not accepted the Customer Match terms.",
    )


def test_it_faults_when_the_account_may_not_use_customer_match(sandbox, partner):
    setup(sandbox, eligible=False)

    result = partner.send(make_account(sandbox), CONNECTION, emails(1))

    assert (result.fault.kind, result.fault.message) == (
        "account",
        f"Customer {SHOWN} is not eligible for Customer Match.",
    )


def test_it_faults_on_a_missing_user_list(sandbox, partner, account):
    result = partner.send(account, {**CONNECTION, "user_list_id": "404"}, emails(1))

    assert (result.fault.kind, result.fault.message) == (
        "destination",
        f"Google Ads user list 404 was not found in customer {SHOWN}.",
    )


def test_it_faults_on_a_list_that_is_not_customer_match(sandbox, partner):
    setup(sandbox, list_type="RULE_BASED")

    result = partner.send(make_account(sandbox), CONNECTION, emails(1))

    assert result.fault.message == (
        "Google Ads user list 5550001 is not a Customer Match list of contact info (email addresses and phone numbers)."
    )


def test_it_waits_the_delay_google_gives_when_the_quota_is_used_up(sandbox, partner, account):
    control(sandbox, "POST", "quota", {"developer_token": DEV, "requests_per_minute": 0})

    result = partner.send(account, CONNECTION, emails(2))

    assert result.fault is None
    assert {(o.status, o.reason, o.retry_after) for o in result.outcomes.values()} == {
        ("retry", "Google Ads asked us to slow down: Too many requests. Retry in 60 seconds.", 60.0)
    }


def test_it_honours_retry_after_on_a_429(sandbox, partner, account):
    sandbox.fault(partner="google_ads", path="offlineUserDataJobs:create", kind="status", status=429, retry_after=17)

    result = partner.send(account, CONNECTION, emails(2))

    assert {(o.status, o.retry_after) for o in result.outcomes.values()} == {("retry", 17.0)}
    assert held(sandbox)["count"] == 0


def test_it_retries_on_a_server_error(sandbox, partner, account):
    sandbox.fault(partner="google_ads", path="googleAds:search", kind="status", status=503)

    result = partner.send(account, CONNECTION, emails(2))

    assert {(o.status, o.reason) for o in result.outcomes.values()} == {
        ("retry", "Google Ads answered with HTTP 503, a temporary error.")
    }


def test_it_keeps_secrets_and_the_access_token_out_of_attempts_and_sentences(sandbox, partner, account):
    results = [partner.send(account, CONNECTION, emails(2))]
    sandbox.fault(partner="google_ads", path="offlineUserDataJobs:create", kind="echo", status=400)
    results.append(partner.send(account, CONNECTION, emails(2)))
    sandbox.revoke("google_ads", REFRESH)
    results.append(partner.send(account, CONNECTION, emails(2)))

    for result in results:
        texts = [a.path + " " + a.response_excerpt for a in result.attempts]
        texts += [o.reason for o in result.outcomes.values()]
        if result.fault:
            texts += [result.fault.message, result.fault.hint]
        joined = "\n".join(texts)
        assert DEV not in joined and REFRESH not in joined and CLIENT_SECRET not in joined
        assert "ya29." not in joined


# --- verification ------------------------------------------------------------------------------------------


def test_it_verifies_credentials_list_and_customer_match(sandbox, partner, account):
    partner.send(account, CONNECTION, emails(3))

    checks = partner.verify(account, CONNECTION)

    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("credentials", "ok", f"The refresh token can read customer {SHOWN} (Sandbox customer {CUSTOMER})."),
        (
            "user list",
            "ok",
            f"User list Potential Parisians ({LIST}) is a Customer Match list of contact info (email addresses and "
            "phone numbers); Google estimates about 3 people (rounded, active matched users only).",
        ),
        ("customer match", "ok", f"Customer {SHOWN} may upload members to this list."),
    ]
    assert partner.partner_count(account, CONNECTION) == 3
    assert len(held(sandbox)["jobs"]) == 1  # the check created no job


def test_it_verify_reports_a_list_of_another_kind(sandbox, partner):
    setup(sandbox, key_type="MOBILE_ADVERTISING_ID")

    checks = partner.verify(make_account(sandbox), CONNECTION)

    assert (checks[-1].name, checks[-1].status, checks[-1].detail) == (
        "user list",
        "failing",
        f"User list Potential Parisians ({LIST}) is a Customer Match list of mobile advertising IDs; this connection "
        "uploads contact info (email addresses and phone numbers).",
    )


def test_it_verify_reports_terms_and_a_revoked_token(sandbox, partner):
    setup(sandbox, terms_accepted=False)
    account = make_account(sandbox)

    checks = partner.verify(account, CONNECTION)
    assert (checks[-1].name, checks[-1].status) == ("customer match", "failing")

    sandbox.revoke("google_ads", REFRESH)
    checks = partner.verify(account, CONNECTION)
    assert [(c.name, c.status) for c in checks] == [("credentials", "failing")]
    assert partner.partner_count(account, CONNECTION) is None


# --- declarations ------------------------------------------------------------------------------------------


def test_it_validates_its_settings(partner):
    settings = {s.name: s for s in partner.output_settings + partner.connection_settings}

    with pytest.raises(ValueError, match=r"^Must be a 10-digit customer ID, such as 123-456-7890\.$"):
        clean_value(settings["customer_id"], "12345")
    with pytest.raises(ValueError, match=r"^Must be the numeric ID of the user list\.$"):
        clean_value(settings["user_list_id"], "abc")
    with pytest.raises(ValueError, match=r"^Must be one of CONTACT_INFO, CRM_ID, MOBILE_ADVERTISING_ID\.$"):
        clean_value(settings["upload_key_type"], "EMAIL")
    assert clean_value(settings["api_version"], "") == "v24"
    assert [s.name for s in partner.output_settings if s.secret] == [
        "developer_token",
        "client_secret",
        "refresh_token",
    ]
    assert partner.delivery.mode == "interval"
    assert partner.hosts == ("googleads.googleapis.com", "oauth2.googleapis.com")


# --- through the engine ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_throttled_batch_waits_then_arrives_whole(sandbox, account):
    from audiences.ingest import ProfileInput, upsert_profiles
    from audiences.models import Audience
    from audiences.refresh import refresh_audience
    from connections import services
    from connections.drain import drain
    from connections.models import OutboxMessage
    from outputs.models import Output

    upsert_profiles(
        [ProfileInput(f"u{i}", {"tier": "gold"}, [("email", f"u{i}@example.com")]) for i in range(3)]
        + [ProfileInput("d0", {"tier": "gold"}, [("ios_idfa", IDFA)])]
    )
    members = Audience.objects.create(name="Gold", criteria={"user": "tier", "op": "eq", "value": "gold"})
    refresh_audience(members)
    plain = {
        k: v for k, v in account.settings.items() if k not in ("developer_token", "client_secret", "refresh_token")
    }
    output = Output(kind="google_ads", name="Google Ads", base_url=account.base_url, settings=plain)
    output.set_secrets({"developer_token": DEV, "client_secret": CLIENT_SECRET, "refresh_token": REFRESH})
    output.save()
    conn = services.connect(members, output, CONNECTION)
    control(sandbox, "POST", "quota", {"developer_token": DEV, "requests_per_minute": 0})

    started = timezone.now()
    report = drain(conn.pk)

    assert (report.retried, report.accepted) == (3, 0)  # the device ID is not queued for a contact-info list
    for message in OutboxMessage.objects.filter(connection=conn):
        assert message.state == "pending"
        assert started + dt.timedelta(seconds=60) <= message.next_attempt_at
        assert message.last_error == "Google Ads asked us to slow down: Too many requests. Retry in 60 seconds."

    control(sandbox, "POST", "quota", {"developer_token": DEV, "requests_per_minute": None})
    OutboxMessage.objects.filter(connection=conn).update(next_attempt_at=timezone.now())
    assert drain(conn.pk).accepted == 3
    assert held(sandbox)["count"] == 3


# --- over the API ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_output_is_added_connected_forwarded_and_verified_over_the_api(api, sandbox, account):
    from connections.drain import drain
    from tests.connections.factories import StaticAudienceFactory, add_members

    body = {
        "kind": "google_ads",
        "name": "Google Ads (Paris)",
        "base_url": account.base_url,
        "settings": {**account.settings, "customer_id": "12345"},
    }
    bad = api.post("/api/v1/outputs/", body, format="json")
    assert bad.status_code == 400
    assert bad.json()["settings"] == {"customer_id": ["Must be a 10-digit customer ID, such as 123-456-7890."]}

    created = api.post("/api/v1/outputs/", {**body, "settings": account.settings}, format="json")
    assert created.status_code == 201, created.json()
    assert sorted(created.json()["secrets_set"]) == ["client_secret", "developer_token", "refresh_token"]
    shown = api.get(f"/api/v1/outputs/{created.json()['id']}/").content.decode()
    assert DEV not in shown and CLIENT_SECRET not in shown and REFRESH not in shown
    assert api.post(f"/api/v1/outputs/{created.json()['id']}/check/").json()["status"] == "ok"

    audience = StaticAudienceFactory(name="Potential Parisians")
    add_members(audience, emails=["ada@example.com", "bob@example.com"])
    connection = api.post(
        "/api/v1/connections/",
        {"audience": audience.pk, "output": created.json()["id"], "settings": CONNECTION},
        format="json",
    )
    assert connection.status_code == 201, connection.json()
    assert drain(connection.json()["id"]).accepted == 2
    verified = api.post(f"/api/v1/connections/{connection.json()['id']}/verify/").json()
    assert verified["status"] == "ok"
    assert held(sandbox)["count"] == 2
