"""A sandbox with a state file keeps each partner's data across a restart, as a real partner keeps what it was sent."""

import gzip
import hashlib
import hmac
import json
import socket
import time

import pytest
import requests

from outputs.sandbox import PartnerSandbox, SandboxClient
from outputs.sandbox.client import SandboxError
from outputs.sandbox.state import SAVE_EVERY
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY
from tests.waiting import wait_until

AAID = "97987bca-ae59-4c7d-94ba-ee4f19ab8c21"
IDFA = "AEBE52E7-03EE-455A-B3C4-E57283966239"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def state_file(tmp_path):
    return tmp_path / "var" / "sandbox-state.json"


@pytest.fixture
def run(state_file):
    """Start a sandbox on the state file (the same port each time, so the URLs it gives out stay the same)."""
    port = free_port()
    started = []

    def start():
        sandbox = PartnerSandbox(state_file=state_file)
        sandbox.start("127.0.0.1", port)
        started.append(sandbox)
        return sandbox, SandboxClient(sandbox.url)

    yield start
    for sandbox in started:
        sandbox.stop()


# --- each partner, given data the way its API takes it -------------------------------------------------------
def fill_mailchimp(demo, client):
    base, key = demo["mailchimp"]["base_url"], demo["mailchimp"]["api_key"]
    members = [{"email_address": f"m{i}@example.com", "status": "subscribed"} for i in range(5)]
    members.append({"email_address": "Pending@Example.com", "status": "pending"})
    batch = requests.post(f"{base}/lists/{LIST_ID}", auth=("x", key), json={"members": members}, timeout=5)
    assert batch.json()["total_created"] == 6
    requests.delete(f"{base}/lists/{LIST_ID}/members/m0@example.com", auth=("x", key), timeout=5)
    gone = f"{base}/lists/{LIST_ID}/members/m1@example.com/actions/delete-permanent"
    assert requests.post(gone, auth=("x", key), timeout=5).status_code == 204
    return lambda c: c.mailchimp_list_state(LIST_ID)


def fill_braze(demo, client):
    track = requests.post(
        f"{demo['braze']['base_url']}/users/track",
        headers={"Authorization": f"Bearer {demo['braze']['api_key']}"},
        json={
            "attributes": [
                {"external_id": "u1", "audiences": {"add": ["VIP", "Lapsed"]}},
                {"email": "ada@example.com", "in_vip": True},
            ]
        },
        timeout=5,
    )
    assert track.status_code == 201
    client.braze_key("second-key", permissions=["users.track"])
    client.revoke("braze", "second-key")
    return lambda c: c.braze_users()


def fill_xandr(demo, client):
    base = demo["xandr"]["base_url"]
    login = {"auth": {"username": "demo", "password": "demo-pass"}}
    token = requests.post(f"{base}/auth", json=login, timeout=5).json()["response"]["token"]
    job = requests.post(f"{base}/batch-segment?member_id=1234", headers={"Authorization": token}, timeout=5)
    upload = job.json()["response"]["batch_segment_upload_job"]
    text = f"{IDFA},5678:1440^3\n{AAID},5678:0^8\nnot-a-uuid,5678:0^8\n"
    requests.post(upload["upload_url"], data=gzip.compress(text.encode()), timeout=5)
    return lambda c: c.xandr_segment_state(5678)


def fill_facebook(demo, client):
    payload = {"schema": "EMAIL_SHA256", "data": [[hashlib.sha256(b"ada@example.com").hexdigest()]]}
    session = {"session_id": 9001, "batch_seq": 1, "last_batch_flag": True}
    form = {"access_token": "EAAdemo", "payload": json.dumps(payload), "session": json.dumps(session)}
    url = f"{demo['facebook']['base_url']}/v21.0/{demo['facebook']['audience_id']}/users"
    assert requests.post(url, data=form, timeout=5).status_code == 200
    client.facebook_rate_limit("act_1001", 50)
    return lambda c: c.facebook_audience_state(demo["facebook"]["audience_id"])


