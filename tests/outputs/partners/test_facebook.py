"""Facebook Custom Audiences against the partner sandbox: real HTTP, the audience checked on the sandbox side."""

import datetime as dt
import hashlib
import json

import pytest
import requests
from django.utils import timezone

from outputs.partners.base import Account, Message, raw, sha256_phone
from outputs.partners.facebook.adapter import FacebookCustomAudiences, hashed_email, madid
from outputs.partners.registry import get
from outputs.schema import clean_value

TOKEN = "EAAB-sandbox-s3cret-token-value"
ACT = "act_1001"
AUDIENCE = "23850000000000001"
IDFA = "aebe52e7-03ee-455a-b3c4-e57283966239"
CONNECTION = {"audience_id": AUDIENCE}
TEST_EMAIL_SHA256 = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"  # sha256("test@example.com")
JOHN = "836f82db99121b3481011f16b49dfa5fbc714a0d1b1b9f784a1ebbbf5b39577f"  # sha256("john.doe@example.com")
ADA = "cfe00dde46ef942601ffafb9e2825e802858b460e586b8305b344c1eb826357d"  # sha256("ada@example.org")
# Vectors built by hand from the Marketing API SDK's rule (facebook-python-business-sdk,
# facebook_business/adobjects/helpers/customaudiencemixin.py, format_params for EMAIL_SHA256:
# user.strip(" \t\r\n\0\x0B.").lower(), then SHA-256 of the UTF-8 bytes).
SDK_EMAIL_VECTORS = [
    ("test@example.com", TEST_EMAIL_SHA256),
    ("  Test@Example.COM ", TEST_EMAIL_SHA256),
    (".john.doe@example.com", JOHN),
    ("john.doe@example.com.", JOHN),
    ("\t..John.Doe@Example.com..\r\n", JOHN),
    ("\x0bada@example.org\x00", ADA),
    # A form feed is not in the SDK's set: it stays, and so the hash differs.
    ("\x0cada@example.org", "edb35154c299fe2a91402d17978133546f56d2118dcb9929edcbe02c82d8bdd7"),
    ("ÉLODIE@exemple.fr", "f34116fa1fa2ab3840367c97ac2fc11e9e811bc3c424a1361abfc3d719c18e8c"),
]


def setup(sandbox, **token_flags):
    sandbox.reset()
    sandbox.facebook_token(TOKEN, ACT, **token_flags)
    sandbox.facebook_audience(AUDIENCE, ACT, name="Potential Parisians")


@pytest.fixture
def partner():
    return get("facebook")


@pytest.fixture
def account(sandbox):
    setup(sandbox)
    return Account(
        {"access_token": TOKEN, "ad_account_id": ACT, "api_version": "v21.0"}, sandbox.facebook_url(version=None)
    )


def audience(sandbox):
    return sandbox.facebook_audience_state(AUDIENCE)


def add(key, value, identity_type="email"):
    return Message(key, "add", identity_type, value, "Potential Parisians")


def remove(key, value, identity_type="email"):
    return Message(key, "remove", identity_type, value, "Potential Parisians")


def emails(count, start=0):
    return [add(i, f"person{i}@example.com") for i in range(start, start + count)]


# --- normalization -----------------------------------------------------------------------------------------


def test_it_hashes_emails_to_the_published_test_vector():
    assert hashlib.sha256(b"test@example.com").hexdigest() == TEST_EMAIL_SHA256
    assert hashed_email("test@example.com") == TEST_EMAIL_SHA256


@pytest.mark.parametrize(("value", "expected"), SDK_EMAIL_VECTORS)
def test_it_hashes_emails_as_the_marketing_api_sdk_does(value, expected):
    assert hashed_email(value) == expected


def test_it_uploads_an_address_with_a_leading_dot_as_facebook_matches_it(sandbox, partner, account):
    # We store ".john.doe@example.com" as given; the SDK (and Facebook's matching) drops the dot.
    result = partner.send(account, CONNECTION, [add(1, ".john.doe@example.com")])

    assert result.outcomes[1].status == "accepted"
    assert list(audience(sandbox)["members"]) == [JOHN]


