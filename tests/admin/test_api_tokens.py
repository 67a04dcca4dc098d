"""API tokens at the API's door: stored hashed, Bearer, scopes, revoked/expired/unknown, last use, throttle."""

import hashlib
import importlib
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.state import ProjectState
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from audiences.models import Audience
from staff.models import ApiToken, AuditEntry
from tests.admin.factories import ApiTokenFactory
from tests.audiences.factories import AudienceFactory
from tests.outputs.factories import MailchimpOutputFactory

pytestmark = pytest.mark.django_db

READ_ONLY = (
    "This API token is read-only: it may only use GET, HEAD and OPTIONS. "
    "Use a token with the write scope to change anything."
)
STATIC = {"name": "VIPs", "kind": "static"}


def client_with(header: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    return client


def bearer(token) -> APIClient:
    return client_with(f"Bearer {token.plaintext}")


def test_it_stores_only_a_hash_of_the_secret():
    token = ApiTokenFactory()

    assert re.fullmatch(r"ar_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", token.plaintext)
    secret = token.plaintext.split("_", 2)[2]
    assert token.plaintext.startswith(f"ar_{token.prefix}_")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM staff_apitoken")
        stored = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert secret not in stored and token.plaintext not in stored
    assert ApiToken.objects.get().key_hash == hashlib.sha256(secret.encode()).hexdigest()


def test_it_accepts_a_bearer_token_and_the_older_token_keyword():
    token = ApiTokenFactory()

    assert bearer(token).get("/api/v1/audiences/").status_code == 200
    assert client_with(f"Token {token.plaintext}").get("/api/v1/audiences/").status_code == 200


def test_the_api_acts_as_the_tokens_user(api, api_user):
    output = MailchimpOutputFactory()

    response = api.patch(f"/api/v1/outputs/{output.pk}/", {"settings": {"email_type": "text"}}, format="json")

    assert response.status_code == 200, response.json()
    entry = AuditEntry.objects.get(object_id=str(output.pk))
    assert (entry.user, entry.change_message) == (api_user, "API: Changed email_type.")


def test_a_read_token_reads(read_api):
    AudienceFactory(name="Premium")

    response = read_api.get("/api/v1/audiences/")

    assert response.status_code == 200
    assert [a["name"] for a in response.json()["results"]] == ["Premium"]
    assert read_api.head("/api/v1/audiences/").status_code == 200
    assert read_api.options("/api/v1/audiences/").status_code == 200


def test_a_read_token_may_not_write_and_nothing_changes(read_api):
    audience = AudienceFactory(name="Premium")
    url = f"/api/v1/audiences/{audience.pk}/"

    for response in [
        read_api.post("/api/v1/audiences/", STATIC, format="json"),
        read_api.patch(url, {"name": "Renamed"}, format="json"),
        read_api.put(url, {"name": "Renamed"}, format="json"),
        read_api.delete(url),
    ]:
        assert response.status_code == 403
        assert response.json() == {"detail": READ_ONLY}
    assert list(Audience.objects.values_list("name", flat=True)) == ["Premium"]


def test_a_write_token_writes(api):
    created = api.post("/api/v1/audiences/", STATIC, format="json")
    assert created.status_code == 201, created.json()
    url = f"/api/v1/audiences/{created.json()['id']}/"

    assert api.patch(url, {"name": "VIP customers"}, format="json").status_code == 200
    assert Audience.objects.get().name == "VIP customers"
    assert api.delete(url).status_code == 204
    assert not Audience.objects.exists()


def test_a_revoked_token_is_refused_with_the_day_it_was_revoked():
    token = ApiTokenFactory(revoked_at=datetime(2026, 11, 29, 9, 30, tzinfo=UTC))

    response = bearer(token).get("/api/v1/audiences/")

    assert response.status_code == 401
    assert response.json() == {"detail": "This API token was revoked on 2026-11-29."}
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_an_expired_token_is_refused_with_the_day_it_expired():
    token = ApiTokenFactory(expires_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC))

    response = bearer(token).get("/api/v1/audiences/")

    assert response.status_code == 401
    assert response.json() == {"detail": "This API token expired on 2026-03-01."}


