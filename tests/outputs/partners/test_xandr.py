"""AppNexus / Xandr against the partner sandbox: real HTTP, the sandbox's own view of the segment checked.

Every test that sends runs in both file formats, the sandbox's member set up to read only that one.
"""

import io

import fastavro
import pytest

from outputs.partners.base import Account, Message, Outcome
from outputs.partners.registry import get
from outputs.partners.xandr import adapter as xandr
from outputs.partners.xandr import files as xandr_files

IDFA = "aebe52e7-03ee-455a-b3c4-e57283966239"
AAID = "38400000-8cf0-11bd-b23e-10b96e40000d"
MEMBER, SEGMENT = 958, 10000
PASSWORD = "Wr0ng-n0t-this-0ne-s3cret"


@pytest.fixture(autouse=True)
def _fresh_xandr_state():
    xandr._tokens.clear()
    xandr._pending.clear()
    yield
    xandr._tokens.clear()
    xandr._pending.clear()


@pytest.fixture
def partner():
    p = get("xandr")
    p.job_wait = 5.0
    yield p
    del p.job_wait  # back to the class default


@pytest.fixture(params=["avro", "legacy"])
def account(sandbox, request):
    sandbox.xandr_account("relay-api", PASSWORD, MEMBER, file_format=request.param)
    sandbox.xandr_segment(MEMBER, SEGMENT)
    settings = {"username": "relay-api", "password": PASSWORD, "member_id": MEMBER, "file_format": request.param}
    return Account(settings, sandbox.xandr_url())


def add(key, value=IDFA, identity_type="ios_idfa"):
    return Message(key, "add", identity_type, value, "Potential Parisians")


def remove(key, value=IDFA, identity_type="ios_idfa"):
    return Message(key, "remove", identity_type, value, "Potential Parisians")


def segment(sandbox, segment_id=SEGMENT):
    return sandbox.xandr_segment_state(segment_id)


CONNECTION = {"segment_id": SEGMENT}


def test_it_adds_raw_device_ids_to_the_segment(sandbox, partner, account):
    result = partner.send(account, CONNECTION, [add(1), add(2, AAID, "android_aaid")])

    assert result.fault is None
    assert {k: o.status for k, o in result.outcomes.items()} == {1: "accepted", 2: "accepted"}
    held = segment(sandbox)
    assert held["count"] == 2
    assert sorted(held["members"]) == sorted([IDFA, AAID])  # raw, never hashed
    assert [job["phase"] for job in held["jobs"]] == ["completed"]
    assert held["jobs"][0]["num_valid"] == 2


def test_it_removes_device_ids_with_expiration_minus_one(sandbox, partner, account):
    partner.send(account, CONNECTION, [add(1), add(2, AAID, "android_aaid")])

    result = partner.send(account, CONNECTION, [remove(3)])

    assert result.outcomes[3].status == "accepted"
    assert segment(sandbox)["members"] == [AAID]


def test_it_follows_the_job_lifecycle(sandbox, partner, account):
    result = partner.send(account, CONNECTION, [add(1)])

    calls = [(a.method, a.path) for a in result.attempts]
    assert calls[:4] == [
        ("POST", "/xandr/auth"),
        ("GET", "/xandr/segment"),
        ("POST", "/xandr/batch-segment"),
        ("POST", f"/xandr/segment-upload/{segment(sandbox)['jobs'][0]['job_id']}"),
    ]
    assert set(calls[4:]) == {("GET", "/xandr/batch-segment")}  # polled until completed


def test_it_keeps_the_token_between_sends(sandbox, partner, account):
    partner.send(account, CONNECTION, [add(1)])

    result = partner.send(account, CONNECTION, [add(2, AAID, "android_aaid")])

    assert ("POST", "/xandr/auth") not in [(a.method, a.path) for a in result.attempts]
    assert result.outcomes[2].status == "accepted"