def test_it_hashes_phone_numbers_as_digits_with_the_country_code():
    digits = hashlib.sha256(b"16505551212").hexdigest()

    assert sha256_phone("+16505551212") == digits
    assert sha256_phone("+1 (650) 555-1212") == digits


def test_it_sends_mobile_advertiser_ids_raw_and_lower_case():
    assert madid("AEBE52E7-03EE-455A-B3C4-E57283966239") == IDFA
    assert madid(IDFA) == IDFA


# --- delivery ----------------------------------------------------------------------------------------------


def test_it_adds_hashed_emails_and_phones_and_raw_mobile_ids(sandbox, partner, account):
    messages = [
        add(1, "test@example.com"),
        add(2, "+16505551212", "mobile_number"),
        add(3, IDFA, "ios_idfa"),
        add(4, "38400000-8cf0-11bd-b23e-10b96e40000d", "android_aaid"),
    ]

    result = partner.send(account, CONNECTION, messages)

    assert result.fault is None
    assert {k: o.status for k, o in result.outcomes.items()} == dict.fromkeys([1, 2, 3, 4], "accepted")
    held = audience(sandbox)
    assert held["members"] == {
        TEST_EMAIL_SHA256: "EMAIL_SHA256",
        hashlib.sha256(b"16505551212").hexdigest(): "PHONE_SHA256",
        IDFA: "MOBILE_ADVERTISER_ID",
        "38400000-8cf0-11bd-b23e-10b96e40000d": "MOBILE_ADVERTISER_ID",
    }
    # one request (one single-batch session) per schema
    assert [(a.method, a.path) for a in result.attempts] == [("POST", f"/facebook/v21.0/{AUDIENCE}/users")] * 3
    sessions = held["sessions"].values()
    assert sorted(s["num_received"] for s in sessions) == [1, 1, 2]
    assert all(s["last_batch_flag"] and s["batch_seqs"] == [1] and s["operation"] == "add" for s in sessions)


def test_it_removes_members_with_delete(sandbox, partner, account):
    partner.send(account, CONNECTION, [add(1, "test@example.com"), add(2, "other@example.com")])

    result = partner.send(account, CONNECTION, [remove(3, "test@example.com")])

    assert result.outcomes[3].status == "accepted"
    assert [a.method for a in result.attempts] == ["DELETE"]
    assert list(audience(sandbox)["members"]) == [hashed_email("other@example.com")]


def test_it_sends_ten_thousand_records_in_one_request(sandbox, partner, account):
    result = partner.send(account, CONNECTION, emails(10_000))

    assert len(result.attempts) == 1
    assert sum(o.status == "accepted" for o in result.outcomes.values()) == 10_000
    assert audience(sandbox)["count"] == 10_000


def test_it_keeps_requests_under_the_limit_the_sandbox_enforces(sandbox, partner, account):
    hashes = [hashed_email(f"person{i}@example.com") for i in range(10_001)]
    direct = requests.post(
        f"{sandbox.facebook_url()}/{AUDIENCE}/users",
        data={"payload": json.dumps({"schema": "EMAIL_SHA256", "data": hashes}), "access_token": TOKEN},
        timeout=30,
    )
    assert direct.status_code == 400
    assert direct.json()["error"]["message"] == (
        "(#100) Too many records in this request: 10001. Send at most 10000 records per request."
    )

    assert partner.batch_size == 10_000  # what the engine hands us at most
    result = partner.send(account, CONNECTION, emails(10_001))  # and a larger batch is split anyway

    assert [a.status for a in result.attempts] == [200, 200]
    assert sum(o.status == "accepted" for o in result.outcomes.values()) == 10_001
    assert audience(sandbox)["count"] == 10_001


def test_it_rejects_the_entries_facebook_names_invalid(sandbox, account):
    class Unhashed(FacebookCustomAudiences):
        identity_types = {**FacebookCustomAudiences.identity_types, "email": raw}

    result = Unhashed().send(account, CONNECTION, [add(1, TEST_EMAIL_SHA256), add(2, "not-hashed@example.com")])

    assert result.outcomes[1].status == "accepted"
    assert result.outcomes[2].status == "rejected"
    assert result.outcomes[2].reason == "Facebook marked this entry invalid (EMAIL_SHA256)."
    assert list(audience(sandbox)["members"]) == [TEST_EMAIL_SHA256]


