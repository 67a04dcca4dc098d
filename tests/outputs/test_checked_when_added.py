"""A new output has its credentials checked as soon as it is saved, through every door that adds one.

Before, only a change queued a check: a new output read "Not checked yet." until someone pressed Check
credentials, so nobody knew whether its key worked before connecting an audience to it.
"""

import pytest
from django.contrib.admin.models import LogEntry
from django_q.conf import Conf

from outputs.models import Output
from tests.admin.conftest import page
from tests.outputs.factories import MAILCHIMP_KEY, WRONG_MAILCHIMP_KEY

pytestmark = pytest.mark.django_db

CHECKING = "Checking the credentials of the new output."
ACCEPTED = "Mailchimp accepted the API key (data center us6)."
REFUSED = "Mailchimp rejected the API key: Your API key may be invalid"


@pytest.fixture
def q_sync(monkeypatch):
    """django-q2 runs each queued task at once, in this process: the real task path."""
    monkeypatch.setattr(Conf, "SYNC", True)


def history(output) -> list[str]:
    return [e.get_change_message() for e in LogEntry.objects.filter(object_id=str(output.pk)).order_by("pk")]


def api_body(sandbox, api_key=MAILCHIMP_KEY):
    return {
        "kind": "mailchimp",
        "name": "Mailchimp (new)",
        "base_url": f"{sandbox.base_url}/mailchimp/{{dc}}",
        "settings": {"api_key": api_key, "email_type": "html"},
    }


def test_it_checks_the_credentials_of_an_output_added_through_the_api(
    api, sandbox, q_sync, django_capture_on_commit_callbacks
):
    sandbox.mailchimp_account(MAILCHIMP_KEY)

    with django_capture_on_commit_callbacks() as callbacks:
        response = api.post("/api/v1/outputs/", api_body(sandbox), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["credentials_ok"], body["credentials_message"]) == (None, CHECKING)
    assert sandbox.stats()["requests"]["mailchimp"] == 0  # nothing leaves before the commit

    for callback in callbacks:
        callback()

    body = api.get(f"/api/v1/outputs/{body['id']}/").json()
    assert (body["credentials_ok"], body["credentials_message"]) == (True, ACCEPTED)
    assert body["credentials_checked_at"] is not None
    assert history(Output.objects.get())[-1] == f"Checked credentials when added (ok): {ACCEPTED}"


def test_a_new_output_with_a_wrong_key_reads_so_on_its_page_before_anyone_connects_it(
    admin_client, sandbox, q_sync, django_capture_on_commit_callbacks
):
    sandbox.mailchimp_account(MAILCHIMP_KEY)
    form = {
        "kind": "mailchimp",
        "name": "Mailchimp (new)",
        "base_url": f"{sandbox.base_url}/mailchimp/{{dc}}",
        "setting__api_key": WRONG_MAILCHIMP_KEY,
        "setting__email_type": "html",
        "connections-TOTAL_FORMS": "0",
        "connections-INITIAL_FORMS": "0",
    }

    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post("/admin/outputs/output/add/?kind=mailchimp", form)
    assert response.status_code == 302, page(response)
    output = Output.objects.get()
    assert CHECKING in page(admin_client.get(f"/admin/outputs/output/{output.pk}/change/"))

    for callback in callbacks:
        callback()

    output.refresh_from_db()
    assert output.credentials_ok is False
    assert output.credentials_message.startswith(REFUSED), output.credentials_message
    assert REFUSED in page(admin_client.get(f"/admin/outputs/output/{output.pk}/change/"))
