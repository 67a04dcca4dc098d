"""The connections admin: list, two-step add, change page with deliveries and messages, operations."""

import datetime as dt

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from audiences.models import Audience
from connections import services
from connections.admin.outbox import OutboxMessageAdmin
from connections.models import Connection, Delivery, OutboxLease, OutboxMessage
from tests.connections.factories import EMAILS, ConnectionFactory
from tests.outputs.factories import LIST_ID, MailchimpOutputFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/connections/connection/"
LABEL = "'Potential Parisians' → 'Mailchimp (marketing)'"


@pytest.fixture
def staff(admin_client):
    return admin_client


@pytest.fixture
def conn(parisians):
    return services.connect(parisians, MailchimpOutputFactory(), {"list_id": LIST_ID})


def said(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def page(response) -> str:
    assert response.status_code == 200
    return response.content.decode()


def test_it_lists_connections_with_status_counters_and_errors_in_a_bounded_number_of_queries(
    staff, django_assert_max_num_queries
):
    output = MailchimpOutputFactory()
    for n in range(20):
        ConnectionFactory(output=output, status="faulted", status_reason="Mailchimp rejected the API key.",
                          last_error=f"Error number {n} " + "x" * 100, sent_count=n)  # fmt: skip
    staff.get(LIST)  # warm the session and content types

    with django_assert_max_num_queries(6):  # session, user, two counts, the page of rows
        html = page(staff.get(LIST))

    assert html.count('title="Mailchimp rejected the API key."') == 20
    error = "Error number 7 " + "x" * 100  # one line cut at the cell's width, whole on hover
    assert f'<span class="relay-clip" style="max-width: 14em" title="{error}">{error}</span>' in html
    for column in ["connection", "status", "pending", "accepted", "rejected", "failed", "last error"]:
        assert f">{column.capitalize()}<" in html or f">{column}<" in html.lower()


def test_it_filters_by_status_partner_and_error(staff, conn):
    ConnectionFactory(output__name="Mailchimp (sales)", status="paused", last_error="Mailchimp had a server error.")
    assert "Potential Parisians" in page(staff.get(LIST, {"status__exact": "active"}))
    assert "Potential Parisians" not in page(staff.get(LIST, {"status__exact": "paused"}))
    assert "Mailchimp (sales)" in page(staff.get(LIST, {"has_error": "yes"}))
    assert "Potential Parisians" not in page(staff.get(LIST, {"has_error": "yes"}))
    assert "Potential Parisians" in page(staff.get(LIST, {"partner": "mailchimp"}))
    assert "Potential Parisians" not in page(staff.get(LIST, {"partner": "braze"}))


def test_it_adds_a_connection_in_two_steps_and_queues_the_backfill(staff, parisians):
    output = MailchimpOutputFactory()

    choose = page(staff.get(f"{LIST}add/"))
    form = page(staff.get(f"{LIST}add/", {"output": output.pk}))
    missing = staff.post(f"{LIST}add/?output={output.pk}", {"output": output.pk, "audience": parisians.pk})
    created = staff.post(
        f"{LIST}add/?output={output.pk}",
        {"output": output.pk, "audience": parisians.pk, "setting__list_id": LIST_ID, "delivery_mode": ""},
        follow=True,
    )

    assert "Connect an audience to Mailchimp (marketing)" in choose
    assert "List ID *" in form and "Mailchimp (marketing) (Mailchimp)" in form
    assert "This setting is required." in page(missing)
    conn = Connection.objects.get()
    assert created.redirect_chain[-1][0] == f"{LIST}{conn.pk}/change/"
    assert said(created) == [f"Connected {LABEL}. Queued 3 messages for the audience's current members."]
    assert (conn.settings, conn.delivery_mode) == ({"list_id": LIST_ID}, "realtime")
    assert OutboxMessage.objects.filter(connection=conn, state="pending").count() == 3


def test_it_shows_the_settings_errors_next_to_the_fields_and_writes_nothing(staff, parisians):
    output = MailchimpOutputFactory()
    response = staff.post(f"{LIST}add/?output={output.pk}", {"audience": parisians.pk, "setting__list_id": " "})
    html = page(response)
    row = html[html.index("errors field-setting__list_id") :]
    assert row.index("This setting is required.") < row.index('name="setting__list_id"')
    assert not Connection.objects.exists()
    assert not OutboxMessage.objects.exists()


def test_it_asks_about_the_members_at_the_partner_instead_of_deleting_a_connection(staff, conn):
    html = page(staff.get(f"{LIST}{conn.pk}/delete/"))
    assert "Disconnect (remove members from partner)" in html
    assert "Disconnect (keep members at partner)" in html
    assert f"{LIST}{conn.pk}/operate/disconnect-keep/" in html
    staff.post(f"{LIST}{conn.pk}/delete/", {"post": "yes"})
    assert Connection.objects.filter(pk=conn.pk).exists()


def test_it_shows_a_connection_with_counters_deliveries_and_messages(staff, conn):
    for n in range(25):
        Delivery.objects.create(
            connection=conn,
            started_at=timezone.now() - dt.timedelta(minutes=n),
            messages=n,
            accepted=n,
            http_status=200,
            response_excerpt=f"POST /lists/{LIST_ID} → 200 batch {n}",
        )
    Connection.objects.filter(pk=conn.pk).update(last_error="Mailchimp refused the request (HTTP 400).")

    html = page(staff.get(f"{LIST}{conn.pk}/change/"))

    assert "Recent deliveries (last 20)" in html
    assert "batch 19" in html and "batch 20" not in html
    assert "Recent messages (last 50)" in html
    assert all(email in html for email in EMAILS)
    assert "Mailchimp refused the request (HTTP 400)." in html
    assert f"/admin/connections/outboxmessage/?connection={conn.pk}" in html
    assert f"/admin/connections/delivery/?connection={conn.pk}" in html
    assert 'name="setting__list_id"' in html and LIST_ID in html
    for button in ["Sync now", "Pause", "Retry failed", "Disconnect (remove members from partner)"]:
        assert button in html


def test_it_saves_new_settings_and_queues_the_members_for_the_new_list(staff, conn):
    response = staff.post(
        f"{LIST}{conn.pk}/change/",
        {
            "setting__list_id": "f0e1d2c3b4",
            "delivery_mode": "realtime",
            "interval_minutes": "",
            "interval_messages": "",
        },
        follow=True,
    )
    assert response.status_code == 200
    conn.refresh_from_db()
    assert conn.settings == {"list_id": "f0e1d2c3b4"}
    assert any("queued 3 messages" in m for m in said(response))


def test_it_pauses_after_a_confirmation_and_says_what_happened(staff, conn):
    url = f"{LIST}{conn.pk}/operate/pause/"

    confirm = page(staff.get(url))
    assert "Sending stops." in confirm and "Yes, pause" in confirm
    assert Connection.objects.get().status == "active"  # nothing happens on GET

    done = staff.post(url, follow=True)

    assert done.redirect_chain[-1][0] == f"{LIST}{conn.pk}/change/"
    assert said(done) == [f"Paused {LABEL}. 3 messages wait until you resume."]
    assert Connection.objects.get().status == "paused"
    refused = staff.post(f"{LIST}{conn.pk}/operate/sync/", follow=True)
    assert said(refused) == [f"{LABEL} is paused: resume it to send its 3 messages waiting."]
    resumed = staff.post(f"{LIST}{conn.pk}/operate/resume/", follow=True)
    assert said(resumed) == [f"Resumed {LABEL}: 3 messages waiting go out now."]
    synced = staff.post(f"{LIST}{conn.pk}/operate/sync/", follow=True)
    assert said(synced) == [f"Sending the 3 messages waiting for {LABEL} now."]
    retried = staff.post(f"{LIST}{conn.pk}/operate/retry-failed/", follow=True)
    assert said(retried) == [f"{LABEL} has no failed messages to retry."]


def test_it_runs_a_bulk_action_after_a_confirmation_page(staff, conn):
    selected = {"action": "pause_selected", "_selected_action": [conn.pk]}

    confirm = page(staff.post(LIST, selected))
    assert "Yes, pause" in confirm and "Potential Parisians" in confirm
    assert Connection.objects.get().status == "active"

    done = staff.post(LIST, {**selected, "post": "yes"}, follow=True)
    assert said(done) == [f"Paused {LABEL}. 3 messages wait until you resume."]
    assert Connection.objects.get().status == "paused"


def test_it_disconnects_keeping_or_removing_the_members(staff, conn, parisians):
    other = services.connect(parisians, MailchimpOutputFactory(name="Mailchimp (sales)"), {"list_id": LIST_ID})

    removing = staff.post(LIST, {"action": "disconnect_remove_selected", "_selected_action": [conn.pk], "post": "yes"},
                          follow=True)  # fmt: skip
    keeping = staff.post(LIST, {"action": "disconnect_keep_selected", "_selected_action": [other.pk], "post": "yes"},
                         follow=True)  # fmt: skip

    assert said(removing) == [
        f"Removing the audience's members from Mailchimp first (3 messages queued); {LABEL} is deleted once they "
        "are sent."
    ]
    assert Connection.objects.get().status == "disconnecting"
    assert said(keeping) == [
        "Disconnected 'Potential Parisians' → 'Mailchimp (sales)'. The audience's members stay at Mailchimp."
    ]
    assert list(Connection.objects.values_list("pk", flat=True)) == [conn.pk]
    assert "delete_selected" not in page(staff.get(LIST))


def test_it_lists_an_audiences_connections_and_refuses_to_delete_it_while_connected(staff, conn, parisians):
    change = page(staff.get(f"/admin/audiences/audience/{parisians.pk}/change/"))
    assert "Mailchimp (marketing) (Mailchimp)" in change and "Active" in change

    delete = page(staff.get(f"/admin/audiences/audience/{parisians.pk}/delete/"))
    assert "is still connected. Deleting is refused until these connections are disconnected" in delete
    assert "Potential Parisians → Mailchimp (marketing)" in delete
    assert f"{LIST}?audience__id__exact={parisians.pk}" in delete
    staff.post(f"/admin/audiences/audience/{parisians.pk}/delete/", {"post": "yes"})
    assert Audience.objects.filter(pk=parisians.pk).exists()

    output_page = page(staff.get(f"/admin/outputs/output/{conn.output_id}/delete/"))
    assert "is still connected" in output_page
    filtered = page(staff.get(LIST, {"audience__id__exact": parisians.pk}))
    assert "Potential Parisians" in filtered


def test_it_shows_messages_and_deliveries_read_only_and_finds_a_message_by_value(staff, conn):
    Delivery.objects.create(connection=conn, started_at=timezone.now(), messages=3, accepted=3, http_status=200)

    found = page(staff.get("/admin/connections/outboxmessage/", {"q": " Ann@Example.com"}))
    by_connection = page(
        staff.get("/admin/connections/outboxmessage/", {"connection": conn.pk, "state__exact": "pending"})
    )
    deliveries = page(staff.get("/admin/connections/delivery/", {"connection": conn.pk}))
    message = OutboxMessage.objects.get(value="ann@example.com")
    detail = page(staff.get(f"/admin/connections/outboxmessage/{message.pk}/change/"))

    assert "ann@example.com" in found and "bob@example.com" not in found
    assert all(email in by_connection for email in EMAILS)
    assert "Potential Parisians → Mailchimp (marketing)" in deliveries
    assert "Save" not in detail and "Add outbox message" not in found


def test_sorting_messages_by_state_puts_those_a_worker_holds_under_in_flight(staff, conn):
    held, *waiting = OutboxMessage.objects.filter(connection=conn).order_by("pk")
    now = timezone.now()
    OutboxLease.objects.create(
        connection=conn, message_ids=[held.pk], created_at=now, expires_at=now + dt.timedelta(minutes=2)
    )

    state_column = OutboxMessageAdmin.list_display.index("state_now")  # the changelist counts from 0
    listed = page(staff.get("/admin/connections/outboxmessage/", {"connection": conn.pk, "o": state_column}))

    rows = [listed.index(f">{m.value}<") for m in (held, *waiting)]
    assert rows[0] == min(rows)  # in flight sorts before pending, though its stored state is pending too
    assert listed.count("In flight") >= 2  # the row, and the state filter's choice
    held_row = listed[rows[0] : listed.index("</tr>", rows[0])]
    assert "In flight" in held_row and "next " not in held_row
    detail = page(staff.get(f"/admin/connections/outboxmessage/{held.pk}/change/"))
    assert "In flight" in detail and "Pending" not in detail