def test_it_accepts_but_flags_the_invalid_entries_facebook_does_not_name(sandbox, account):
    class Unhashed(FacebookCustomAudiences):
        identity_types = {**FacebookCustomAudiences.identity_types, "email": raw}

    bad = [add(i, f"plain{i}@example.com") for i in range(12)]  # the sandbox names 10 of them, like Facebook
    result = Unhashed().send(account, CONNECTION, [*bad, add(99, TEST_EMAIL_SHA256)])

    rejected = [k for k, o in result.outcomes.items() if o.status == "rejected"]
    assert len(rejected) == 10
    flagged = {k: o for k, o in result.outcomes.items() if o.status == "accepted"}
    assert len(flagged) == 3 and 99 in flagged
    assert {o.reason for o in flagged.values()} == {
        "Facebook reported 2 invalid entries in this request without naming them."
    }


def test_it_rejects_only_the_request_facebook_refuses(sandbox, partner, account):
    sandbox.fault(partner="facebook", path="/users", kind="status", status=400)

    result = partner.send(account, CONNECTION, [*emails(2), add(9, IDFA, "ios_idfa")])

    assert result.fault is None
    assert {result.outcomes[k].reason for k in (0, 1)} == {"Facebook rejected the request: Invalid parameter."}
    assert result.outcomes[9].status == "accepted"  # the other schema's request still went
    assert list(audience(sandbox)["members"]) == [IDFA]


def test_it_rejects_identity_types_facebook_does_not_take(sandbox, partner, account):
    result = partner.send(account, CONNECTION, [add(1, "test@example.com"), add(2, "C-1234", "customer_id")])

    assert result.outcomes[1].status == "accepted"
    assert result.outcomes[2].reason == "Facebook Custom Audiences does not take customer_id identities."


# --- faults ------------------------------------------------------------------------------------------------


def test_it_faults_on_a_token_facebook_does_not_know(sandbox, partner, account):
    wrong = Account({**account.settings, "access_token": "EAAB-not-a-token"}, account.base_url)

    result = partner.send(wrong, CONNECTION, emails(2))

    assert result.outcomes == {}
    assert result.fault.kind == "credentials"
    assert result.fault.message == "Facebook did not accept the access token of this output."
    assert result.fault.hint == (
        "Generate a new system-user token with the ads_management permission in Business Settings → "
        "System users and paste it into this output."
    )


def test_it_faults_on_a_revoked_token_as_expired(sandbox, partner, account):
    sandbox.revoke("facebook", TOKEN)

    result = partner.send(account, CONNECTION, emails(2))

    assert result.fault.kind == "credentials"
    assert f"{result.fault.message} {result.fault.hint}" == (
        "The Facebook access token has expired. Generate a new system-user token in Business Settings → "
        "System users and paste it into this output."
    )


def test_it_faults_on_a_missing_audience(sandbox, partner, account):
    sandbox.delete_facebook_audience(AUDIENCE)

    result = partner.send(account, CONNECTION, emails(2))

    assert result.fault.kind == "destination"
    assert result.fault.message == f"Facebook audience {AUDIENCE} does not exist, or this token cannot see it."
    assert result.fault.hint == (
        "Check the audience ID of this connection, and that ad account act_1001 owns the audience "
        "or has it shared with it."
    )


def test_it_faults_on_a_flagged_audience(sandbox, partner, account):
    sandbox.facebook_audience(AUDIENCE, ACT, name="Potential Parisians", flagged=True)

    result = partner.send(account, CONNECTION, emails(2))

    assert result.fault.kind == "destination"
    assert result.fault.message == (
        f"Facebook has blocked uploads to audience {AUDIENCE}: it is flagged for restricted content."
    )
    assert result.fault.hint == (
        "Open Audiences in Ads Manager, resolve or appeal the restrictions on this audience, "
        "or create a new audience and connect it instead."
    )


