import gzip
import io

import fastavro
import pytest
import requests

IDFA = "AEBE52E7-03EE-455A-B3C4-E57283966239"
AAID = "97987bca-ae59-4c7d-94ba-ee4f19ab8c21"
CODES = {"idfa": 3, "aaid": 8}

# The user-segments record as https://learn.microsoft.com/en-us/xandr/digital-platform-api/bss-avro-file-format
# shows it, written here for the tests (the sandbox reads each file with the schema in its header).
SEGMENT = {
    "type": "record",
    "name": "segment",
    "fields": [
        {"name": "id", "type": "int", "default": 0},
        {"name": "code", "type": "string", "default": ""},
        {"name": "member_id", "type": "int", "default": 0},
        {"name": "expiration", "type": "int", "default": 0},
        {"name": "timestamp", "type": "long", "default": 0},
        {"name": "value", "type": "int", "default": 0},
    ],
}
DOMAIN = {"type": "enum", "name": "domain", "symbols": ["idfa", "sha1udid", "md5udid", "openudid", "aaid"]}
DEVICE_ID = {
    "type": "record",
    "name": "device_id",
    "fields": [{"name": "id", "type": "string"}, {"name": "domain", "type": DOMAIN}],
}
EID = {
    "type": "record",
    "name": "eid",
    "fields": [{"name": "source", "type": "string"}, {"name": "id", "type": "string"}],
}
USER = {
    "type": "record",
    "name": "user",
    "fields": [
        {"name": "uid", "type": ["long", DEVICE_ID, EID]},
        {"name": "segments", "type": {"type": "array", "items": SEGMENT}},
    ],
}


def _avro(records, schema=USER):
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), records, codec="deflate")
    return out.getvalue()


def _file(fmt, rows):
    """A file in `fmt` of (device ID, domain, segment ID, expiration) rows: legacy lines or one Avro record each."""
    if fmt == "legacy":
        return "".join(f"{uid},{seg}:{exp}^{CODES[domain]}\n" for uid, domain, seg, exp in rows)
    records = [
        {"uid": ("device_id", {"id": uid, "domain": domain}), "segments": [{"id": seg, "expiration": exp}]}
        for uid, domain, seg, exp in rows
    ]
    return _avro(records)


def _login(demo, username="demo", password="demo-pass"):
    return requests.post(
        f"{demo['xandr']['base_url']}/auth", json={"auth": {"username": username, "password": password}}, timeout=5
    )


def _token(demo):
    return _login(demo).json()["response"]["token"]


def _upload(demo, token, file, member_id=1234, compress=False):
    base = demo["xandr"]["base_url"]
    job = requests.post(f"{base}/batch-segment?member_id={member_id}", headers={"Authorization": token}, timeout=5)
    assert job.status_code == 200, job.text
    upload = job.json()["response"]["batch_segment_upload_job"]
    data = file.encode("latin-1") if isinstance(file, str) else file
    posted = requests.post(
        upload["upload_url"],
        data=gzip.compress(data) if compress else data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=5,
    )
    assert posted.json() == {"response": {"segment_upload": {"job_id": upload["job_id"]}, "status": "OK"}}
    return upload["job_id"]


def _poll(demo, token, job_id, member_id=1234):
    response = requests.get(
        f"{demo['xandr']['base_url']}/batch-segment?member_id={member_id}&job_id={job_id}",
        headers={"Authorization": token},
        timeout=5,
    )
    return response.json()["response"]["batch_segment_upload_job"]


def test_it_logs_in_and_refuses_a_bad_password(demo):
    good = _login(demo)
    assert good.status_code == 200
    assert good.json()["response"]["status"] == "OK"
    assert good.json()["response"]["token"]

    bad = _login(demo, password="wrong")
    assert bad.status_code == 401
    assert bad.json()["response"]["error_id"] == "NOAUTH"
    assert bad.json()["response"]["error"] == "No match found for user/pass"


@pytest.mark.parametrize("fmt", ["avro", "legacy"])
def test_it_runs_a_batch_segment_job_through_its_phases(demo, client, fmt):
    token = _token(demo)
    rows = [(IDFA, "idfa", 5678, 1440), (AAID, "aaid", 5678, 0), ("not-a-uuid", "aaid", 5678, 0)]
    job_id = _upload(demo, token, _file(fmt, rows))
    first = _poll(demo, token, job_id)
    assert first["phase"] == "processing"
    assert "num_valid" not in first
    second = _poll(demo, token, job_id)
    assert second["phase"] == "completed"
    assert (second["num_valid"], second["num_valid_user"], second["num_invalid_user"]) == (2, 2, 1)
    assert second["num_invalid_format"] == 0
    assert second["segment_log_lines"] == "added: 5678:2 removed:"

    state = client.xandr_segment_state(5678)
    assert state["count"] == 2
    assert state["members"] == sorted([IDFA, AAID])
    assert [j["job_id"] for j in state["jobs"]] == [job_id]


