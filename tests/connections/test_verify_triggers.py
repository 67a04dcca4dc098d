"""Verification runs by itself: after a connection is created or changed, after a fault, and every hour."""

import pytest
from django.conf import settings
from django.db import transaction
from django_q.conf import Conf
from django_q.models import OrmQ, Schedule

from connections import services, tasks
from connections.models import Connection
from tests.connections.factories import StaticAudienceFactory, sandbox_output
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY, MailchimpOutputFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def q_sync(monkeypatch):
    """django-q2 runs each queued task at once, in this process (its own sync mode): the real task path."""
    monkeypatch.setattr(Conf, "SYNC", True)


def queued_verifications() -> list:
    return [q.task["args"] for q in OrmQ.objects.all() if q.task["func"] == "connections.tasks.verify_connection"]


def test_it_queues_a_new_connections_verification_in_the_broker_once_committed(
    parisians, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks() as callbacks:
        conn = services.connect(parisians, MailchimpOutputFactory(), {"list_id": LIST_ID})
        assert queued_verifications() == []  # nothing before the commit
    for callback in callbacks:
        callback()

    assert queued_verifications() == [(conn.pk,)]


def test_it_verifies_a_new_connection_through_the_queued_task(
    api, sandbox, parisians, q_sync, django_capture_on_commit_callbacks
):
    output = sandbox_output(sandbox)

    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(
            "/api/v1/connections/",
            {"audience": parisians.pk, "output": output.pk, "settings": {"list_id": "nope000000"}},
            format="json",
        )

    conn = Connection.objects.get(pk=response.json()["id"])
    assert conn.verified_at is not None
    assert conn.verification_status == "failing"
    assert conn.verification_checks[1]["detail"] == "Mailchimp has no list with ID 'nope000000' in this account."


def test_it_verifies_again_when_settings_change_and_not_when_saved_unchanged(
    sandbox, parisians, q_sync, django_capture_on_commit_callbacks
):
    output = sandbox_output(sandbox)
    conn = services.connect(parisians, output, {"list_id": "nope000000"})  # not committed: not verified
    assert Connection.objects.get(pk=conn.pk).verified_at is None

    with django_capture_on_commit_callbacks(execute=True):
        services.update_connection(conn, {"list_id": "nope000000"})
    assert Connection.objects.get(pk=conn.pk).verified_at is None

    with django_capture_on_commit_callbacks(execute=True):
        services.update_connection(conn, {"list_id": LIST_ID})
    conn.refresh_from_db()
    assert conn.verification_status == "ok"


def test_it_queues_nothing_for_a_rolled_back_connection(parisians, django_capture_on_commit_callbacks):
    output = MailchimpOutputFactory()
    with django_capture_on_commit_callbacks() as callbacks:
        try:
            with transaction.atomic():
                services.connect(parisians, output, {"list_id": LIST_ID})
                raise RuntimeError("the caller failed after connecting")
        except RuntimeError:
            pass

    assert callbacks == []


def test_it_sets_the_fault_hook_to_queue_a_verification():
    assert settings.CONNECTION_FAULT_HOOK == "connections.tasks.verify_after_fault"


@pytest.mark.django_db(transaction=True)  # the drain sends from a pool of threads
def test_it_verifies_a_connection_that_faults_while_forwarding(sandbox, parisians, monkeypatch):
    conn = services.connect(parisians, sandbox_output(sandbox), {"list_id": LIST_ID})  # its tasks wait in the broker
    sandbox.revoke("mailchimp", MAILCHIMP_KEY)
    monkeypatch.setattr(Conf, "SYNC", True)

    tasks.drain_connection(conn.pk)

    conn.refresh_from_db()
    assert conn.status == Connection.Status.FAULTED
    assert conn.verification_status == "failing"
    credentials = conn.verification_checks[0]
    assert (credentials["name"], credentials["status"]) == ("credentials", "failing")
    assert credentials["hint"] == (
        "Check that the key is active and that its suffix (us6) matches your account's data center: "
        "Account → Extras → API keys."
    )
    assert "Forwarding stopped" in next(c["detail"] for c in conn.verification_checks if c["name"] == "status")


def test_it_keeps_an_hourly_verify_schedule_after_migrate():
    schedule = Schedule.objects.get(name="Verify connections")

    assert (schedule.func, schedule.schedule_type, schedule.repeats) == (
        "connections.tasks.verify_all",
        Schedule.HOURLY,
        -1,
    )


def test_it_verifies_every_connection_on_schedule_but_those_being_disconnected(
    sandbox, parisians, q_sync, django_capture_on_commit_callbacks
):
    output = sandbox_output(sandbox)
    good = services.connect(parisians, output, {"list_id": LIST_ID})
    missing = services.connect(parisians, output, {"list_id": "nope000000"})
    leaving = services.connect(StaticAudienceFactory(name="Leaving"), output, {"list_id": LIST_ID})
    Connection.objects.filter(pk=leaving.pk).update(status=Connection.Status.DISCONNECTING)

    with django_capture_on_commit_callbacks(execute=True):
        queued = tasks.verify_all()

    assert queued == [good.pk, missing.pk]
    statuses = dict(Connection.objects.values_list("pk", "verification_status"))
    assert statuses == {good.pk: "ok", missing.pk: "failing", leaving.pk: "unverified"}


def test_it_skips_a_connection_deleted_before_its_task_ran():
    assert tasks.verify_connection(999999) is None
