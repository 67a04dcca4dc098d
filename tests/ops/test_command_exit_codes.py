"""One exit-code rule for every command: 2 when it was called wrongly, 1 when the work failed (config/commands.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command, get_commands
from django.db import connection

from config.commands import RelayCommand

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
OURS = ("audiences", "connections", "outputs", "staff")

# One mistake per command that can be called wrongly beyond argparse's own checks.
CALLED_WRONGLY = [
    ("refresh_audiences", ["--audience", "Nobody"], "No audience named 'Nobody'."),
    ("seed_profiles", ["--count", "0"], "--count must be at least 1, not 0."),
    ("erase_profiles", ["--external-id", " "], "Not an external ID: ''"),
    ("connect", ["Nobody", "Nowhere"], "No audience named 'Nobody'."),
    ("variants", ["Nobody"], "No audience named 'Nobody'."),
    ("forward", [], "Say what to forward: --connection ID (repeatable) or --all."),
    ("forward", ["--connection", "999999"], "No connection with ID 999999."),
    ("pause", ["999999"], "No connection with ID 999999."),
    ("resume", ["999999"], "No connection with ID 999999."),
    ("disconnect", ["999999", "--keep-at-partner"], "No connection with ID 999999."),
    ("verify_connections", ["--audience", "Nobody"], "No audience named 'Nobody'."),
    ("create_api_token", [" "], "USERNAME must not be empty."),
    ("list_api_tokens", ["--user", "nobody"], "No user named 'nobody'."),
    ("revoke_api_token", ["nope"], "No API token with prefix 'nope'"),
]
# Nothing to name wrongly: their mistakes are argparse's (exit 2) or failures of the work (exit 1).
NO_NAMES = {"demo", "partner_sandbox", "rotate_secrets"}
# django-q2's own command, only made to end promptly: its arguments and exit codes stay django-q2's.
THEIRS = {"qcluster"}


def our_commands() -> set[str]:
    return {name for name, app in get_commands().items() if app in OURS}


def test_every_command_follows_the_rule_and_says_its_output_only():
    from django.core.management import load_command_class

    assert {name for name, *_ in CALLED_WRONGLY} | NO_NAMES | THEIRS == our_commands()
    for name in our_commands() - THEIRS:
        assert isinstance(load_command_class(get_commands()[name], name), RelayCommand), name


@pytest.mark.parametrize(("command", "args", "sentence"), CALLED_WRONGLY)
def test_a_command_called_wrongly_exits_2_with_one_sentence(command, args, sentence):
    with pytest.raises(CommandError) as exc:
        call_command(command, *args)
    assert sentence in str(exc.value)
    assert exc.value.returncode == 2


def test_the_same_rule_holds_from_the_command_line_and_for_argparses_own_errors():
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        url = f"sqlite:///{s['NAME']}"
    else:
        url = f"postgres://{s['USER']}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"
    env = {**os.environ, "DATABASE_URL": url}  # the test database, migrated

    def exit_code(*args):
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        ).returncode

    assert exit_code("refresh_audiences", "--audience", "Nobody") == 2
    assert exit_code("pause") == 2  # argparse: the connection's ID is missing