@pytest.mark.parametrize("fmt", ["avro", "legacy"])
def test_it_removes_users_with_expiration_minus_one(demo, client, fmt):
    token = _token(demo)
    _upload(demo, token, _file(fmt, [(IDFA, "idfa", 5678, 0), (AAID, "aaid", 5678, 0)]))
    job_id = _upload(demo, token, _file(fmt, [(IDFA, "idfa", 5678, -1)]), compress=True)
    _poll(demo, token, job_id)
    assert _poll(demo, token, job_id)["num_valid"] == 1
    assert client.xandr_segment_state(5678)["members"] == [AAID]
    # Removing a user who is not in the segment changes nothing, and shows as a duplicate.
    _upload(demo, token, _file(fmt, [(IDFA, "idfa", 5678, -1)]))
    assert client.xandr_segment_state(5678)["count"] == 1
    assert client.stats()["duplicates"]["xandr"] == 1


def test_it_counts_bad_lines_and_other_members_segments(demo, client):
    client.xandr_segment(999, 4242)
    token = _token(demo)
    job_id = _upload(demo, token, f"{IDFA},4242:0^3\n{IDFA},1111:0^3\nrubbish\n{AAID},5678:0^8\n{AAID},5678:0^8\n")
    _poll(demo, token, job_id)
    job = _poll(demo, token, job_id)
    assert job["num_unauth_segment"] == 1
    assert job["num_invalid_segment"] == 1
    assert job["num_invalid_format"] == 2  # "rubbish" and the duplicated line
    assert job["num_valid"] == 1
    assert "num_invalid_format-rubbish" in job["error_log_lines"]