def test_it_faults_when_the_custom_audience_terms_are_not_accepted(sandbox, partner, account):
    setup(sandbox, tos_accepted=False)

    result = partner.send(account, CONNECTION, emails(2))

    assert result.fault.kind == "account"
    assert result.fault.message == "The Custom Audience terms are not accepted for ad account act_1001."
    assert result.fault.hint == (
        "Someone with admin access to the ad account must accept the Custom Audience terms for ad account "
        "act_1001 at https://www.facebook.com/customaudiences/app/tos/?act=1001, then resume this connection."
    )


def test_it_faults_when_the_token_has_no_admin_access(sandbox, partner, account):
    setup(sandbox, admin=False)

    result = partner.send(account, CONNECTION, emails(2))

    assert result.fault.kind == "account"
    assert result.fault.message == "The Facebook token has no permission to manage audiences of ad account act_1001."
    assert result.fault.hint == (
        "In Business Settings, assign ad account act_1001 and this audience to the system user with full "
        "(admin) control, and give its token the ads_management permission."
    )


def test_it_faults_when_the_ad_account_has_no_verified_business(sandbox, partner, account):
    setup(sandbox, business_verified=False)

    result = partner.send(account, CONNECTION, emails(2))

    assert result.fault.kind == "account"
    assert result.fault.message == (
        "Facebook requires ad account act_1001 to belong to a verified business for custom audiences."
    )
    assert result.fault.hint == (
        "Move ad account act_1001 into a business portfolio (Business Manager) and complete business "
        "verification, then assign it to the system user of this token."
    )


def test_it_waits_the_minutes_the_usage_header_gives_on_a_429(sandbox, partner, account):
    sandbox.fault(partner="facebook", path="/users", kind="status", status=429, retry_after=30)

    result = partner.send(account, CONNECTION, [*emails(2), add(9, IDFA, "ios_idfa")])

    assert result.fault is None
    assert len(result.attempts) == 1  # the other schema waits too
    for outcome in result.outcomes.values():
        assert outcome.status == "retry"
        assert outcome.reason == (
            "Facebook asked us to slow down for 1 minute: There have been too many calls to this ad-account. "
            "Wait a bit and try again."
        )
        assert outcome.retry_after == 60  # the header's whole minute, not a Retry-After Facebook never sends


def test_it_waits_what_facebook_says_when_the_ad_account_is_throttled(sandbox, partner, account):
    sandbox.facebook_rate_limit(ACT, 2)
    first = partner.send(account, CONNECTION, emails(1))
    second = partner.send(account, CONNECTION, emails(1, start=1))
    sandbox.facebook_advance(45)  # the hour's first call leaves the window in 15 minutes

    throttled = partner.send(account, CONNECTION, [*emails(2, start=2), add(9, IDFA, "ios_idfa")])

    assert {o.status for r in (first, second) for o in r.outcomes.values()} == {"accepted"}
    assert throttled.fault is None
    assert {(o.status, o.reason, o.retry_after) for o in throttled.outcomes.values()} == {
        (
            "retry",
            "Facebook asked us to slow down for 15 minutes: There have been too many calls to this ad-account. "
            "Wait a bit and try again.",
            900,
        )
    }
    assert audience(sandbox)["count"] == 2

    sandbox.facebook_advance(15)
    retried = partner.send(account, CONNECTION, [*emails(2, start=2), add(9, IDFA, "ios_idfa")])

    assert {o.status for o in retried.outcomes.values()} == {"accepted"}
    assert audience(sandbox)["count"] == 5  # nothing was lost to the throttle


@pytest.mark.parametrize("code", [4, 17, 32, 613, 80000, 80004, 80014])
def test_it_retries_every_throttling_code_facebook_documents(sandbox, partner, account, code):
    body = {"error": {"message": f"(#{code}) Rate limited.", "type": "OAuthException", "code": code}}
    sandbox.fault(partner="facebook", path="/users", kind="status", status=400, body=body)

    result = partner.send(account, CONNECTION, emails(1))

    assert (result.outcomes[0].status, result.outcomes[0].retry_after) == ("retry", 60)
    assert result.outcomes[0].reason == "Facebook asked us to slow down: Rate limited."


