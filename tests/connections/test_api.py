"""The connections API: create with validation and backfill, operations, outbox and deliveries, deletes."""

import pytest

from audiences.models import Audience
from connections import services, tasks
from connections.drain import drain
from connections.models import Connection, OutboxMessage
from outputs.models import Output
from tests.connections.factories import (
    EMAILS,
    ConnectionFactory,
    StaticAudienceFactory,
    sandbox_members,
    sandbox_output,
)
from tests.outputs.factories import LIST_ID, MailchimpOutputFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/connections/"
LABEL = "'Potential Parisians' → 'Mailchimp (marketing)'"


def body(audience, output, **extra):
    return {"audience": audience.pk, "output": output.pk, "settings": {"list_id": LIST_ID}, **extra}


def test_it_refuses_settings_the_partner_does_not_take_naming_the_field_and_writes_nothing(
    api, parisians_with_a_device
):
    output = MailchimpOutputFactory()

    missing = api.post(URL, body(parisians_with_a_device, output, settings={}), format="json")
    unknown = api.post(
        URL, body(parisians_with_a_device, output, settings={"list_id": LIST_ID, "colour": "red"}), format="json"
    )
    mode = api.post(URL, body(parisians_with_a_device, output, delivery_mode="weekly"), format="json")
    no_audience = api.post(URL, {**body(parisians_with_a_device, output), "audience": 999}, format="json")

    assert missing.status_code == 400
    assert missing.json() == {"settings": {"list_id": ["This setting is required."]}}
    assert unknown.json() == {"settings": {"colour": ["Unknown setting."]}}
    assert mode.json() == {"delivery_mode": ['"weekly" is not a valid choice.']}
    assert no_audience.json() == {"audience": ['Invalid pk "999" - object does not exist.']}
    assert not Connection.objects.exists()
    assert not OutboxMessage.objects.exists()


def test_it_creates_a_connection_and_queues_the_members_the_partner_accepts(api, parisians_with_a_device):
    output = MailchimpOutputFactory()

    response = api.post(URL, body(parisians_with_a_device, output), format="json")

    assert response.status_code == 201, response.json()
    data = response.json()
    assert data["queued"] == 3  # three email addresses; the member with only an advertising ID is not queued
    assert data["pending"] == 3
    assert data["status"] == "active"
    assert data["delivery_mode"] == "realtime"
    assert data["partner"] == {"slug": "mailchimp", "name": "Mailchimp"}
    assert (data["audience_name"], data["output_name"]) == ("Potential Parisians", "Mailchimp (marketing)")
    assert data["settings"] == {"list_id": LIST_ID}
    assert sorted(OutboxMessage.objects.values_list("value", flat=True)) == EMAILS


def test_it_refuses_a_second_identical_connection(api, parisians_with_a_device):
    output = MailchimpOutputFactory()
    first = api.post(URL, body(parisians_with_a_device, output), format="json").json()

    again = api.post(URL, body(parisians_with_a_device, output), format="json")

    assert again.status_code == 400
    assert again.json() == {"non_field_errors": [f"{LABEL} already exists (connection {first['id']})."]}


def test_it_lists_connections_filtered_by_audience_output_status_and_partner(api, parisians_with_a_device):
    mine = ConnectionFactory(audience=parisians_with_a_device)
    other = ConnectionFactory(status=Connection.Status.PAUSED, output__name="Mailchimp (sales)")

    def ids(**params):
        return [c["id"] for c in api.get(URL, params).json()["results"]]

    assert ids() == [mine.pk, other.pk]
    assert ids(audience=parisians_with_a_device.pk) == [mine.pk]
    assert ids(output=other.output_id) == [other.pk]
    assert ids(status="paused") == [other.pk]
    assert ids(partner="mailchimp") == [mine.pk, other.pk]
    assert api.get(URL, {"status": "sleeping"}).status_code == 400


def test_it_changes_settings_and_queues_the_members_for_the_new_list(api, parisians_with_a_device):
    conn = services.connect(parisians_with_a_device, MailchimpOutputFactory(), {"list_id": LIST_ID})
    other = StaticAudienceFactory()
    url = f"{URL}{conn.pk}/"

    moved = api.patch(url, {"settings": {"list_id": "f0e1d2c3b4"}}, format="json")
    blank = api.patch(url, {"settings": {"list_id": ""}}, format="json")
    audience = api.patch(url, {"audience": other.pk}, format="json")
    mode = api.patch(url, {"delivery_mode": "interval", "interval_minutes": 30}, format="json")

    assert moved.status_code == 200, moved.json()
    assert (moved.json()["settings"], moved.json()["queued"]) == ({"list_id": "f0e1d2c3b4"}, 3)
    assert blank.json() == {"settings": {"list_id": ["This setting is required."]}}
    assert audience.json() == {"audience": ["A connection's audience cannot change; create a new connection."]}
    assert mode.status_code == 200
    assert (mode.json()["delivery_mode"], mode.json()["interval_minutes"], mode.json()["queued"]) == ("interval", 30, 0)
    assert mode.json()["settings"] == {"list_id": "f0e1d2c3b4"}


