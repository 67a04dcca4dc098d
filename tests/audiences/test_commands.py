import pytest
from django.core.management import CommandError, call_command
from rest_framework.authtoken.models import Token

from tests.audiences.factories import AudienceFactory, ProfileFactory

pytestmark = pytest.mark.django_db


def test_refresh_audiences_prints_a_summary(capsys):
    AudienceFactory(name="Premium")
    ProfileFactory.create_batch(2, attributes={"status": "Premium"})
    call_command("refresh_audiences", "--audience", "Premium")
    out = capsys.readouterr().out
    assert "Refreshed 1 audience(s): 2 added, 0 removed" in out


def test_refresh_audiences_refuses_an_unknown_name():
    with pytest.raises(CommandError, match="No audience named 'Nope'."):
        call_command("refresh_audiences", "--audience", "Nope")


def test_create_api_token_creates_the_user_and_prints_a_working_token(capsys, client):
    call_command("create_api_token", "robot")
    key = capsys.readouterr().out.strip()
    assert Token.objects.get(key=key).user.username == "robot"
    assert client.get("/api/v1/audiences/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    call_command("create_api_token", "robot")
    assert capsys.readouterr().out.strip() == key
