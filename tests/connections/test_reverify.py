"""A verdict is never older than the facts it judged: fixing a problem re-verifies what it affects by itself.

Fix-then-resume shows OK everywhere — the connection page, the dashboard, the API and the output's credentials —
without anyone pressing Verify now, whether the fix was a key, a List ID or a resume after the partner side was
put right. Until the queued verification has run, every door says it is being re-checked.
"""

import datetime as dt
import html
import re
import threading

import pytest
from django.core.management import call_command
from django.db import connection as db
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

from connections import fanout, reverify, services, tasks, verification
from connections.models import Connection
from outputs.models import Output
from tests.connections.factories import EMAILS, sandbox_output
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY, WRONG_MAILCHIMP_KEY, MailchimpOutputFactory

LIST = "/admin/connections/connection/"
INLINES = {"connections-TOTAL_FORMS": "0", "connections-INITIAL_FORMS": "0"}
RECHECKING = "Re-checking after a change: the result shows here once a worker has run the verification."


@pytest.fixture
def q_sync(monkeypatch):
    """django-q2 runs each queued task at once, in this process (its own sync mode): the real task path."""
    monkeypatch.setattr(Conf, "SYNC", True)


def text(response) -> str:
    """The page as a person reads it: tags dropped, entities decoded, whitespace collapsed."""
    assert response.status_code == 200
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


def output_form(output, **changes) -> dict:
    data = {
        "name": output.name,
        "base_url": output.base_url,
        "setting__api_key": "",
        "setting__email_type": "html",
        "setting__double_optin": "",
        "setting__delete_on_subscription_end": "",
        **INLINES,
    }
    return {**data, **changes}


def failing_checks(conn) -> list[str]:
    return [c["name"] for c in conn.verification_checks if c["status"] != "ok"]


def assert_ok_everywhere(admin_client, api, conn):
    """The connection page, the dashboard, the API and the output's credentials all say it works."""
    conn.refresh_from_db()
    assert (conn.status, conn.verification_status) == ("active", "ok"), conn.verification_checks
    page = text(admin_client.get(f"{LIST}{conn.pk}/change/"))
    assert "Verification Status: ok Verified just now (" in page
    assert "failing" not in page and "re-checking" not in page
    assert "The connection is working" in text(admin_client.get("/admin/"))
    body = api.get(f"/api/v1/connections/{conn.pk}/").json()
    assert (body["status"], body["verification_status"]) == ("active", "ok")
    output = api.get(f"/api/v1/outputs/{conn.output_id}/").json()
    assert output["credentials_ok"] is True
    assert output["credentials_message"] == "Mailchimp accepted the API key (data center us6)."


@pytest.mark.django_db(transaction=True)  # the drain sends from a pool of threads
def test_fixing_the_key_in_the_admin_then_resuming_shows_ok_everywhere(admin_client, api, sandbox, parisians, q_sync):
    sandbox.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Potential Parisians")
    output = MailchimpOutputFactory(api_key=WRONG_MAILCHIMP_KEY, base_url=f"{sandbox.base_url}/mailchimp/{{dc}}")
    conn = services.connect(parisians, output, {"list_id": LIST_ID})  # verified, drained: the key is refused
    conn.refresh_from_db()
    assert (conn.status, conn.verification_status) == ("faulted", "failing")
    admin_client.post(f"/admin/outputs/output/{output.pk}/check/")
    assert Output.objects.get(pk=output.pk).credentials_ok is False

    saved = admin_client.post(
        f"/admin/outputs/output/{output.pk}/change/", output_form(output, setting__api_key=MAILCHIMP_KEY)
    )

    assert saved.status_code == 302
    conn.refresh_from_db()
    assert Output.objects.get(pk=output.pk).credentials_ok is True  # checked again, nobody pressed anything
    assert failing_checks(conn) == ["status"]  # the key works now; only the stop remains, until a resume
    page = text(admin_client.get(f"{LIST}{conn.pk}/change/"))
    assert "Mailchimp accepted the API key (data center us6)." in page
    dashboard = text(admin_client.get("/admin/"))
    assert "The checks pass now: resume the connection to send what is waiting." in dashboard

    admin_client.post(f"{LIST}{conn.pk}/operate/resume/")

    assert_ok_everywhere(admin_client, api, conn)
    assert sorted(sandbox.mailchimp_list_state(LIST_ID)["members"]) == EMAILS


