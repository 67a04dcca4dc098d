"""`/metrics`: the Prometheus text format an operator scrapes to watch forwarding."""

import datetime as dt
import re

import pytest
from django.test import Client
from django.utils import timezone

from connections.models import Connection, Delivery, OutboxMessage
from tests.connections.factories import ConnectionFactory, StaticAudienceFactory
from tests.outputs.factories import MailchimpOutputFactory

pytestmark = pytest.mark.django_db


def sample(text, name, **labels):
    """The value of the sample `name{labels…}` (labels matched as a subset), or None."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', head))
        if all(found.get(k) == str(v) for k, v in labels.items()):
            return float(value)
    return None


def message(conn, n, state="pending", age=dt.timedelta(0)):
    now = timezone.now()
    return OutboxMessage.objects.create(
        connection=conn,
        identity_type="email",
        value=f"m{n}@example.com",
        action="add",
        state=state,
        next_attempt_at=now,
        created_at=now - age,
        updated_at=now,
    )


TOKEN = "s3cret-token"


@pytest.fixture
def conn():
    conn = ConnectionFactory(audience=StaticAudienceFactory(name='VIP "gold"'), output=MailchimpOutputFactory())
    Connection.objects.filter(pk=conn.pk).update(sent_count=10, accepted_count=7, rejected_count=2, failed_count=1)
    return conn


def test_it_reports_waiting_messages_counters_latency_and_faults(conn, settings):
    settings.METRICS_TOKEN = TOKEN
    message(conn, 1, age=dt.timedelta(minutes=5))
    message(conn, 2, state="in_flight")
    message(conn, 3, state="delivered", age=dt.timedelta(hours=2))
    for ms in (100, 200, 300, 400):
        Delivery.objects.create(connection=conn, started_at=timezone.now(), duration_ms=ms, messages=1)
    Delivery.objects.create(connection=conn, started_at=timezone.now() - dt.timedelta(hours=2), duration_ms=9000)
    faulted = ConnectionFactory(output=MailchimpOutputFactory(name="Mailchimp (faulted)"), status="faulted")

    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    text = response.content.decode()
    mine = {"connection": conn.pk, "partner": "mailchimp"}
    assert sample(text, "relay_outbox_waiting_messages", **mine) == 2
    assert 290 <= sample(text, "relay_outbox_oldest_waiting_seconds", **mine) <= 400
    assert sample(text, "relay_outbox_waiting_messages", connection=faulted.pk) == 0
    assert sample(text, "relay_outbox_oldest_waiting_seconds", connection=faulted.pk) == 0
    assert sample(text, "relay_messages_sent_total", **mine) == 10
    assert sample(text, "relay_messages_delivered_total", **mine) == 7
    assert sample(text, "relay_messages_rejected_total", **mine) == 2
    assert sample(text, "relay_messages_failed_total", **mine) == 1
    # The last hour only: the 9-second delivery two hours ago is outside the window.
    assert sample(text, "relay_partner_latency_seconds_count", **mine) == 4
    assert sample(text, "relay_partner_latency_seconds_sum", **mine) == pytest.approx(1.0)
    assert 0.2 <= sample(text, "relay_partner_latency_seconds", quantile="0.5", **mine) <= 0.3
    assert sample(text, "relay_partner_latency_seconds", quantile="0.99", **mine) <= 0.4
    assert sample(text, "relay_connections_faulted") == 1
    assert sample(text, "relay_connections", status="active") == 1
    assert 'audience="VIP \\"gold\\""' in text  # label values are escaped
    assert "# TYPE relay_messages_delivered_total counter" in text
    assert "# TYPE relay_partner_latency_seconds summary" in text


def test_it_asks_for_the_bearer_token_when_one_is_set(conn, settings):
    settings.METRICS_TOKEN = "s3cret-token"

    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics").headers["WWW-Authenticate"].startswith("Bearer")
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Token s3cret-token").status_code == 401
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-token")
    assert response.status_code == 200
    assert b"relay_outbox_waiting_messages" in response.content


def test_without_a_token_it_is_refused_when_debug_is_off(conn, settings):
    settings.METRICS_TOKEN, settings.DEBUG = "", False

    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything")

    assert response.status_code == 403
    assert response.content.decode() == (
        "Metrics are not served without a token: set METRICS_TOKEN and scrape /metrics with "
        "Authorization: Bearer <token>.\n"
    )
    assert b"VIP" not in response.content


def test_without_a_token_it_is_open_on_a_developers_machine(conn, settings):
    settings.METRICS_TOKEN, settings.DEBUG = "", True

    assert b"relay_outbox_waiting_messages" in Client().get("/metrics").content


def test_its_queries_do_not_grow_with_the_connections(settings, django_assert_max_num_queries):
    settings.METRICS_TOKEN = TOKEN
    for n in range(5):
        ConnectionFactory(output=MailchimpOutputFactory(name=f"Mailchimp {n}"))

    with django_assert_max_num_queries(4):
        assert Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200
