"""create_api_token, list_api_tokens and revoke_api_token."""

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from rest_framework.test import APIClient

from staff.models import ApiToken
from tests.admin.factories import ApiTokenFactory
from tests.outputs.factories import MAILCHIMP_KEY

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


def get(token: str, path="/api/v1/audiences/"):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get(path)


def post(token: str, path: str, body: dict):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.post(path, body, format="json")


def create(capsys, *args) -> tuple[str, str]:
    call_command("create_api_token", *args)
    captured = capsys.readouterr()
    return captured.out.strip(), captured.err.strip()


def test_create_api_token_creates_the_user_and_prints_a_working_write_token_once(capsys):
    token, told = create(capsys, "robot")

    stored = ApiToken.objects.get()
    assert told == (
        "Created user robot.\n"
        "robot's tokens cannot set outputs' credentials nor read member identities: add --role integrator for that.\n"
        f"Token {stored.prefix} (write, never expires) for robot; it is not shown again."
    )
    assert token.startswith(f"ar_{stored.prefix}_")
    assert (stored.user.username, stored.name, stored.scope, stored.expires_at) == (
        "robot", "robot (command line)", "write", None,
    )  # fmt: skip
    assert not stored.user.has_usable_password()
    assert get(token).status_code == 200


def test_create_api_token_again_makes_a_second_token_and_both_work(capsys):
    first, _ = create(capsys, "robot")
    second, told = create(capsys, "robot")

    assert first != second and "Created user" not in told
    assert get(first).status_code == 200 and get(second).status_code == 200


def test_an_integrator_token_creates_a_partner_output_with_its_api_key_and_a_plain_one_cannot(capsys):
    body = {"kind": "mailchimp", "name": "Mailchimp", "settings": {"api_key": MAILCHIMP_KEY}}
    plain, _ = create(capsys, "robot")
    integrator, told = create(capsys, "crm", "--role", "integrator")

    refused = post(plain, "/api/v1/outputs/", body)
    created = post(integrator, "/api/v1/outputs/", body)

    assert refused.status_code == 403
    assert created.status_code == 201, created.json()
    assert created.json()["secrets_set"] == ["api_key"]
    assert "crm is in the Integrators group: its tokens may set outputs' credentials and destinations, and read " \
           "member identities.\n" in told  # fmt: skip
    assert [g.name for g in ApiToken.objects.get(user__username="crm").user.groups.all()] == ["Integrators"]


def test_an_existing_user_keeps_a_role_once_given_and_is_told_so(capsys):
    create(capsys, "crm", "--role", "integrator")
    again, told = create(capsys, "crm", "--role", "integrator")
    later, later_told = create(capsys, "crm")

    assert "Created user" not in told and "is in the Integrators group" in told
    assert "cannot set" not in later_told  # the user holds the permissions: its new token has them too
    assert get(later, "/api/v1/profiles/").status_code == 200


def test_rotate_revokes_the_users_earlier_tokens(capsys):
    first, _ = create(capsys, "robot")
    second, told = create(capsys, "robot", "--rotate")

    assert told.startswith("Revoked 1 earlier token of robot.\n")
    assert get(first).status_code == 401
    assert get(second).status_code == 200


def test_create_a_named_read_token_that_expires(capsys):
    token, told = create(capsys, "reporting", "--name", "BI dashboard", "--scope", "read", "--expires-days", "30")

    stored = ApiToken.objects.get()
    assert (stored.name, stored.scope) == ("BI dashboard", "read")
    assert timedelta(days=29, hours=23) < stored.expires_at - timezone.now() <= timedelta(days=30)
    expires = f"{timezone.localtime(stored.expires_at):%Y-%m-%d %H:%M}"
    assert told.endswith(f"Token {stored.prefix} (read, expires {expires}) for reporting; it is not shown again.")
    assert get(token).status_code == 200