def test_it_signs_in_again_once_when_the_token_is_refused(sandbox, partner, account):
    partner.send(account, CONNECTION, [add(1)])
    sandbox.fault(partner="xandr", path="/segment", kind="status", status=401)

    result = partner.send(account, CONNECTION, [add(2, AAID, "android_aaid")])

    calls = [(a.method, a.path, a.status) for a in result.attempts]
    assert calls[:3] == [("GET", "/xandr/segment", 401), ("POST", "/xandr/auth", 200), ("GET", "/xandr/segment", 200)]
    assert result.outcomes[2].status == "accepted"


def test_it_faults_on_a_wrong_password(sandbox, partner, account):
    wrong = Account({**account.settings, "password": "not-the-password"}, account.base_url)

    result = partner.send(wrong, CONNECTION, [add(1)])

    assert result.outcomes == {}
    assert result.fault.kind == "credentials"
    assert result.fault.message == "Xandr refused the username and password of this output."
    assert result.fault.hint == (
        "Check the username and password of this output; the user needs API access to Xandr "
        "(your Xandr representative can enable it)."
    )


def test_it_faults_when_the_user_is_revoked_after_signing_in(sandbox, partner, account):
    partner.send(account, CONNECTION, [add(1)])
    sandbox.revoke("xandr", "relay-api")

    result = partner.send(account, CONNECTION, [add(2, AAID, "android_aaid")])

    assert result.fault.kind == "credentials"
    assert result.fault.message == "Xandr refused the username and password of this output."
    assert [(a.path, a.status) for a in result.attempts] == [("/xandr/segment", 401), ("/xandr/auth", 401)]


def test_it_faults_when_the_segment_does_not_exist(sandbox, partner, account):
    result = partner.send(account, {"segment_id": 424242}, [add(1)])

    assert result.fault.kind == "destination"
    assert result.fault.message == "Xandr segment 424242 was not found in member 958."
    assert result.fault.hint == (
        "Check the segment ID of this connection: it must be a segment of member 958 (Audience > Segments in Xandr)."
    )
    assert segment(sandbox)["jobs"] == []  # nothing uploaded


def test_it_faults_when_the_user_has_no_access_to_the_member(sandbox, partner, account):
    other = Account({**account.settings, "member_id": 1234}, account.base_url)

    result = partner.send(other, CONNECTION, [add(1)])

    assert result.fault.kind == "account"
    assert result.fault.message == "Xandr does not allow this user to upload segment data for member 1234."
    assert result.fault.hint == (
        "Check the member ID of this output, and ask your Xandr representative to give this user access to "
        "member 1234 and to enable the Batch Segment Service for it."
    )


def test_it_retries_on_429_with_retry_after(sandbox, partner, account):
    sandbox.fault(partner="xandr", path="/batch-segment", kind="status", status=429, retry_after=7)

    result = partner.send(account, CONNECTION, [add(1), add(2, AAID, "android_aaid")])

    assert result.fault is None
    for outcome in result.outcomes.values():
        assert outcome.status == "retry"
        assert (
            outcome.reason
            == "Xandr asked us to slow down: You have exceeded your request limit, please wait and try again."
        )
        assert outcome.retry_after == 7


def test_it_retries_on_a_server_error(sandbox, partner, account):
    sandbox.fault(partner="xandr", path="/segment-upload", kind="status", status=503)

    result = partner.send(account, CONNECTION, [add(1)])

    assert result.outcomes[1].status == "retry"
    assert result.outcomes[1].reason == "Xandr answered with HTTP 503, a temporary error."


def test_it_retries_on_a_timeout(sandbox, partner, account, settings, monkeypatch):
    settings.PARTNER_HTTP_TIMEOUT = 0.5
    sandbox.fault(partner="xandr", path="/batch-segment", kind="timeout", delay=2)

    result = partner.send(account, CONNECTION, [add(1)])

    assert result.outcomes[1].status == "retry"
    assert result.outcomes[1].reason == "The request timed out after 0.5 seconds."