@pytest.mark.django_db(transaction=True)
def test_fixing_the_list_id_through_the_api_then_resuming_shows_ok_everywhere(
    admin_client, api, sandbox, parisians, q_sync
):
    output = sandbox_output(sandbox)
    created = api.post(
        "/api/v1/connections/",
        {"audience": parisians.pk, "output": output.pk, "settings": {"list_id": "nope000000"}},
        format="json",
    )
    conn = Connection.objects.get(pk=created.json()["id"])
    assert (conn.status, conn.verification_status) == ("faulted", "failing")
    assert "destination" in failing_checks(conn)

    fixed = api.patch(f"/api/v1/connections/{conn.pk}/", {"settings": {"list_id": LIST_ID}}, format="json")

    assert fixed.status_code == 200
    conn.refresh_from_db()
    assert failing_checks(conn) == ["status"]  # the list is found; forwarding waits for the resume

    resumed = api.post(f"/api/v1/connections/{conn.pk}/resume/")

    assert resumed.status_code == 200
    assert_ok_everywhere(admin_client, api, conn)
    assert [c["detail"] for c in conn.verification_checks if c["name"] == "partner count"] == [
        "Mailchimp reports 3, as many as were forwarded and accepted."
    ]


@pytest.mark.django_db(transaction=True)
def test_resuming_after_the_partner_side_was_fixed_shows_ok_everywhere(admin_client, api, sandbox, parisians, q_sync):
    output = sandbox_output(sandbox)
    sandbox.revoke("mailchimp", MAILCHIMP_KEY)
    conn = services.connect(parisians, output, {"list_id": LIST_ID})
    conn.refresh_from_db()
    assert (conn.status, conn.verification_status) == ("faulted", "failing")
    sandbox.mailchimp_account(MAILCHIMP_KEY)  # the key is active again at Mailchimp: nothing changed here

    call_command("resume", str(conn.pk))

    assert_ok_everywhere(admin_client, api, conn)


@pytest.mark.django_db(transaction=True)
def test_pausing_and_resuming_with_nothing_waiting_verifies_each_time(admin_client, api, sandbox, parisians, q_sync):
    conn = services.connect(parisians, sandbox_output(sandbox), {"list_id": LIST_ID})  # verified and sent

    admin_client.post(f"{LIST}{conn.pk}/operate/pause/")

    conn.refresh_from_db()
    assert (conn.verification_status, failing_checks(conn)) == ("warning", ["status"])

    admin_client.post(f"{LIST}{conn.pk}/operate/resume/")  # nothing waits, so nothing is sent: no delivery tells

    assert_ok_everywhere(admin_client, api, conn)


@pytest.mark.django_db(transaction=True)
def test_a_delivery_accepted_after_a_failing_verdict_verifies_again(sandbox, parisians, q_sync):
    output = sandbox_output(sandbox)
    conn = Connection.objects.create(audience=parisians, output=output, settings={"list_id": LIST_ID},
                                     delivery_mode="realtime")  # fmt: skip
    sandbox.revoke("mailchimp", MAILCHIMP_KEY)
    verification.verify(conn)
    assert Connection.objects.get(pk=conn.pk).verification_status == "failing"
    sandbox.mailchimp_account(MAILCHIMP_KEY)  # put right at Mailchimp: nothing is saved here
    fanout.backfill(conn)

    tasks.drain_connection(conn.pk)

    conn.refresh_from_db()
    assert (conn.accepted_count, conn.verification_status) == (3, "ok")


@pytest.mark.django_db(transaction=True)
def test_a_verdict_that_stands_is_not_verified_again_after_every_delivery(sandbox, parisians, q_sync):
    output = sandbox_output(sandbox)
    conn = services.connect(parisians, output, {"list_id": LIST_ID})
    # A failing check a delivery does not answer (here: members the partner has dropped) keeps its verdict.
    checks = [{"name": "credentials", "status": "ok", "detail": "", "hint": ""},
              {"name": "expiry", "status": "failing", "detail": "", "hint": ""}]  # fmt: skip
    Connection.objects.filter(pk=conn.pk).update(verification_status="failing", verification_checks=checks)
    conn.refresh_from_db()

    assert reverify.delivered(conn, accepted=3) == []
    assert Connection.objects.get(pk=conn.pk).verification_status == "failing"