def test_it_retries_on_a_server_error(sandbox, partner, account):
    sandbox.fault(partner="facebook", path="/users", kind="status", status=503)

    result = partner.send(account, CONNECTION, emails(2))

    assert {o.reason for o in result.outcomes.values()} == {"Facebook answered with HTTP 503, a temporary error."}
    assert {o.status for o in result.outcomes.values()} == {"retry"}


def test_it_retries_on_a_timeout(sandbox, partner, account, settings, monkeypatch):
    settings.PARTNER_HTTP_TIMEOUT = 0.5
    sandbox.fault(partner="facebook", path="/users", kind="timeout", delay=2)

    result = partner.send(account, CONNECTION, emails(2))

    assert {(o.status, o.reason) for o in result.outcomes.values()} == {
        ("retry", "The request timed out after 0.5 seconds.")
    }


def test_it_retries_on_a_dropped_connection(sandbox, partner, account):
    sandbox.fault(partner="facebook", path="/users", kind="drop")

    result = partner.send(account, CONNECTION, emails(2))

    host = sandbox.base_url.removeprefix("http://")
    assert {(o.status, o.reason) for o in result.outcomes.values()} == {
        ("retry", f"A connection error occurred: could not reach {host}.")
    }


def test_it_keeps_the_token_out_of_attempts_and_sentences(sandbox, partner, account):
    results = [partner.send(account, CONNECTION, emails(2))]
    sandbox.facebook_audience(AUDIENCE, ACT, name="Potential Parisians", flagged=True)
    results.append(partner.send(account, CONNECTION, emails(2)))
    sandbox.fault(partner="facebook", path="/users", kind="status", status=429)
    results.append(partner.send(account, CONNECTION, emails(2)))
    sandbox.revoke("facebook", TOKEN)
    results.append(partner.send(account, CONNECTION, emails(2)))

    for result in results:
        texts = [a.path + " " + a.response_excerpt for a in result.attempts]
        texts += [o.reason for o in result.outcomes.values()]
        if result.fault:
            texts += [result.fault.message, result.fault.hint]
        assert TOKEN not in "\n".join(texts)
    checks = partner.verify(account, CONNECTION)
    assert TOKEN not in " ".join(c.detail + c.hint for c in checks)


# --- verification ------------------------------------------------------------------------------------------


def test_it_verifies_token_terms_and_audience(sandbox, partner, account):
    partner.send(account, CONNECTION, emails(3))

    checks = partner.verify(account, CONNECTION)

    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("credentials", "ok", "The token can read ad account act_1001."),
        ("terms", "ok", "The Custom Audience terms are accepted for ad account act_1001."),
        (
            "audience",
            "ok",
            f"Audience Potential Parisians ({AUDIENCE}) exists and accepts uploads; Facebook estimates at least 3 "
            "people (an approximate lower bound, not an exact count).",
        ),
    ]
    assert partner.partner_count(account, CONNECTION) == 3


def test_it_verify_reports_terms_business_and_admin_access(sandbox, partner, account):
    setup(sandbox, tos_accepted=False, business_verified=False, admin=False)

    checks = {c.name: c for c in partner.verify(account, CONNECTION)}

    assert checks["credentials"].status == "ok"
    assert checks["terms"].status == "failing"
    assert checks["terms"].hint.endswith(
        "at https://www.facebook.com/customaudiences/app/tos/?act=1001, then resume this connection."
    )
    assert (checks["business"].status, checks["business"].detail) == (
        "failing",
        "Ad account act_1001 does not belong to a business portfolio.",
    )
    assert (checks["audience"].status, checks["audience"].detail) == (
        "failing",
        f"This token may not change the members of audience {AUDIENCE}.",
    )


def test_it_verify_reports_a_flagged_audience(sandbox, partner, account):
    sandbox.facebook_audience(AUDIENCE, ACT, name="Potential Parisians", flagged=True)

    audience_check = partner.verify(account, CONNECTION)[-1]

    assert (audience_check.status, audience_check.detail) == (
        "failing",
        f"Audience Potential Parisians ({AUDIENCE}) is flagged and blocks uploads.",
    )