def test_it_refuses_requests_without_a_valid_token(demo, client):
    base = demo["xandr"]["base_url"]
    anonymous = requests.post(f"{base}/batch-segment?member_id=1234", timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.json()["response"]["error_id"] == "NOAUTH"

    token = _token(demo)
    client.revoke("xandr", "demo")
    revoked = requests.get(f"{base}/segment?id=5678&member_id=1234", headers={"Authorization": token}, timeout=5)
    assert revoked.status_code == 401
    assert revoked.json()["response"]["error_id"] == "NOAUTH"
    assert _login(demo).json()["response"]["error_id"] == "NOAUTH"


def test_it_reads_a_segment_and_reports_a_missing_one(demo):
    token = _token(demo)
    base = demo["xandr"]["base_url"]
    found = requests.get(f"{base}/segment?id=5678&member_id=1234", headers={"Authorization": token}, timeout=5)
    assert found.json()["response"]["segment"]["id"] == 5678
    missing = requests.get(f"{base}/segment?id=1&member_id=1234", headers={"Authorization": token}, timeout=5)
    assert missing.status_code == 404
    other_member = requests.post(f"{base}/batch-segment?member_id=999", headers={"Authorization": token}, timeout=5)
    assert other_member.status_code == 403
    assert other_member.json()["response"]["error_id"] == "UNAUTH"


def _members(client):
    return client.xandr_segment_state(5678)["members"]


@pytest.mark.parametrize("fmt", ["avro", "legacy"])
def test_members_expire_after_their_expiration_unless_added_again(demo, client, fmt):
    token = _token(demo)
    _poll(demo, token, _upload(demo, token, _file(fmt, [(IDFA, "idfa", 5678, 0), (AAID, "aaid", 5678, 1440)])))
    assert _members(client) == sorted([IDFA, AAID])

    client.advance_clock(2)  # the AAID's 1,440 minutes have passed
    assert _members(client) == [IDFA]

    client.advance_clock(170)  # 172 days: the IDFA is added again, which restarts its 180 days
    _poll(demo, token, _upload(demo, token, _file(fmt, [(IDFA, "idfa", 5678, 0)])))
    client.advance_clock(100)  # 272 days after the first upload, 100 after the second
    assert _members(client) == [IDFA]

    client.advance_clock(81)
    assert _members(client) == []


@pytest.mark.parametrize("fmt", ["avro", "legacy"])
def test_an_expiration_of_zero_or_beyond_the_maximum_lasts_180_days(demo, client, fmt):
    token = _token(demo)
    _poll(demo, token, _upload(demo, token, _file(fmt, [(IDFA, "idfa", 5678, 0), (AAID, "aaid", 5678, 365 * 24 * 60)])))

    client.advance_clock(179.9)
    assert _members(client) == sorted([IDFA, AAID])
    client.advance_clock(0.2)
    assert _members(client) == []


def test_the_clock_moves_forward_only_and_a_reset_puts_it_back(client):
    moved = requests.post(f"{client.base_url}/_sandbox/clock", json={"advance_days": 10}, timeout=5)
    assert moved.status_code == 201
    assert moved.json()["offset_days"] == 10

    backwards = requests.post(f"{client.base_url}/_sandbox/clock", json={"advance_days": -1}, timeout=5)
    assert backwards.status_code == 400
    assert backwards.json() == {"error": "'advance_days' must be a number of days from 0 to 36,500."}

    client.reset()
    assert requests.post(f"{client.base_url}/_sandbox/clock", json={}, timeout=5).json()["offset_days"] == 0


def test_it_reads_every_documented_avro_identifier_and_counts_bad_records(demo, client):
    token = _token(demo)
    records = [
        # As fastavro writes the page's Python example: the segment's other fields left to their defaults.
        {"uid": ("device_id", {"id": IDFA, "domain": "idfa"}), "segments": [{"id": 5678, "expiration": 0}]},
        {"uid": 5727816213491965430, "segments": [{"id": 5678, "expiration": -2}]},
        {"uid": ("eid", {"source": "liveramp.com", "id": "XYZ123"}), "segments": [{"id": 5678}]},
        {"uid": ("device_id", {"id": "not-a-uuid", "domain": "aaid"}), "segments": [{"id": 5678}]},
        {"uid": ("device_id", {"id": AAID, "domain": "aaid"}), "segments": []},
        {"uid": ("device_id", {"id": AAID, "domain": "aaid"}), "segments": [{"id": 4242}]},
    ]

    job_id = _upload(demo, token, _avro(records))

    _poll(demo, token, job_id)
    job = _poll(demo, token, job_id)
    assert (job["num_valid"], job["num_invalid_user"], job["num_invalid_format"]) == (3, 1, 1)
    assert job["num_invalid_segment"] == 1
    log = job["error_log_lines"].splitlines()
    assert 'num_invalid_user-{"uid":{"device_id":{"id":"not-a-uuid","domain":"aaid"}},"segments":[' in log[0]
    assert client.xandr_segment_state(5678)["members"] == sorted([IDFA, "5727816213491965430", "XYZ123"])


def test_it_reads_a_uid_told_by_its_field_names(demo, client):
    # A custom schema whose uid is the device_id record itself: the page's Python avro library example names no
    # branch either, and the record's fields say which identifier it is.
    schema = {**USER, "fields": [{"name": "uid", "type": DEVICE_ID}, USER["fields"][1]]}
    token = _token(demo)

    job_id = _upload(demo, token, _avro([{"uid": {"id": AAID, "domain": "aaid"}, "segments": [{"id": 5678}]}], schema))

    _poll(demo, token, job_id)
    assert _poll(demo, token, job_id)["num_valid"] == 1
    assert client.xandr_segment_state(5678)["members"] == [AAID]


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) - 20],  # cut short
        lambda data: data[:-40] + bytes(40),  # a block overwritten
        lambda data: b"Obj\x01" + bytes(200),  # a header that is not one
    ],
)
def test_an_avro_file_that_cannot_be_read_fails_its_job(demo, client, damage):
    token = _token(demo)
    rows = [(f"00000000-0000-4000-8000-{n:012d}", "aaid", 5678, 0) for n in range(50)]

    job_id = _upload(demo, token, damage(_file("avro", rows)))

    job = _poll(demo, token, job_id)
    assert (job["phase"], job["error_code"], job["num_valid"]) == ("error", "validating-error", 0)
    assert _poll(demo, token, job_id)["phase"] == "error"  # for good
    assert client.xandr_segment_state(5678)["count"] == 0  # nothing of the file was applied


@pytest.mark.parametrize(("member", "sent"), [("avro", "legacy"), ("legacy", "avro")])
def test_a_member_reads_only_the_format_set_up_for_it(demo, client, member, sent):
    client.xandr_account("demo", "demo-pass", 1234, file_format=member)
    token = _token(demo)

    job_id = _upload(demo, token, _file(sent, [(IDFA, "idfa", 5678, 0)]))

    assert _poll(demo, token, job_id)["phase"] == "error"
    assert _poll(demo, token, _upload(demo, token, _file(member, [(IDFA, "idfa", 5678, 0)])))["phase"] != "error"
    assert client.xandr_segment_state(5678)["members"] == [IDFA]