@pytest.mark.django_db
def test_every_door_says_re_checking_until_the_verification_has_run(
    admin_client, api, sandbox, parisians, django_capture_on_commit_callbacks
):
    output = sandbox_output(sandbox, api_key=WRONG_MAILCHIMP_KEY)
    conn = services.connect(parisians, output, {"list_id": LIST_ID})
    verification.verify(conn)
    assert Connection.objects.get(pk=conn.pk).verification_status == "failing"

    with django_capture_on_commit_callbacks() as callbacks:  # the worker has not run yet
        admin_client.post(
            f"/admin/outputs/output/{output.pk}/change/", output_form(output, setting__api_key=MAILCHIMP_KEY)
        )

    page = text(admin_client.get(f"{LIST}{conn.pk}/change/"))
    assert f"Verification Status: re-checking… {RECHECKING} Size funnel" in page
    assert "Mailchimp rejected the API key" not in page  # the old verdict is not shown as the current one
    listed = admin_client.get(LIST).content.decode()
    assert f'title="{RECHECKING}">re-checking…</span>' in listed
    dashboard = text(admin_client.get("/admin/"))
    assert "None is working; 1 is re-checking" in dashboard and RECHECKING in dashboard
    assert api.get(f"/api/v1/connections/{conn.pk}/").json()["verification_status"] == "checking"
    body = api.get(f"/api/v1/outputs/{output.pk}/").json()
    assert (body["credentials_ok"], body["credentials_message"]) == (
        None,
        "Re-checking the credentials after the change.",
    )
    output_page = text(admin_client.get(f"/admin/outputs/output/{output.pk}/change/"))
    assert "Re-checking the credentials after the change." in output_page, output_page

    for callback in callbacks:
        callback()
    queued = sorted(q.task["func"] for q in OrmQ.objects.all())
    assert queued == ["connections.tasks.verify_connection", "outputs.tasks.check_changed"]


@pytest.mark.django_db
def test_it_says_to_look_for_a_worker_when_a_re_check_waits_too_long(admin_client, parisians):
    conn = services.connect(parisians, MailchimpOutputFactory(), {"list_id": LIST_ID})
    services.pause(conn)
    Connection.objects.filter(pk=conn.pk).update(facts_changed_at=timezone.now() - dt.timedelta(minutes=5))

    page = text(admin_client.get(f"{LIST}{conn.pk}/change/"))

    assert (
        "Verification Status: re-checking… Re-checking after a change 5 minutes ago, but no worker has run the "
        "verification yet: check that a qcluster is running (manage.py qcluster), or verify now."
    ) in page


@pytest.mark.django_db
def test_saving_an_output_unchanged_keeps_its_verdicts(admin_client, sandbox, parisians):
    output = sandbox_output(sandbox)
    conn = services.connect(parisians, output, {"list_id": LIST_ID})
    verification.verify(conn)

    admin_client.post(f"/admin/outputs/output/{output.pk}/change/", output_form(output))

    assert Connection.objects.get(pk=conn.pk).verification_status == "ok"


@pytest.mark.django_db(transaction=True)
def test_a_verification_that_ran_while_the_facts_changed_stores_nothing(sandbox, parisians):
    output = sandbox_output(sandbox)
    conn = services.connect(parisians, output, {"list_id": LIST_ID})  # its tasks wait in the broker
    sandbox.fault("mailchimp", "slow", delay=0.5, count=1)
    stored = Connection.objects.get(pk=conn.pk)

    def verify_elsewhere():
        try:
            verification.verify(stored)
        finally:
            db.close()

    running = threading.Thread(target=verify_elsewhere)

    running.start()
    threading.Event().wait(0.2)
    reverify.changed([conn.pk])  # e.g. the List ID saved while the slow check was out
    running.join()

    conn.refresh_from_db()
    assert (conn.verification_status, conn.verified_at) == ("checking", None)