def test_it_verify_warns_while_the_ad_account_is_throttled(sandbox, partner, account):
    sandbox.facebook_rate_limit(ACT, 0)

    (check,) = partner.verify(account, CONNECTION)

    assert (check.name, check.status) == ("credentials", "warning")
    assert check.detail == (
        "Could not check the credentials: Facebook asked us to slow down for 60 minutes: There have been too many "
        "calls to this ad-account. Wait a bit and try again."
    )
    assert check.hint == "This is usually temporary; verification runs again on its schedule."


def test_it_verify_reports_a_missing_audience_and_a_bad_token(sandbox, partner, account):
    checks = partner.verify(account, {"audience_id": "999"})
    assert (checks[-1].name, checks[-1].status, checks[-1].detail) == (
        "audience",
        "failing",
        "Facebook audience 999 does not exist, or this token cannot see it.",
    )

    sandbox.revoke("facebook", TOKEN)
    checks = partner.verify(account, CONNECTION)
    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("credentials", "failing", "The Facebook access token has expired."),
    ]
    assert partner.partner_count(account, CONNECTION) is None


# --- declarations ------------------------------------------------------------------------------------------


def test_it_validates_its_settings(partner):
    settings = {s.name: s for s in partner.output_settings + partner.connection_settings}

    with pytest.raises(ValueError, match=r"^Must look like act_1234567890 \(the ad account ID with act_\)\.$"):
        clean_value(settings["ad_account_id"], "1001")
    with pytest.raises(ValueError, match=r"^Must look like v21\.0\.$"):
        clean_value(settings["api_version"], "21")
    with pytest.raises(ValueError, match=r"^Must be the numeric ID of the custom audience\.$"):
        clean_value(settings["audience_id"], "abc")
    assert clean_value(settings["api_version"], "") == "v21.0"
    assert [s.name for s in partner.output_settings if s.secret] == ["access_token"]
    assert partner.delivery.mode == "realtime"


def test_it_sends_the_upload_session_facebook_requires(sandbox, partner, account):
    result = partner.send(account, CONNECTION, emails(2))

    assert {o.status for o in result.outcomes.values()} == {"accepted"}
    (session,) = audience(sandbox)["sessions"].values()
    assert (session["batch_seqs"], session["last_batch_flag"], session["estimated_num_total"]) == ([1], True, 2)


# --- through the engine ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_throttled_batch_waits_what_the_header_says_then_arrives_whole(sandbox, account):
    from audiences.ingest import ProfileInput, upsert_profiles
    from audiences.models import Audience
    from audiences.refresh import refresh_audience
    from connections import services
    from connections.drain import drain
    from connections.models import OutboxMessage
    from outputs.models import Output

    upsert_profiles([ProfileInput(f"u{i}", {"tier": "gold"}, [("email", f"u{i}@example.com")]) for i in range(3)])
    members = Audience.objects.create(name="Gold", criteria={"user": "tier", "op": "eq", "value": "gold"})
    refresh_audience(members)
    output = Output(kind="facebook", name="Facebook", base_url=account.base_url, settings=dict(account.settings))
    output.set_secrets({"access_token": TOKEN})
    output.save()
    conn = services.connect(members, output, CONNECTION)
    sandbox.facebook_rate_limit(ACT, 0)  # the ad account has used its hour: Facebook says 60 minutes

    started = timezone.now()
    report = drain(conn.pk)

    assert (report.retried, report.accepted) == (3, 0)
    for message in OutboxMessage.objects.filter(connection=conn):
        assert message.state == "pending"
        assert (
            started + dt.timedelta(minutes=60) <= message.next_attempt_at <= timezone.now() + dt.timedelta(minutes=61)
        )
        assert message.last_error.startswith("Facebook asked us to slow down for 60 minutes: ")
    assert drain(conn.pk).messages == 0  # not due yet

    sandbox.facebook_rate_limit(ACT, None)
    OutboxMessage.objects.filter(connection=conn).update(next_attempt_at=timezone.now())
    assert drain(conn.pk).accepted == 3
    assert set(audience(sandbox)["members"]) == {hashed_email(f"u{i}@example.com") for i in range(3)}