def test_it_retries_on_a_dropped_connection(sandbox, partner, account):
    sandbox.fault(partner="xandr", path="/segment-upload", kind="drop")

    result = partner.send(account, CONNECTION, [add(1)])

    host = sandbox.base_url.removeprefix("http://")
    assert result.outcomes[1].status == "retry"
    assert result.outcomes[1].reason == f"A connection error occurred: could not reach {host}."


def test_it_checks_a_job_still_processing_again_instead_of_uploading_twice(sandbox, partner, account):
    partner.job_wait = 0  # one look at the job, then answer

    first = partner.send(account, CONNECTION, [add(1), add(2, AAID, "android_aaid")])

    job_id = segment(sandbox)["jobs"][0]["job_id"]
    assert {o.status for o in first.outcomes.values()} == {"retry"}
    assert first.outcomes[1].reason == (
        f"Xandr is still processing upload job {job_id}; the upload will be checked again."
    )

    second = partner.send(account, CONNECTION, [add(1), add(2, AAID, "android_aaid")])

    assert {o.status for o in second.outcomes.values()} == {"accepted"}
    assert ("POST", "/xandr/batch-segment") not in [(a.method, a.path) for a in second.attempts]
    assert len(segment(sandbox)["jobs"]) == 1
    assert segment(sandbox)["count"] == 2


def test_it_uploads_again_when_xandr_no_longer_knows_a_pending_job(sandbox, partner, account):
    partner.job_wait = 0
    partner.send(account, CONNECTION, [add(1)])
    sandbox.reset()  # the job (and the token) are gone on Xandr's side
    sandbox.xandr_account("relay-api", PASSWORD, MEMBER)
    sandbox.xandr_segment(MEMBER, SEGMENT)
    partner.job_wait = 5.0

    result = partner.send(account, CONNECTION, [add(1)])

    assert result.outcomes[1].status == "accepted"
    assert segment(sandbox)["members"] == [IDFA]


def test_it_rejects_the_lines_the_job_names_as_invalid(sandbox, partner, account):
    result = partner.send(account, CONNECTION, [add(1), add(2, "not-a-device-id")])

    assert result.outcomes[1].status == "accepted"
    assert result.outcomes[2].status == "rejected"
    assert result.outcomes[2].reason == "Xandr has not seen this device ID, so it cannot be added to the segment."
    assert segment(sandbox)["members"] == [IDFA]


def test_it_rejects_identity_types_xandr_does_not_take(sandbox, partner, account):
    result = partner.send(account, CONNECTION, [add(1), add(2, "someone@example.com", "email")])

    assert result.outcomes[1].status == "accepted"
    assert result.outcomes[2].reason == "Xandr accepts only iOS (IDFA) and Android (AAID) advertising IDs, not email."


def test_it_keeps_secrets_out_of_attempts_and_sentences(sandbox, partner, account):
    partner.send(account, CONNECTION, [add(1)])
    sandbox.revoke("xandr", "relay-api")
    results = [partner.send(account, CONNECTION, [add(2)])]
    xandr._tokens.clear()
    sandbox.xandr_account("relay-api", PASSWORD, MEMBER)
    results.append(partner.send(account, CONNECTION, [add(3), add(4, "not-a-device-id")]))

    redacted_seen = False
    for result in results:
        texts = [a.path + a.response_excerpt for a in result.attempts]
        texts += [o.reason for o in result.outcomes.values()]
        if result.fault:
            texts += [result.fault.message, result.fault.hint]
        joined = "\n".join(texts)
        assert PASSWORD not in joined
        assert "hbapi:" not in joined  # the sandbox's tokens start so
        redacted_seen = redacted_seen or any("[redacted]" in a.response_excerpt for a in result.attempts)
    assert redacted_seen  # the sign-in answer was recorded, with its token blanked