@pytest.mark.django_db(transaction=True)
def test_it_forwards_and_shows_the_messages_and_deliveries_with_filters(api, sandbox, parisians_with_a_device):
    sandbox.mailchimp_rejection("cat@example.com", "fake")
    pk = api.post(URL, body(parisians_with_a_device, sandbox_output(sandbox)), format="json").json()["id"]

    drain(pk)

    detail = api.get(f"{URL}{pk}/").json()
    assert {k: detail[k] for k in ("pending", "sent", "accepted", "rejected", "failed", "unaccepted")} == {
        "pending": 0, "sent": 3, "accepted": 2, "rejected": 1, "failed": 0, "unaccepted": 0,
    }  # fmt: skip
    assert detail["last_delivery_at"] is not None
    # The member's address stays on its message; the connection is read by staff who may not see identities.
    assert detail["last_error"] == "[identity] looks fake or invalid, please enter a real email address."
    assert sandbox_members(sandbox) == {"ann@example.com": "subscribed", "bob@example.com": "subscribed"}

    def values(**params):
        response = api.get(f"{URL}{pk}/messages/", params)
        assert response.status_code == 200, response.json()
        return [(m["value"], m["state"]) for m in response.json()["results"]]

    assert values() == [("cat@example.com", "rejected"), ("bob@example.com", "delivered"),
                        ("ann@example.com", "delivered")]  # fmt: skip
    assert values(state="rejected") == [("cat@example.com", "rejected")]
    assert values(identity="  Ann@Example.COM ") == [("ann@example.com", "delivered")]
    assert values(identity_type="email", action="add", state="delivered") == [
        ("bob@example.com", "delivered"),
        ("ann@example.com", "delivered"),
    ]
    assert values(identity_type="android_aaid") == []
    assert api.get(f"{URL}{pk}/messages/", {"state": "lost"}).json() == {
        "state": ["Select a valid choice. lost is not one of the available choices."]
    }
    rejected = api.get(f"{URL}{pk}/messages/", {"state": "rejected"}).json()["results"][0]
    assert rejected["last_error"]

    deliveries = api.get(f"{URL}{pk}/deliveries/").json()
    assert deliveries["count"] == 1
    batch = deliveries["results"][0]
    assert (batch["messages"], batch["accepted"], batch["rejected"], batch["http_status"]) == (3, 2, 1, 200)


def test_it_pauses_resumes_and_syncs_with_sentences_a_script_can_show(
    api, parisians_with_a_device, django_capture_on_commit_callbacks
):
    conn = services.connect(parisians_with_a_device, MailchimpOutputFactory(), {"list_id": LIST_ID})
    url = f"{URL}{conn.pk}/"

    paused = api.post(f"{url}pause/")
    again = api.post(f"{url}pause/")
    refused = api.post(f"{url}sync/")
    resumed = api.post(f"{url}resume/")
    with django_capture_on_commit_callbacks(execute=True):
        synced = api.post(f"{url}sync/")

    assert paused.status_code == 200
    assert (paused.json()["status"], paused.json()["pending"]) == ("paused", 3)
    assert paused.json()["detail"] == f"Paused {LABEL}. 3 messages wait until you resume."
    assert again.json()["detail"] == f"{LABEL} was already paused. 3 messages wait until you resume."
    assert refused.status_code == 400
    assert refused.json() == {"status": [f"{LABEL} is paused: resume it to send its 3 messages waiting."]}
    assert resumed.json()["status"] == "active"
    assert resumed.json()["detail"] == f"Resumed {LABEL}: 3 messages waiting go out now."
    assert synced.json()["detail"] == f"Sending the 3 messages waiting for {LABEL} now."
    assert Connection.objects.get().drain_queued_at is not None  # a drain task was queued for it


@pytest.mark.django_db(transaction=True)
def test_it_requeues_failed_messages_and_they_then_reach_the_partner(api, sandbox, parisians_with_a_device, settings):
    settings.RETRY_WINDOW_HOURS = 0  # give up at the first transient error
    sandbox.fault("mailchimp", "status", status=503, count=5)
    pk = api.post(URL, body(parisians_with_a_device, sandbox_output(sandbox)), format="json").json()["id"]
    drain(pk)
    assert api.get(f"{URL}{pk}/").json()["failed"] == 3

    sandbox.clear_faults()
    settings.RETRY_WINDOW_HOURS = 72
    retried = api.post(f"{URL}{pk}/retry-failed/")
    nothing = api.post(f"{URL}{pk + 1000}/retry-failed/")

    assert retried.status_code == 200
    assert (retried.json()["requeued"], retried.json()["pending"]) == (3, 3)
    assert retried.json()["detail"] == f"Requeued 3 messages that had failed for {LABEL}; they go out now."
    assert nothing.status_code == 404
    drain(pk)
    assert set(sandbox_members(sandbox)) == set(EMAILS)
    again = api.post(f"{URL}{pk}/retry-failed/").json()
    assert (again["requeued"], again["detail"]) == (0, f"{LABEL} has no failed messages to retry.")


