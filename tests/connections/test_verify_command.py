"""`verify_connections`: the table with hints, the funnels, --json, selection, and exit codes 0, 1 and 2."""

import datetime as dt
import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from connections import funnel, services
from connections.drain import drain
from connections.hints import hint
from connections.models import Connection
from tests.connections.factories import StaticAudienceFactory, sandbox_output
from tests.outputs.factories import LIST_ID

pytestmark = pytest.mark.django_db

LABEL = "'Potential Parisians' → 'Mailchimp (marketing)'"
ROOT = Path(__file__).resolve().parents[2]
BOX = re.compile(r"[│┃━─┏┓┗┛┡┩└┘┌┐├┤┼╇┳┻╋┯┷]")
MISSING_LIST = "Mailchimp has no list with ID 'nope000000' in this account."
CHECK_THE_LIST_ID = (
    "Check the List ID in the connection settings: in Mailchimp, Audience → Settings → Audience name and defaults "
    "shows it as the Audience ID."
)


def run(*args) -> str:
    out = StringIO()
    call_command("verify_connections", *args, stdout=out)
    return out.getvalue()


def failing_run(*args) -> tuple[str, CommandError]:
    out = StringIO()
    with pytest.raises(CommandError) as exc:
        call_command("verify_connections", *args, stdout=out)
    return out.getvalue(), exc.value


def flat(table: str) -> str:
    """The table's text without its borders, so a cell's wrapped sentences read as they were written."""
    return " ".join(BOX.sub(" ", table).split())


@pytest.mark.django_db(transaction=True)  # the drain sends from a pool of threads
def test_it_verifies_every_connection_and_prints_its_status_checks_and_funnel(sandbox, parisians_with_a_device):
    conn = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": LIST_ID})
    drain(conn.pk)

    out = run()

    conn.refresh_from_db()
    assert conn.verification_status == "ok"
    row = f"{conn.pk} {LABEL} ok ok: credentials, destination, identity coverage, status, delivery, partner count"
    assert row in flat(out)
    summary = (
        "The audience matches 4 users. 3 have an email address; Mailchimp accepts only email addresses, so "
        "Mailchimp receives 3. Mailchimp reports 3."
    )
    assert f"\n{LABEL} (ID {conn.pk}): {summary}\n" in out


def test_it_shows_each_check_that_needs_attention_with_its_hint_and_exits_1_when_one_fails(
    sandbox, parisians_with_a_device
):
    output = sandbox_output(sandbox)
    missing = services.connect(parisians_with_a_device, output, {"list_id": "nope000000"})
    nobody = StaticAudienceFactory(name="Nobody yet")
    paused = services.connect(nobody, output, {"list_id": LIST_ID})
    services.pause(paused)

    out, error = failing_run()

    assert error.returncode == 1
    assert str(error) == f"1 of 2 connections is failing: {LABEL} (ID {missing.pk})."
    assert (
        f"{missing.pk} {LABEL} failing destination: {MISSING_LIST} {CHECK_THE_LIST_ID} "
        f"ok: credentials, identity coverage, status, delivery"
    ) in flat(out)
    assert (
        f"{paused.pk} 'Nobody yet' → 'Mailchimp (marketing)' warning "
        f"identity coverage: The audience has no members yet. {hint('no_members')} "
        f"status: The connection is paused. {hint('paused', id=paused.pk)} "
    ) in flat(out)
    for conn in (missing, paused):
        conn.refresh_from_db()
        label = f"'{conn.audience.name}' → 'Mailchimp (marketing)' (ID {conn.pk})"
        assert f"\n{label}: {funnel.compute(conn).summary}\n" in out
    assert Connection.objects.get(pk=missing.pk).verification_status == "failing"
    assert Connection.objects.get(pk=paused.pk).verification_status == "warning"


def test_it_exits_0_when_the_worst_is_a_warning(sandbox):
    services.connect(StaticAudienceFactory(name="Nobody yet"), sandbox_output(sandbox), {"list_id": LIST_ID})

    out = run()

    assert "Nobody yet' → 'Mailchimp (marketing)' warning identity coverage: The audience has no members yet." in (
        flat(out)
    )


def test_it_prints_one_json_document_and_nothing_else(sandbox, parisians_with_a_device):
    conn = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": "nope000000"})

    out, error = failing_run("--json")

    assert error.returncode == 1
    doc = json.loads(out)
    conn.refresh_from_db()
    assert list(doc) == ["connections"]
    [entry] = doc["connections"]
    assert list(entry) == ["id", "audience", "output", "partner", "status", "verified_at", "checks", "funnel"]
    assert entry["id"] == conn.pk
    assert (entry["audience"], entry["output"]) == ("Potential Parisians", "Mailchimp (marketing)")
    assert entry["partner"] == {"slug": "mailchimp", "name": "Mailchimp"}
    assert entry["status"] == "failing"
    assert dt.datetime.fromisoformat(entry["verified_at"]) == conn.verified_at
    assert entry["checks"] == conn.verification_checks
    assert entry["checks"][1] == {
        "name": "destination",
        "status": "failing",
        "detail": MISSING_LIST,
        "hint": CHECK_THE_LIST_ID,
    }
    assert all(list(check) == ["name", "status", "detail", "hint"] for check in entry["checks"])
    # The list is missing, so the partner's count is not asked for again.
    assert entry["funnel"] == funnel.compute(conn, partner_count=None).as_dict()
    assert [step["name"] for step in entry["funnel"]["steps"]] == [
        "audience members", "members with an accepted identity", "identities valid after normalization",
        "forwarded", "accepted by the partner", "partner's own count",
    ]  # fmt: skip


