"""The dashboard on the admin index: what needs attention first, what waits, what went out in the last 24 hours."""

import datetime as dt
import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections import dashboard
from connections.charts import Bucket, hourly_bars
from connections.models import Connection, Delivery
from tests.admin.conftest import message, page
from tests.connections.factories import ConnectionFactory, StaticAudienceFactory
from tests.outputs.factories import MailchimpOutputFactory

pytestmark = pytest.mark.django_db

INDEX = "/admin/"
BAD_KEY = [
    {"name": "credentials", "status": "ok", "detail": "Mailchimp accepted the API key.", "hint": ""},
    {
        "name": "destination",
        "status": "failing",
        "detail": "Mailchimp has no list a1b2c3d4e5.",
        "hint": "Copy the List ID from Audience → Settings → Audience name and defaults.",
    },
]
LATE = [
    {"name": "credentials", "status": "ok", "detail": "Mailchimp accepted the API key.", "hint": ""},
    {
        "name": "waiting",
        "status": "warning",
        "detail": "12 message(s) waiting longer than 15 minutes.",
        "hint": "Check that a qcluster is running.",
    },
]


def connection_to(audience_name, output_name="Mailchimp (marketing)", **fields):
    output = MailchimpOutputFactory._meta.model.objects.filter(name=output_name).first()
    return ConnectionFactory(
        audience=StaticAudienceFactory(name=audience_name),
        output=output or MailchimpOutputFactory(name=output_name),
        **fields,
    )


def rows_in_order(html: str) -> list[str]:
    return re.findall(r"<strong>([^<]+)</strong> → ", html)


def test_it_puts_faulted_and_failing_connections_first_with_what_to_do(admin_client):
    connection_to("Alpha", verification_status="ok")
    connection_to("Bravo", status="paused", status_reason="Paused by an operator.")
    connection_to("Charlie", verification_status="failing", verification_checks=BAD_KEY)
    connection_to(
        "Delta",
        status="faulted",
        status_reason="Mailchimp rejected the API key. Check that the key is active.",
        verification_status="failing",
    )
    connection_to("Echo", verification_status="warning", verification_checks=LATE)

    html = page(admin_client.get(INDEX))

    assert "2 connections need attention" in html
    assert rows_in_order(html) == ["Delta", "Charlie", "Echo", "Bravo", "Alpha"]
    assert "Mailchimp rejected the API key. Check that the key is active." in html
    assert "Mailchimp has no list a1b2c3d4e5." in html
    assert "Copy the List ID from Audience → Settings → Audience name and defaults." in html
    assert "12 message(s) waiting longer than 15 minutes." in html
    assert "Paused by an operator." in html
    for label in ["1 faulted", "1 failing", "1 warning", "1 paused", "1 ok"]:
        assert f">{label}</span>" in html
    delta = Connection.objects.get(audience__name="Delta")
    assert f'href="/admin/connections/connection/{delta.pk}/change/"' in html


def test_it_says_all_connections_are_working_when_they_are(admin_client):
    for name in ["Alpha", "Bravo", "Charlie"]:
        connection_to(name, verification_status="ok", verified_at=timezone.now() - dt.timedelta(minutes=5))

    html = page(admin_client.get(INDEX))

    assert "All 3 connections are working" in html
    assert "need attention" not in html
    assert "Nothing to do. Verified 5\xa0minutes ago." in html


@pytest.mark.parametrize(
    "counts, sentence, tone",
    [
        ({}, "No connections yet", "quiet"),
        ({"ok": 1}, "The connection is working", "good"),
        ({"ok": 2}, "Both connections are working", "good"),
        ({"ok": 4, "faulted": 1}, "1 connection needs attention", "bad"),
        ({"failing": 2, "warning": 1}, "2 connections need attention", "bad"),
        ({"ok": 3, "warning": 2}, "2 connections have warnings", "warn"),
        ({"ok": 3, "paused": 1}, "3 connections are working; 1 is paused", "quiet"),
        ({"ok": 1, "unverified": 2}, "1 connection is working; 2 are not verified", "quiet"),
    ],
)
def test_it_headlines_what_needs_attention(counts, sentence, tone):
    assert dashboard.headline(counts) == (sentence, tone)


def test_it_counts_the_messages_waiting_per_connection(admin_client):
    alpha = connection_to("Alpha", verification_status="ok")
    connection_to("Bravo", verification_status="ok")
    for n in range(3):
        message(alpha, f"p{n}@example.com")
    message(alpha, "flying@example.com", state="in_flight")
    message(alpha, "done@example.com", state="delivered")

    rows = {r.conn.audience.name: r.waiting for r in dashboard.build(_superuser()).rows}

    assert rows == {"Alpha": 4, "Bravo": 0}


