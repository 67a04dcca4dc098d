"""The README's API quick start, run as written: bash, curl and `create_api_token`, against a live server and
the partner sandbox, ending with a verified connection and the partner holding the members."""

import importlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection
from django_q.conf import Conf

from connections.models import Connection

ROOT = Path(__file__).resolve().parents[2]
SECTION = "### Quick start: the seed workflow over the API"

pytestmark = pytest.mark.django_db(transaction=True)


def quickstart() -> str:
    """The first ```sh block of the README's quick-start section."""
    readme = (ROOT / "README.md").read_text()
    assert SECTION in readme
    section = re.split(r"\n#{2,4} ", readme.split(SECTION, 1)[1], maxsplit=1)[0]
    return re.search(r"```sh\n(.*?)```", section, re.S).group(1)


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"


def test_the_readme_quick_start_runs_as_written_and_ends_with_a_verified_connection(live_server, sandbox, monkeypatch):
    if not shutil.which("curl"):
        pytest.skip("the quick start needs curl (apt-get install curl)")
    sandbox.seed_demo()  # what `make serve` starts the sandbox with
    # What `migrate` made, which the flush after an earlier transactional test may have emptied.
    migration = importlib.import_module("staff.migrations.0007_integrators")
    migration.create_integrators(apps, type("Editor", (), {"connection": connection})())
    # The queued work (refreshes, the drain) runs in the server's own thread: `make serve` has a qcluster.
    monkeypatch.setattr(Conf, "SYNC", True)
    env = {"PATH": "/usr/bin:/bin", "API": live_server.url, "SANDBOX": sandbox.url, "DATABASE_URL": database_url()}

    run = subprocess.run(["bash", "-c", quickstart()], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)

    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "Mailchimp accepted the API key (data center us6)." in lines
    assert lines[-2] == "Verified 'Premium users' → 'Mailchimp (quick start)': ok (all 6 checks passed)."
    assert lines[-1].startswith("The audience matches 2 users. 2 have an email address;")
    assert lines[-1].endswith("Mailchimp reports 2.")
    assert "integration is in the Integrators group" in run.stderr
    conn = Connection.objects.get()
    assert (conn.audience.name, conn.output.name, conn.verification_status) == (
        "Premium users", "Mailchimp (quick start)", "ok",
    )  # fmt: skip
    members = sandbox.mailchimp_list_state("a1b2c3d4e5")
    assert members["member_count"] == 2