def test_a_token_works_until_it_expires():
    token = ApiTokenFactory(expires_at=timezone.now() + timedelta(minutes=5))

    assert bearer(token).get("/api/v1/audiences/").status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "Bearer ar_00000000_unknownunknownunknownunknownunknownunknown0",
        "Bearer ar_{prefix}_wrong-secret-for-a-real-prefix",
        "Bearer ar_{prefix}",
        "Token 9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b",  # a key of DRF's old plaintext tokens
        "Bearer not-a-token",
    ],
)
def test_an_unknown_token_is_refused(header):
    token = ApiTokenFactory()

    response = client_with(header.format(prefix=token.prefix)).get("/api/v1/audiences/")

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid API token."}


def test_a_header_with_a_space_in_the_token_is_refused():
    response = client_with("Bearer ar_abc def").get("/api/v1/audiences/")

    assert response.status_code == 401
    assert response.json() == {"detail": "Send one API token after “Bearer”, with no spaces in it."}


def test_a_token_of_a_deactivated_user_is_refused():
    token = ApiTokenFactory(user__is_active=False)

    response = bearer(token).get("/api/v1/audiences/")

    assert response.status_code == 401
    assert response.json() == {"detail": "The user of this API token is deactivated."}


def test_no_token_is_a_401():
    response = APIClient().get("/api/v1/audiences/")

    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_staff_signed_in_to_the_admin_use_the_api_from_the_browser(admin_client):
    assert admin_client.get("/api/v1/audiences/").status_code == 200


def test_last_use_is_written_at_most_once_a_minute():
    token = ApiTokenFactory()
    client = bearer(token)

    client.get("/api/v1/audiences/")
    token.refresh_from_db()
    first = token.last_used_at
    assert first is not None and timezone.now() - first < timedelta(seconds=5)

    with CaptureQueriesContext(connection) as queries:
        client.get("/api/v1/audiences/")
    assert not [q for q in queries if q["sql"].startswith("UPDATE")]
    token.refresh_from_db()
    assert token.last_used_at == first

    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    with CaptureQueriesContext(connection) as queries:
        client.get("/api/v1/audiences/")
    assert len([q for q in queries if q["sql"].startswith("UPDATE")]) == 1
    token.refresh_from_db()
    assert token.last_used_at > first


def test_a_token_costs_one_query_a_request(api):
    api.get("/api/v1/partners/")  # the first use writes last_used_at

    with CaptureQueriesContext(connection) as queries:
        assert api.get("/api/v1/partners/").status_code == 200

    assert [q["sql"].split(" FROM ")[1].split()[0] for q in queries] == ['"staff_apitoken"']


def test_a_token_over_the_rate_gets_429_with_retry_after(settings):
    settings.API_THROTTLE_RATE = "3/min"
    token, other = ApiTokenFactory(), ApiTokenFactory()
    client = bearer(token)

    assert [client.get("/api/v1/audiences/").status_code for _ in range(3)] == [200, 200, 200]
    response = client.get("/api/v1/audiences/")

    assert response.status_code == 429
    wait = int(response["Retry-After"])
    assert 55 <= wait <= 60
    assert response.json() == {
        "detail": f"Too many requests with this API token: the limit is 3 a minute. Try again in {wait} seconds."
    }
    assert bearer(other).get("/api/v1/audiences/").status_code == 200  # the limit is per token


def test_an_empty_rate_turns_the_throttle_off(settings):
    settings.API_THROTTLE_RATE = ""
    client = bearer(ApiTokenFactory())

    assert {client.get("/api/v1/audiences/").status_code for _ in range(5)} == {200}


def test_the_schema_describes_the_bearer_token(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()

    assert schema["components"]["securitySchemes"]["apiToken"]["scheme"] == "bearer"
    assert schema["components"]["securitySchemes"]["apiToken"]["bearerFormat"] == "ar_<prefix>_<secret>"


@pytest.mark.django_db(transaction=True)
def test_the_migration_drops_drf_plaintext_tokens():
    # The table as DRF's authtoken app left it in a database made while that app was installed.
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamp NOT NULL, user_id integer)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token VALUES ('9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b', '2026-01-01', 1)"
        )
    migration = importlib.import_module("staff.migrations.0003_drop_plaintext_tokens").Migration(
        "0003_drop_plaintext_tokens", "staff"
    )
    try:
        with connection.schema_editor() as editor:
            migration.apply(ProjectState(), editor)

        assert "authtoken_token" not in connection.introspection.table_names()
        with connection.schema_editor() as editor:
            migration.apply(ProjectState(), editor)  # a database that never had the table migrates too
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS authtoken_token")