def _superuser():
    from django.contrib.auth import get_user_model

    return get_user_model()(is_superuser=True, is_active=True)


def test_it_charts_delivered_and_rejected_per_hour_over_the_last_24_hours(admin_client):
    conn = connection_to("Alpha", verification_status="ok")
    now = timezone.now()
    two_hours_ago = now - dt.timedelta(hours=2)
    Delivery.objects.create(connection=conn, started_at=two_hours_ago, messages=4, accepted=3, rejected=1)
    Delivery.objects.create(connection=conn, started_at=two_hours_ago, messages=5, accepted=5)
    Delivery.objects.create(connection=conn, started_at=now, messages=2, accepted=2)
    Delivery.objects.create(connection=conn, started_at=now - dt.timedelta(hours=25), messages=9, accepted=9)

    html = page(admin_client.get(INDEX))

    hour = timezone.localtime(two_hours_ago).replace(minute=0, second=0, microsecond=0)
    label = f"{hour:%H}:00–{hour + dt.timedelta(hours=1):%H}:00"
    assert f"<title>{label}: 8 delivered, 1 rejected</title>" in html
    [row] = dashboard.build(_superuser()).rows
    assert (row.delivered, row.rejected) == (10, 1)  # the delivery of 25 hours ago is not counted
    assert html.count('class="relay-chart"') == 2  # the connection's and the totals
    assert html.count('<rect class="relay-bar-slot"') == 48  # 24 hours each


def test_its_charts_are_svg_drawn_by_the_server_with_nothing_to_fetch(admin_client):
    connection_to("Alpha", verification_status="ok")

    html = page(admin_client.get(INDEX))
    start = html.index('id="relay-dashboard"')
    part = html[start : html.index('id="content-main"')]

    assert "<svg" in part and "<script" not in part
    assert re.findall(r'(?:src|href)="https?://', part) == []


def test_a_chart_marks_every_hour_and_keeps_small_counts_visible():
    buckets = [Bucket("00:00–01:00", 1000, 0), Bucket("01:00–02:00", 1, 0), Bucket("02:00–03:00", 0, 0)]

    svg = str(hourly_bars(buckets, width=30, height=20))

    assert svg.count("<title>") == 4  # the chart's and one per bar
    assert "<title>01:00–02:00: 1 delivered, 0 rejected</title>" in svg
    heights = re.findall(r'class="relay-bar-good" x="[^"]+" y="[^"]+" width="[^"]+" height="([^"]+)"', svg)
    assert [float(h) for h in heights] == [20.0, 1.0, 0.0]


def test_it_lists_audiences_with_their_sizes_and_connection_counts(admin_client):
    alpha = connection_to("Alpha", verification_status="ok").audience
    ConnectionFactory(audience=alpha, output=MailchimpOutputFactory(name="Mailchimp (sales)"))
    StaticAudienceFactory(name="Lonely", size=7)
    type(alpha).objects.filter(pk=alpha.pk).update(size=1234)

    [big, lonely] = dashboard.build(_superuser()).audiences
    html = page(admin_client.get(INDEX))

    assert (big.audience.name, big.audience.size, big.connections) == ("Alpha", 1234, 2)
    assert (lonely.audience.name, lonely.connections) == ("Lonely", 0)
    assert ">1,234</td>" in html


def test_it_invites_to_connect_an_audience_when_there_is_none(admin_client):
    html = page(admin_client.get(INDEX))

    assert "No connections yet" in html
    assert "No audience is connected to a partner yet." in html
    assert "Connect an audience →" in html


def _index_queries(client) -> int:
    client.get(INDEX)  # warm the session and content types
    with CaptureQueriesContext(connection) as queries:
        page(client.get(INDEX))
    return len(queries)


def test_its_query_count_does_not_grow_with_connections(admin_client):
    def add(n, start):
        for i in range(start, start + n):
            conn = connection_to(f"Audience {i:02d}", f"Output {i % 4}", verification_status="ok")
            message(conn, f"p{i}@example.com")
            Delivery.objects.create(connection=conn, started_at=timezone.now(), messages=1, accepted=1)

    add(3, 0)
    with_3 = _index_queries(admin_client)
    add(27, 3)
    with_30 = _index_queries(admin_client)

    assert with_30 == with_3
    assert with_3 <= 7  # session, user, connections with waiting counts, deliveries by hour, audiences, recent actions


def test_it_shows_an_operator_the_dashboard_and_hides_it_from_staff_without_connections(
    client, operator, django_user_model
):
    connection_to("Alpha", verification_status="ok")
    client.force_login(operator)
    assert "The connection is working" in page(client.get(INDEX))

    someone = django_user_model.objects.create_user("sam", password="pw-sam-1", is_staff=True)
    client.force_login(someone)
    assert 'id="relay-dashboard"' not in client.get(INDEX).content.decode()
