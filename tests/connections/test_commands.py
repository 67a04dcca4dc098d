"""Operator commands: connect, forward (with its summary), pause, resume, disconnect; errors exit non-zero."""

import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from connections import services
from connections.models import Connection, OutboxMessage
from tests.connections.factories import EMAILS, sandbox_members, sandbox_output
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY, MailchimpOutputFactory

pytestmark = pytest.mark.django_db

LABEL = "'Potential Parisians' → 'Mailchimp (marketing)'"
ROOT = Path(__file__).resolve().parents[2]


def run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_it_connects_by_name_and_prints_the_id_and_the_backfill(parisians_with_a_device):
    MailchimpOutputFactory()

    out = run("connect", "Potential Parisians", "Mailchimp (marketing)", "--setting", f"list_id={LIST_ID}")

    conn = Connection.objects.get()
    assert f"Connected {LABEL}. Queued 3 messages for the audience's current members." in out
    assert f"Connection ID: {conn.pk}" in out
    assert "Queued: 3" in out
    assert conn.settings == {"list_id": LIST_ID}
    assert OutboxMessage.objects.count() == 3


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["Nobody", "Mailchimp (marketing)"], "No audience named 'Nobody'."),
        (["Potential Parisians", "Nowhere"], "No output named 'Nowhere'."),
        (["Potential Parisians", "Mailchimp (marketing)"], "--setting list_id: This setting is required."),
        (["Potential Parisians", "Mailchimp (marketing)", "--setting", "list_id"],
         "--setting 'list_id': expected KEY=VALUE, such as list_id=a1b2c3d4e5."),
        (["Potential Parisians", "Mailchimp (marketing)", "--setting", "colour=red"],
         "--setting colour: Mailchimp has no such connection setting (list_id)."),
        (["Potential Parisians", "Mailchimp (marketing)", "--setting", "list_id=x", "--mode", "weekly"],
         "argument --mode: invalid choice: 'weekly'"),
    ],
)  # fmt: skip
def test_it_refuses_bad_connect_arguments_and_writes_nothing(parisians_with_a_device, args, error):
    MailchimpOutputFactory()
    with pytest.raises(CommandError) as exc:
        call_command("connect", *args)
    assert error in str(exc.value)
    assert not Connection.objects.exists()


@pytest.mark.django_db(transaction=True)  # work is queued on commit, inside the command, as from a shell
def test_connect_and_disconnect_print_only_their_own_output(parisians_with_a_device, caplog):
    from django_q.models import OrmQ

    MailchimpOutputFactory()
    with caplog.at_level("INFO"):
        run("connect", "Potential Parisians", "Mailchimp (marketing)", "--setting", f"list_id={LIST_ID}")
        run("disconnect", str(Connection.objects.get().pk), "--remove-from-partner")

    assert OrmQ.objects.exists()  # they queued work for the workers…
    assert [r.getMessage() for r in caplog.records if r.name == "django-q"] == []  # …without saying "Enqueued …"


def test_it_accepts_true_and_false_for_yes_no_settings():
    from connections.management.commands.connect import Command

    output = MailchimpOutputFactory(kind="webhook", name="Hook", settings={})
    values = Command._settings(output, ["identity_types=email, ios_idfa", "hash_identities=true"])
    cleaned, *_ = services.clean_connection(output, values, None, None, None)
    assert cleaned == {"identity_types": ["email", "ios_idfa"], "hash_identities": True}
    cleaned, *_ = services.clean_connection(output, {**values, "hash_identities": "false"}, None, None, None)
    assert cleaned["hash_identities"] is False