def test_it_asks_whether_to_remove_the_members_before_deleting(api, parisians_with_a_device):
    conn = services.connect(parisians_with_a_device, MailchimpOutputFactory(), {"list_id": LIST_ID})
    question = ["Say whether to remove the audience's members from the partner first: true or false."]

    unsaid = api.delete(f"{URL}{conn.pk}/")
    unclear = api.delete(f"{URL}{conn.pk}/?remove_from_partner=maybe")
    kept = api.delete(f"{URL}{conn.pk}/?remove_from_partner=false")

    assert (unsaid.status_code, unsaid.json()) == (400, {"remove_from_partner": question})
    assert unclear.json() == {"remove_from_partner": question}
    assert kept.status_code == 204
    assert not Connection.objects.exists()
    assert not OutboxMessage.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_it_removes_the_members_at_the_partner_then_deletes_the_connection(api, sandbox, parisians_with_a_device):
    pk = api.post(URL, body(parisians_with_a_device, sandbox_output(sandbox)), format="json").json()["id"]
    drain(pk)
    assert set(sandbox_members(sandbox).values()) == {"subscribed"}

    response = api.delete(f"{URL}{pk}/?remove_from_partner=true")

    assert response.status_code == 202
    assert response.json() == {
        "status": "removing",
        "detail": f"Removing the audience's members from Mailchimp first (3 messages queued); {LABEL} is deleted "
        "once they are sent.",
        "pending": 3,
    }
    assert api.get(f"{URL}{pk}/").json()["status"] == "disconnecting"
    tasks.drain_connection(pk)
    assert sandbox_members(sandbox) == dict.fromkeys(EMAILS, "unsubscribed")
    assert api.get(f"{URL}{pk}/").status_code == 404


def test_it_refuses_to_delete_an_audience_that_is_still_connected_unless_told_what_to_do(api, parisians_with_a_device):
    services.connect(parisians_with_a_device, MailchimpOutputFactory(), {"list_id": LIST_ID})
    url = f"/api/v1/audiences/{parisians_with_a_device.pk}/"

    refused = api.delete(url)
    unclear = api.delete(f"{url}?disconnect=later")
    kept = api.delete(f"{url}?disconnect=keep")

    assert refused.status_code == 400
    assert refused.json() == {
        "connections": [f"Disconnect these first: {LABEL}, or pass ?disconnect=remove or ?disconnect=keep."]
    }
    assert unclear.json() == {
        "disconnect": ["Must be remove (remove the members from the partners first) or keep (leave them there)."]
    }
    assert kept.status_code == 204
    assert not Audience.objects.filter(pk=parisians_with_a_device.pk).exists()
    assert not Connection.objects.exists()


def test_it_disconnects_with_removal_before_an_output_can_be_deleted(api, parisians_with_a_device):
    output = MailchimpOutputFactory()
    conn = services.connect(parisians_with_a_device, output, {"list_id": LIST_ID})
    url = f"/api/v1/outputs/{output.pk}/"

    removing = api.delete(f"{url}?disconnect=remove")

    assert removing.status_code == 202
    assert removing.json() == {
        "status": "disconnecting",
        "detail": f"Removing the members from the partners first: {LABEL}. The output can be deleted once these "
        "connections are gone.",
        "connections": [conn.pk],
    }
    assert Output.objects.filter(pk=output.pk).exists()
    assert Connection.objects.get().status == "disconnecting"
    assert OutboxMessage.objects.filter(action="remove", state="pending").count() == 3
    assert api.delete(url).status_code == 400  # still connected until the removals are sent
    assert api.patch(f"{URL}{conn.pk}/", {"settings": {"list_id": "x"}}, format="json").json() == {
        "status": ["This connection is being disconnected; it can no longer be changed."]
    }
    assert api.delete(f"{url}?disconnect=keep").status_code == 204  # or let the members stay after all
    assert not Output.objects.exists()


def test_it_deletes_an_output_without_connections_at_once(api):
    output = MailchimpOutputFactory()
    assert api.delete(f"/api/v1/outputs/{output.pk}/").status_code == 204
    assert not Output.objects.exists()
