import ast
import pathlib
import socket
import subprocess
import sys
import time

import pytest
import requests
from django.core.management import CommandError, call_command

from outputs.sandbox.client import SandboxError
from tests.outputs.factories import MAILCHIMP_KEY

SANDBOX_DIR = pathlib.Path(__file__).resolve().parents[2] / "outputs" / "sandbox"


def _ping(demo, timeout=5):
    return requests.get(f"{demo['mailchimp']['base_url']}/ping", auth=("x", MAILCHIMP_KEY), timeout=timeout)


def test_it_answers_an_injected_status_with_the_partners_body_and_retry_after(demo, client):
    client.fault("mailchimp", "status", status=503, retry_after=2, count=1)
    failed = _ping(demo)
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "2"
    assert failed.headers["Content-Type"].startswith("application/problem+json")
    assert failed.json()["status"] == 503
    assert _ping(demo).status_code == 200  # count=1: the next request is normal again


def test_it_answers_an_injected_429_in_each_partners_own_shape(demo, client):
    for partner in ("braze", "xandr", "facebook"):
        client.fault(partner, "status", status=429, retry_after=1)
    braze = requests.post(
        f"{demo['braze']['base_url']}/users/track",
        headers={"Authorization": "Bearer braze-demo-key"},
        json={"attributes": []},
        timeout=5,
    )
    assert (braze.status_code, braze.json()) == (429, {"message": "Over rate limit."})
    xandr = requests.post(f"{demo['xandr']['base_url']}/auth", json={}, timeout=5)
    assert xandr.status_code == 429 and xandr.json()["response"]["error_id"] == "SYSTEM"
    facebook = requests.get(f"{demo['facebook']['base_url']}/v21.0/me", params={"access_token": "EAAdemo"}, timeout=5)
    assert facebook.status_code == 429 and facebook.json()["error"]["code"] == 80003


def test_it_holds_a_request_for_a_timeout_fault(demo, client):
    client.fault("webhook", "timeout", delay=1.0)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(demo["webhook"]["url"], json={}, timeout=0.3)
    assert requests.post(demo["webhook"]["url"], json={}, timeout=5).status_code == 200


def test_it_drops_the_connection_for_a_drop_fault(demo, client):
    client.fault("mailchimp", "drop", path="/ping")
    with pytest.raises(requests.exceptions.ConnectionError):
        _ping(demo)
    assert _ping(demo).status_code == 200


def test_it_delays_a_slow_request_then_answers_normally(demo, client):
    client.fault("mailchimp", "slow", delay=0.3)
    started = time.monotonic()
    assert _ping(demo).status_code == 200
    assert time.monotonic() - started >= 0.3


def test_it_applies_a_probability_fault_the_same_way_for_the_same_seed(demo, client):
    def pattern():
        client.clear_faults()
        client.fault("mailchimp", "status", status=500, probability=0.5, seed=7)
        return [_ping(demo).status_code for _ in range(12)]

    first = pattern()
    assert set(first) == {200, 500}
    assert pattern() == first


def test_it_only_faults_requests_whose_path_matches_and_can_override_the_body(demo, client):
    client.fault("mailchimp", "status", status=500, path="/lists/", body={"oops": True})
    assert _ping(demo).status_code == 200
    failed = requests.get(f"{demo['mailchimp']['base_url']}/lists/a1b2c3d4e5", auth=("x", MAILCHIMP_KEY), timeout=5)
    assert (failed.status_code, failed.json()) == (500, {"oops": True})


def test_it_refuses_a_fault_it_cannot_use(client):
    with pytest.raises(SandboxError, match="'kind' must be one of status, timeout, drop, slow"):
        client.fault("mailchimp", "explode")


def test_it_counts_requests_per_partner_and_resets_everything(demo, client):
    _ping(demo)
    client.fault("braze", "drop")
    stats = client.stats()
    assert stats["requests"]["mailchimp"] == 1
    assert set(stats) >= {"requests", "max_concurrent", "duplicates"}
    client.reset()
    assert client.stats()["requests"]["mailchimp"] == 0
    assert client.faults() == []
    assert _ping(demo).status_code == 401  # the demo key is gone too


def test_it_stays_independent_of_the_adapters_and_django():
    # The sandbox is its shared server (outputs/sandbox) and each partner's emulator (outputs/partners/*/sandbox*).
    sources = [*SANDBOX_DIR.glob("*.py"), *(SANDBOX_DIR.parent / "partners").glob("*/sandbox*.py")]
    assert len(sources) > len(list(SANDBOX_DIR.glob("*.py")))
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.startswith(("django", "outputs.models")) for n in names), source
    # What a running sandbox loads of outputs.partners: the partner folders and their emulators, no adapter side.
    probe = (
        "import sys, outputs.sandbox.server as s; s.PartnerSandbox(); "
        "assert not any(m.startswith('django') for m in sys.modules); "
        "loaded = [m for m in sys.modules if m.startswith('outputs.partners.')]; "
        "assert loaded and all(m.count('.') == 2 and hasattr(sys.modules[m], '__path__') "
        "or m.count('.') == 3 and m.rsplit('.', 1)[1].startswith('sandbox') for m in loaded), loaded"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=SANDBOX_DIR.parents[1])


def test_the_command_refuses_a_port_that_is_taken():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(CommandError, match=f"Cannot start the partner sandbox on 127.0.0.1:{port}: .*SANDBOX_PORT"):
            call_command("partner_sandbox", port=port)
