"""A newcomer's first hour: `make demo`, then `make serve`, then the admin, as a person would do it.

The demo and bin/serve run as the commands they are, in their own processes, on a scratch SQLite database and
free ports; the browser talks to bin/serve's web server and the test reads bin/serve's sandbox.
"""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from connections import demo
from outputs.sandbox.client import SandboxClient
from tests.browser.conftest import screenshot
from tests.waiting import wait_until

pytestmark = pytest.mark.browser
expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

ROOT = Path(__file__).resolve().parents[2]
LIST_ID = demo.MAILCHIMP_LIST  # the demo's Mailchimp list, which bin/serve's sandbox seeds too
SEGMENT_ID = demo.XANDR["segment_id"]  # and its AppNexus segment


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def world(tmp_path):
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'relay.sqlite3'}",
        "SANDBOX_PORT": str(free_port()),
        "SANDBOX_STATE_FILE": str(tmp_path / "sandbox-state.json"),
        "PORT": str(free_port()),
        "Q_WORKERS": "1",
    }
    return env


def run(env, *args, timeout=180):
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def served(world):
    """`make demo` then `make serve`: the demo's command, then bin/serve until the test ends."""
    run(world, "migrate", "--no-input", "-v", "0")
    demo = run(world, "demo")
    assert f"The demo's outputs point at http://127.0.0.1:{world['SANDBOX_PORT']}" in demo
    process = subprocess.Popen(
        [str(ROOT / "bin" / "serve")],
        cwd=ROOT,
        env=world,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        # Ctrl-C as in a terminal: a suite started in the background inherits SIGINT ignored, and a shell
        # cannot trap a signal ignored when it started, so bin/serve would never see it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    site = f"http://127.0.0.1:{world['PORT']}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read()
            try:
                if requests.get(f"{site}/admin/login/", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.3)
        yield site, SandboxClient(f"http://127.0.0.1:{world['SANDBOX_PORT']}")
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            output, _ = process.communicate(timeout=20)
            stopped = True
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            stopped = False
    assert "objects imported automatically" not in output
    assert stopped, "bin/serve did not stop within 20 s of Ctrl-C"


def test_it_keeps_the_demos_connections_working_under_serve(page, served):
    site, sandbox = served
    page.goto(f"{site}/admin/login/?next=/admin/")
    page.fill("#id_username", "admin")
    page.fill("#id_password", "admin")
    page.click("input[type=submit]")

    dashboard = page.locator("#relay-dashboard")
    expect(dashboard).to_contain_text("Potential Parisians → Mailchimp (demo)")
    rows = dashboard.locator("tbody tr").filter(has_text="Potential Parisians →")
    expect(rows).to_have_count(2)
    for row in rows.all():
        expect(row.locator(".relay-badge")).to_have_text("OK")
    expect(dashboard).not_to_contain_text("Could not reach")
    screenshot(page, "demo-then-serve-dashboard.png")

    # The partners kept what the demo sent them: verifying again finds what the demo left there. Xandr has no
    # API that counts a segment's members, so its count is read where the demo's report reads it.
    for output in ("AppNexus (demo)", "Mailchimp (demo)"):
        page.goto(f"{site}/admin/")
        dashboard.get_by_role("link", name=f"Potential Parisians → {output}").click()
        page.get_by_role("button", name="Verify now").click()
        expect(page.locator("ul.messagelist")).to_contain_text(f"Verified 'Potential Parisians' → '{output}': ok")
    expect(page.locator("#content-main")).to_contain_text(
        "Mailchimp reports 45, as many as were forwarded and accepted."
    )
    screenshot(page, "demo-then-serve-verified.png")
    assert sandbox.xandr_segment_state(SEGMENT_ID)["count"] == 70

    # demo-002 left the audience in the demo's second act; back to Premium, they join the 45 again.
    page.goto(f"{site}/admin/audiences/profile/?q=demo-002")
    page.get_by_role("link", name="demo-002").click()
    page.fill("#id_attributes", '{"status": "Premium", "country": "US"}')
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("demo-002")

    wait_until(
        lambda: sandbox.mailchimp_list_state(LIST_ID)["member_count"] == 46, 60, "demo-002 reaching the sandbox list"
    )
    members = sandbox.mailchimp_list_state(LIST_ID)
    assert members["member_count"] == 46, members
    assert members["members"]["traveller002@example.com"]["status"] == "subscribed"