@pytest.mark.parametrize(
    "args, message",
    [
        (["  "], "USERNAME must not be empty."),
        (["robot", "--expires-days", "0"], "--expires-days must be 1 or more; leave it out for a token that never "
                                           "expires."),
        (["robot", "--scope", "admin"], "argument --scope: invalid choice: 'admin'"),
        (["robot", "--role", "operator"], "argument --role: invalid choice: 'operator'"),
        (["robot", "--expires-days", "soon"], "argument --expires-days: invalid int value: 'soon'"),
        (["robot", "--name", "x" * 101], "--name must be 100 characters or fewer."),
    ],
)  # fmt: skip
def test_create_api_token_refuses_bad_input_and_creates_nothing(args, message):
    with pytest.raises(CommandError) as refused:
        call_command("create_api_token", *args)

    assert message in str(refused.value)
    assert not ApiToken.objects.exists()


def test_bad_input_exits_non_zero_from_the_shell():
    # Refused before the database is touched, so this needs no test database.
    run = subprocess.run(
        [sys.executable, "manage.py", "create_api_token", "robot", "--expires-days", "-3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert run.returncode == 2  # called wrongly (config/commands.py)
    assert run.stdout == ""
    assert "--expires-days must be 1 or more" in run.stderr


def test_list_api_tokens_shows_each_token_without_its_secret(capsys):
    active = ApiTokenFactory(name="CRM sync", user__username="crm")
    revoked = ApiTokenFactory(name="Old export", user__username="bi", scope="read", revoked_at=timezone.now())
    expired = ApiTokenFactory(name="Trial", user__username="bi", expires_at=timezone.now() - timedelta(days=1))
    get(active.plaintext)

    call_command("list_api_tokens")
    lines = capsys.readouterr().out.splitlines()

    assert lines[0].split() == ["prefix", "user", "name", "scope", "created", "expires", "last", "used", "revoked"]
    assert len(lines) == 4
    rows = {line.split()[0]: line for line in lines[1:]}
    day = f"{timezone.localtime():%Y-%m-%d}"
    assert "crm" in rows[active.prefix] and "CRM sync" in rows[active.prefix] and "write" in rows[active.prefix]
    assert re.search(rf"never +{day}", rows[active.prefix])  # never expires, used today
    assert rows[revoked.prefix].split()[-2] == day and "read" in rows[revoked.prefix]
    assert "(expired)" in rows[expired.prefix]
    assert all(t.plaintext.split("_", 2)[2] not in "\n".join(lines) for t in (active, revoked, expired))


def test_list_api_tokens_filters_by_user_and_leaves_out_inactive_ones(capsys):
    mine = ApiTokenFactory(user__username="crm")
    ApiTokenFactory(user__username="crm", revoked_at=timezone.now())
    ApiTokenFactory(user__username="bi")

    call_command("list_api_tokens", "--user", "crm", "--active")

    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == [mine.prefix]


def test_list_api_tokens_says_when_there_are_none_and_refuses_an_unknown_user(capsys):
    call_command("list_api_tokens")
    assert capsys.readouterr().out == "No API tokens.\n"

    with pytest.raises(CommandError, match="No user named 'nobody'."):
        call_command("list_api_tokens", "--user", "nobody")


def test_revoke_api_token_stops_it_at_once(capsys):
    token = ApiTokenFactory(name="CRM sync", user__username="crm")
    assert get(token.plaintext).status_code == 200

    call_command("revoke_api_token", token.prefix)

    assert capsys.readouterr().out == f"Revoked token {token.prefix} (CRM sync, crm); it stops working now.\n"
    day = f"{timezone.localtime():%Y-%m-%d}"
    assert get(token.plaintext).json() == {"detail": f"This API token was revoked on {day}."}

    call_command("revoke_api_token", token.plaintext)  # the whole token names it too
    assert capsys.readouterr().out == f"Token {token.prefix} (CRM sync, crm) was already revoked on {day}.\n"


def test_revoke_api_token_refuses_an_unknown_prefix():
    ApiTokenFactory()

    with pytest.raises(CommandError, match=r"No API token with prefix 'nope'; list_api_tokens shows them."):
        call_command("revoke_api_token", "nope")
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()
