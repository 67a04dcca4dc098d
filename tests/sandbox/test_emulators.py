"""The sandbox serves every partner folder's emulator it finds, with no list of partners to edit."""

import sys
import textwrap
from pathlib import Path

import pytest
import requests

import outputs.partners
from outputs.sandbox import PartnerSandbox, SandboxClient
from outputs.sandbox.client import SandboxError

ACME = """
from outputs.sandbox.common import Partner, control_body, json_response

DEMO = {"api_key": "acme-demo-key"}


class Acme(Partner):
    name = "acme"

    def reset(self):
        super().reset()
        self.keys = set()

    def dump(self):
        return {"keys": sorted(self.keys)}

    def load(self, state):
        self.keys = set(state["keys"])

    def handle(self, request):
        return json_response(200, {"ok": request.headers.get("x-api-key") in self.keys})

    def error_response(self, status, retry_after=None):
        return json_response(status, {"message": "Acme says no."})

    def revoke(self, credential):
        found = credential in self.keys
        self.keys.discard(credential)
        return found

    def control_routes(self):
        return [("POST", r"keys", control_body(lambda b: self.keys.add(b["api_key"]) or {"api_key": b["api_key"]}))]

    def seed_demo(self, base):
        self.keys.add(DEMO["api_key"])
        return {**DEMO, "base_url": f"{base}/acme"}
"""


@pytest.fixture
def acme_folder(tmp_path, monkeypatch):
    """A partner folder `acme` with only an emulator, beside the real ones."""
    (tmp_path / "acme").mkdir()
    (tmp_path / "acme" / "__init__.py").write_text("")
    (tmp_path / "acme" / "sandbox.py").write_text(textwrap.dedent(ACME))
    monkeypatch.setattr(outputs.partners, "__path__", [*outputs.partners.__path__, str(tmp_path)])
    yield
    for name in [m for m in sys.modules if m.startswith("outputs.partners.acme")]:
        del sys.modules[name]


def test_it_serves_a_partner_folder_it_finds(acme_folder):
    with PartnerSandbox() as sandbox:
        client = SandboxClient(sandbox.url)
        demo = client.seed_demo()
        answer = requests.get(f"{sandbox.url}/acme/ping", headers={"x-api-key": "acme-demo-key"}, timeout=5)
        client.fault("acme", "status", status=503)
        faulted = requests.get(f"{sandbox.url}/acme/ping", timeout=5)
        revoked = requests.post(
            f"{sandbox.url}/_sandbox/revoke", json={"partner": "acme", "credential": "acme-demo-key"}, timeout=5
        )
        added = requests.post(f"{sandbox.url}/_sandbox/acme/keys", json={"api_key": "k2"}, timeout=5)
        stats = client.stats()
        client.close()

    assert demo["acme"] == {"api_key": "acme-demo-key", "base_url": f"{sandbox.url}/acme"}
    assert answer.json() == {"ok": True}
    assert (faulted.status_code, faulted.json()) == (503, {"message": "Acme says no."})
    assert revoked.json() == {"partner": "acme", "revoked": "acme-demo-key"}
    assert (added.status_code, added.json()) == (201, {"api_key": "k2"})
    assert stats["requests"]["acme"] == 2


def test_a_fault_names_the_partners_it_finds(acme_folder):
    with PartnerSandbox() as sandbox, pytest.raises(SandboxError) as refused:
        SandboxClient(sandbox.url).fault("myspace", "drop")

    # Every partner folder with an emulator, read off the folders (a new partner needs no edit here).
    names = sorted({p.parent.name for path in outputs.partners.__path__ for p in Path(path).glob("*/sandbox.py")})
    assert {"acme", "mailchimp", "xandr"} <= set(names)
    assert str(refused.value) == (
        f"POST /_sandbox/faults answered 400: 'partner' must be one of {', '.join(names)} (or '*'), not 'myspace'."
    )