def test_it_verifies_the_credentials_and_the_segment(sandbox, partner, account):
    checks = partner.verify(account, CONNECTION)

    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("credentials", "ok", "Signed in to Xandr as relay-api."),
        ("segment", "ok", f"Segment {SEGMENT} (Segment {SEGMENT}) exists in member 958."),
    ]


def test_it_verify_names_a_missing_segment(sandbox, partner, account):
    checks = partner.verify(account, {"segment_id": 777})

    assert checks[1].status == "failing"
    assert checks[1].detail == "Xandr segment 777 was not found in member 958."
    assert checks[1].hint.startswith("Check the segment ID of this connection")


def test_it_verify_stops_at_bad_credentials(sandbox, partner, account):
    wrong = Account({**account.settings, "password": "nope"}, account.base_url)

    checks = partner.verify(wrong, CONNECTION)

    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("credentials", "failing", "Xandr refused the username and password of this output."),
    ]


def test_it_declares_interval_delivery_of_raw_device_ids(sandbox):
    partner = get("xandr")

    assert partner.delivery.describe() == "interval: every 15 minutes or when 50,000 messages are waiting"
    assert set(partner.identity_types) == {"ios_idfa", "android_aaid"}
    assert all(partner.identity_types[t](IDFA) == IDFA for t in partner.identity_types)
    assert partner.batch_size == 100_000 and partner.max_concurrency == 1
    assert [s.name for s in partner.output_settings] == ["username", "password", "member_id", "file_format"]
    assert [s.name for s in partner.output_settings if s.secret] == ["password"]
    assert partner.partner_count(Account({}), CONNECTION) is None


def test_it_reports_a_file_in_another_format_than_the_members(sandbox, partner, account):
    other = "legacy" if account.settings["file_format"] == "avro" else "avro"
    sandbox.xandr_account("relay-api", PASSWORD, MEMBER, file_format=other)  # Xandr reads the other format

    result = partner.send(account, CONNECTION, [add(1)])

    label = {"avro": "BSS Avro", "legacy": "legacy BSS"}[account.settings["file_format"]]
    job_id = result.attempts[3].path.rsplit("/", 1)[1]
    assert result.outcomes[1] == Outcome(
        "retry",
        f"Xandr could not process upload job {job_id} (validating-error), so the batch will be uploaded again; "
        f"if this repeats, check that the file format of this output ({label}) is the one Xandr set up for "
        "member 958.",
    )
    assert segment(sandbox)["members"] == []


def test_it_writes_one_deflated_avro_record_per_device_id():
    entries = [
        xandr_files.Entry(IDFA, "ios_idfa", 0),
        xandr_files.Entry(AAID, "android_aaid", -1),
        xandr_files.Entry(IDFA, "ios_idfa", -1),
    ]

    reader = fastavro.reader(io.BytesIO(xandr_files.render("avro", SEGMENT, entries)), return_record_name=True)

    assert reader.codec == "deflate"
    defaults = {"code": "", "member_id": 0, "timestamp": 0, "value": 0}
    assert list(reader) == [
        {
            "uid": ("device_id", {"id": IDFA, "domain": "idfa"}),
            "segments": [{"id": SEGMENT, "expiration": 0, **defaults}, {"id": SEGMENT, "expiration": -1, **defaults}],
        },
        {
            "uid": ("device_id", {"id": AAID, "domain": "aaid"}),
            "segments": [{"id": SEGMENT, "expiration": -1, **defaults}],
        },
    ]


def test_outputs_without_a_file_format_keep_the_legacy_one_and_new_ones_get_avro():
    from outputs.schema import clean_settings

    assert xandr_files.file_format({"username": "relay-api", "member_id": MEMBER}) == "legacy"
    new = clean_settings(get("xandr").output_settings, {"username": "u", "password": "p", "member_id": MEMBER})
    assert new["file_format"] == "avro"