def fill_webhook(demo, client):
    raw = json.dumps({"audience": "VIP", "add": ["a@example.com"]}).encode()
    timestamp = str(int(time.time()))
    signature = hmac.new(b"whsec-demo", f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()
    headers = {"X-Relay-Timestamp": timestamp, "X-Relay-Signature": f"v1={signature}"}
    assert requests.post(demo["webhook"]["url"], data=raw, headers=headers, timeout=5).status_code == 200
    return lambda c: c.webhook_deliveries("demo")


def fill_klaviyo(demo, client):
    klaviyo = demo["klaviyo"]
    headers = {
        "Authorization": f"Klaviyo-API-Key {klaviyo['api_key']}",
        "revision": "2026-10-15",
        "Content-Type": "application/vnd.api+json",
    }
    profiles = [{"type": "profile", "attributes": {"email": f"m{i}@example.com"}} for i in range(3)]
    job = {
        "type": "profile-bulk-import-job",
        "attributes": {"profiles": {"data": profiles}},
        "relationships": {"lists": {"data": [{"type": "list", "id": klaviyo["list_id"]}]}},
    }
    url = f"{klaviyo['base_url']}/api/profile-bulk-import-jobs"
    assert requests.post(url, headers=headers, json={"data": job}, timeout=5).status_code == 202
    client._call("POST", "klaviyo/keys", {"api_key": "pk_second"})
    client.revoke("klaviyo", "pk_second")
    return lambda c: c._call("GET", f"klaviyo/lists/{klaviyo['list_id']}")


def fill_google_ads(demo, client):
    demo = demo["google_ads"]
    form = {"grant_type": "refresh_token", **{k: demo[k] for k in ("client_id", "client_secret", "refresh_token")}}
    token = requests.post(f"{demo['base_url']}/token", data=form, timeout=5).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}", "developer-token": demo["developer_token"]}
    api = f"{demo['base_url']}/v24/customers/{demo['customer_id']}"
    metadata = {"userList": f"customers/{demo['customer_id']}/userLists/{demo['user_list_id']}"}
    job = {"job": {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": metadata}}
    name = requests.post(f"{api}/offlineUserDataJobs:create", json=job, headers=headers, timeout=5).json()
    job_path = name["resourceName"].partition("/offlineUserDataJobs/")[2]
    operation = {"create": {"userIdentifiers": [{"hashedEmail": hashlib.sha256(b"ada@example.com").hexdigest()}]}}
    added = requests.post(
        f"{api}/offlineUserDataJobs/{job_path}:addOperations",
        json={"operations": [operation]},
        headers=headers,
        timeout=5,
    )
    assert added.status_code == 200
    assert requests.post(f"{api}/offlineUserDataJobs/{job_path}:run", json={}, headers=headers, timeout=5).ok
    return lambda c: c._call("GET", f"google_ads/lists/{demo['user_list_id']}")


FILL = {
    "mailchimp": fill_mailchimp,
    "klaviyo": fill_klaviyo,
    "braze": fill_braze,
    "xandr": fill_xandr,
    "facebook": fill_facebook,
    "webhook": fill_webhook,
    "google_ads": fill_google_ads,
}


def test_every_partner_has_a_filler():
    assert set(FILL) == set(PartnerSandbox().partners)


@pytest.mark.parametrize("partner", FILL)
def test_it_keeps_what_each_partner_holds_across_a_restart(run, partner):
    sandbox, client = run()
    demo = client.seed_demo()
    read = FILL[partner](demo, client)
    held = read(client)
    dumped = sandbox.dump_state()["partners"][partner]
    assert dumped != sandbox.__class__().dump_state()["partners"][partner]  # there is data to keep
    sandbox.stop()

    again, again_client = run()
    assert again.state.note.startswith(f"Partner data restored from {again.state.path}")
    again_client.seed_demo()  # as bin/serve does: it keeps what the sandbox restored
    assert read(again_client) == held
    assert again.dump_state()["partners"][partner] == dumped


def test_it_keeps_a_permanently_deleted_address_refused_and_a_revoked_key_revoked(run):
    sandbox, client = run()
    demo = client.seed_demo()
    fill_mailchimp(demo, client)
    client.revoke("xandr", "demo")
    sandbox.stop()

    _, client = run()
    base, key = demo["mailchimp"]["base_url"], demo["mailchimp"]["api_key"]
    again = requests.put(
        f"{base}/lists/{LIST_ID}/members/m1@example.com",
        auth=("x", key),
        json={"email_address": "m1@example.com", "status_if_new": "subscribed"},
        timeout=5,
    )
    assert again.status_code == 400
    assert "was permanently deleted and cannot be re-imported" in again.json()["detail"]
    login = requests.post(
        f"{demo['xandr']['base_url']}/auth", json={"auth": {"username": "demo", "password": "demo-pass"}}, timeout=5
    )
    assert login.json()["response"]["error"] == "No match found for user/pass"


def test_it_saves_within_a_second_of_a_change_without_being_stopped(run, state_file):
    sandbox, client = run()
    client.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Potential Parisians")
    wait_until(state_file.exists, SAVE_EVERY * 3, "the state file being written")
    saved = json.loads(state_file.read_text())
    assert [m["name"] for m in saved["partners"]["mailchimp"]["lists"]] == ["Potential Parisians"]
    assert [p.name for p in state_file.parent.iterdir()] == ["sandbox-state.json"]  # no temporary file left


def test_reset_empties_the_file_too(run, state_file):
    sandbox, client = run()
    client.seed_demo()
    client.reset()
    saved = json.loads(state_file.read_text())
    assert saved["partners"]["mailchimp"]["lists"] == []
    sandbox.stop()

    _, client = run()
    with pytest.raises(SandboxError, match="answered 404: No list 'a1b2c3d4e5' in the sandbox."):
        client.mailchimp_list_state(LIST_ID)


@pytest.mark.parametrize(
    "content, why",
    [
        ("{not json", "it is not valid JSON"),
        ('{"format": 0, "lists": []}', "it is in format 0, and this sandbox reads format 1"),
        ('{"format": 1, "clock_offset": 0, "partners": {"mailchimp": {"lists": 3}}}', "its data has another shape"),
    ],
)
def test_it_starts_empty_with_one_warning_from_a_file_it_cannot_read(run, state_file, content, why):
    state_file.parent.mkdir(parents=True)
    state_file.write_text(content)
    sandbox, client = run()
    assert sandbox.state.unreadable
    assert sandbox.state.note.startswith(f"Warning: the saved sandbox state {state_file} was not loaded ({why}")
    assert sandbox.state.note.endswith("; the sandbox starts empty.")
    assert sandbox.dump_state()["partners"] == PartnerSandbox().dump_state()["partners"]
    client.seed_demo()  # and it works, and the next save replaces the unreadable file
    sandbox.stop()
    assert json.loads(state_file.read_text())["format"] == 1


def test_a_sandbox_without_a_state_file_writes_nothing(tmp_path):
    with PartnerSandbox() as sandbox:
        SandboxClient(sandbox.url).seed_demo()
        assert sandbox.state is None
    assert list(tmp_path.iterdir()) == []