def test_it_requires_a_choice_of_connections_to_forward_and_exits_non_zero():
    result = subprocess.run(
        [sys.executable, "manage.py", "forward"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2  # called wrongly (config/commands.py)
    assert "Say what to forward: --connection ID (repeatable) or --all." in result.stderr
    with pytest.raises(CommandError, match="Give either --connection or --all, not both."):
        call_command("forward", "--connection", "1", "--all")
    with pytest.raises(CommandError, match="No connection with ID 999999."):
        call_command("forward", "--connection", "999999")


@pytest.mark.django_db(transaction=True)
def test_it_forwards_with_a_summary_per_connection(sandbox, parisians_with_a_device):
    sandbox.mailchimp_rejection("cat@example.com", "fake")
    conn = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": LIST_ID})
    paused = services.connect(
        parisians_with_a_device, MailchimpOutputFactory(name="Mailchimp (sales)"), {"list_id": LIST_ID}
    )
    services.pause(paused)

    out = run("forward", "--all")

    assert (
        "Skipped 'Potential Parisians' → 'Mailchimp (sales)': it is paused (Paused by an operator.). Resume it to send."
        in out
    )
    assert "Forwarded" in out
    row = next(line for line in out.splitlines() if f" {conn.pk} " in line and "Parisians" in line)
    assert [cell.strip() for cell in row.split("│")[3:9]] == ["1", "3", "2", "1", "0", "0"]
    assert sandbox_members(sandbox) == {"ann@example.com": "subscribed", "bob@example.com": "subscribed"}
    conn.refresh_from_db()
    assert (conn.sent_count, conn.accepted_count, conn.rejected_count) == (3, 2, 1)


@pytest.mark.django_db(transaction=True)
def test_it_reports_a_fault_and_exits_non_zero(sandbox, parisians_with_a_device):
    conn = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": LIST_ID})
    sandbox.revoke("mailchimp", MAILCHIMP_KEY)

    with pytest.raises(CommandError) as exc:
        run("forward", "--connection", str(conn.pk))

    assert str(exc.value).startswith("1 connection(s) faulted and stopped; fix the cause, then resume:\n")
    assert "Mailchimp rejected the API key" in str(exc.value)
    conn.refresh_from_db()
    assert conn.status == "faulted"
    assert OutboxMessage.objects.filter(state="pending").count() == 3  # nothing lost: they wait for the resume


def cells(out, conn) -> list[str]:
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if f" {conn.pk} " in line and "Parisians" in line)
    # A long "What happened" wraps onto the next lines of its cell: join them.
    row = [c.strip() for c in lines[at].split("│")[1:-1]]
    for more in lines[at + 1 :]:
        if not more.startswith("│") or more.split("│")[1].strip():
            break
        row[-1] += " " + more.split("│")[-2].strip()
    return row


@pytest.mark.django_db(transaction=True)
def test_it_says_why_messages_wait_for_a_retry(sandbox, parisians_with_a_device):
    conn = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": LIST_ID})
    sandbox.fault("mailchimp", "status", status=503, count=1)

    row = cells(run("forward", "--connection", str(conn.pk)), conn)

    assert row[2:9] == ["1", "0", "0", "0", "3", "0", "0"]
    assert row[-1] == "3 to send again later: Mailchimp had a server error (HTTP 503)."


@pytest.mark.django_db(transaction=True)
def test_a_batch_stopped_at_the_login_counts_nothing_as_sent(sandbox, parisians_with_a_device):
    conn = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": LIST_ID})
    sandbox.revoke("mailchimp", MAILCHIMP_KEY)
    out = StringIO()

    with pytest.raises(CommandError):
        call_command("forward", "--connection", str(conn.pk), stdout=out)

    row = cells(out.getvalue(), conn)
    assert row[2:9] == [
        "1",
        "0",
        "0",
        "0",
        "0",
        "0",
        "3",
    ]  # batches … not sent
    assert row[-1].startswith("Stopped, nothing more sent: Mailchimp rejected the API key")


def test_it_pauses_and_resumes_by_id(parisians_with_a_device):
    conn = services.connect(parisians_with_a_device, MailchimpOutputFactory(), {"list_id": LIST_ID})

    assert run("pause", str(conn.pk)).strip() == f"Paused {LABEL}. 3 messages wait until you resume."
    assert Connection.objects.get().status == "paused"
    assert run("resume", str(conn.pk)).strip() == f"Resumed {LABEL}: 3 messages waiting go out now."
    assert Connection.objects.get().status == "active"
    with pytest.raises(CommandError, match="No connection with ID 999."):
        call_command("pause", "999")
    with pytest.raises(CommandError, match="invalid int value: 'first'"):
        call_command("resume", "first")


def test_it_disconnects_only_when_told_what_happens_at_the_partner(parisians_with_a_device):
    conn = services.connect(parisians_with_a_device, MailchimpOutputFactory(), {"list_id": LIST_ID})
    other = services.connect(
        parisians_with_a_device, MailchimpOutputFactory(name="Mailchimp (sales)"), {"list_id": LIST_ID}
    )

    with pytest.raises(CommandError, match="one of the arguments --remove-from-partner --keep-at-partner is required"):
        call_command("disconnect", str(conn.pk))
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command("disconnect", str(conn.pk), "--remove-from-partner", "--keep-at-partner")
    removing = run("disconnect", str(conn.pk), "--remove-from-partner")
    kept = run("disconnect", str(other.pk), "--keep-at-partner")

    assert f"Removing the audience's members from Mailchimp first (3 messages queued); {LABEL} is deleted" in removing
    assert f"python manage.py forward --connection {conn.pk}" in removing
    assert Connection.objects.get(pk=conn.pk).status == "disconnecting"
    assert (
        kept.strip()
        == "Disconnected 'Potential Parisians' → 'Mailchimp (sales)'. The audience's members stay at Mailchimp."
    )
    assert not Connection.objects.filter(pk=other.pk).exists()
    with pytest.raises(CommandError, match="is being disconnected"):
        call_command("pause", str(conn.pk))


@pytest.mark.django_db(transaction=True)
def test_it_sends_the_removals_and_finishes_a_disconnect_when_forwarding(sandbox, parisians_with_a_device):
    conn = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": LIST_ID})
    run("forward", "--connection", str(conn.pk))
    run("disconnect", str(conn.pk), "--remove-from-partner")

    out = run("forward", "--connection", str(conn.pk))

    assert "the connection is now deleted" in out
    assert sandbox_members(sandbox) == dict.fromkeys(EMAILS, "unsubscribed")
    assert not Connection.objects.exists()