def test_it_selects_connections_by_id_audience_and_output(sandbox, parisians_with_a_device):
    mailchimp = sandbox_output(sandbox)
    sales = sandbox_output(sandbox, list_id="b2c3d4e5f6", name="Mailchimp (sales)")
    nobody = StaticAudienceFactory(name="Nobody yet")
    a = services.connect(parisians_with_a_device, mailchimp, {"list_id": LIST_ID})
    b = services.connect(parisians_with_a_device, sales, {"list_id": "b2c3d4e5f6"})
    c = services.connect(nobody, mailchimp, {"list_id": LIST_ID})

    def ids(*args):
        return [entry["id"] for entry in json.loads(run("--json", *args))["connections"]]

    assert ids() == [a.pk, b.pk, c.pk]
    assert ids("--connection", str(c.pk), "--connection", str(a.pk)) == [a.pk, c.pk]
    assert ids("--audience", "Potential Parisians") == [a.pk, b.pk]
    assert ids("--output", "Mailchimp (marketing)") == [a.pk, c.pk]
    assert ids("--audience", "Potential Parisians", "--output", "Mailchimp (sales)") == [b.pk]
    assert ids("--audience", "Nobody yet", "--output", "Mailchimp (sales)") == []


def test_it_verifies_only_what_was_selected(sandbox, parisians_with_a_device):
    a = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": LIST_ID})
    b = services.connect(StaticAudienceFactory(name="Nobody yet"), a.output, {"list_id": LIST_ID})

    run("--connection", str(b.pk))

    assert Connection.objects.get(pk=a.pk).verified_at is None
    assert Connection.objects.get(pk=b.pk).verified_at is not None


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--connection", "999999"],
         "No connection with ID 999999. The admin's connection list and GET /api/v1/connections/ show the IDs."),
        (["--audience", "Nobody"], "No audience named 'Nobody'."),
        (["--output", "Nowhere"], "No output named 'Nowhere'."),
    ],
)  # fmt: skip
def test_it_refuses_what_does_not_exist_with_exit_code_2_and_verifies_nothing(
    sandbox, parisians_with_a_device, args, error
):
    conn = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": LIST_ID})

    out, exc = failing_run(*args)

    assert (str(exc), exc.returncode, out) == (error, 2, "")
    assert Connection.objects.get(pk=conn.pk).verified_at is None


def test_it_says_so_when_there_is_nothing_to_verify(parisians_with_a_device):
    assert run() == "There are no connections.\n"
    assert run("--audience", "Potential Parisians") == "No connection matches.\n"
    assert json.loads(run("--json")) == {"connections": []}


def test_it_has_help_on_every_argument():
    from connections.management.commands.verify_connections import Command

    parser = Command().create_parser("manage.py", "verify_connections")
    ours = [a for a in parser._actions if a.dest in ("connection", "audience", "output", "json_output")]
    assert len(ours) == 4
    assert all(a.help for a in ours)


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.mark.django_db(transaction=True)  # the command runs in another process, on the test database
def test_it_exits_0_1_or_2_from_the_shell(sandbox, parisians_with_a_device):
    good = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": LIST_ID})
    bad = services.connect(parisians_with_a_device, good.output, {"list_id": "nope000000"})
    env = {**os.environ, "DATABASE_URL": database_url()}

    def shell(*args):
        command = [sys.executable, "manage.py", "verify_connections", *args]
        return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    ok = shell("--connection", str(good.pk))
    failing = shell("--json")
    unknown = shell("--connection", "999999")
    not_a_number = shell("--connection", "x")

    assert (ok.returncode, ok.stderr) == (0, "")
    assert f"{good.pk} {LABEL} ok" in flat(ok.stdout)
    assert failing.returncode == 1
    assert [c["status"] for c in json.loads(failing.stdout)["connections"]] == ["ok", "failing"]
    assert failing.stderr == f"CommandError: 1 of 2 connections is failing: {LABEL} (ID {bad.pk}).\n"
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("CommandError: No connection with ID 999999.")
    assert not_a_number.returncode == 2
    assert "argument --connection: invalid int value: 'x'" in not_a_number.stderr
    assert Connection.objects.get(pk=bad.pk).verification_status == "failing"
