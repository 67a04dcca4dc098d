"""A connection's last error is shown as current only while nothing has put it right since.

The seed's troubleshooting story: a revoked Mailchimp key faults the connection at 04:01, someone fixes the key
and resumes, the waiting members go out. Before, the connection page still read "Last error: Mailchimp rejected
the API key" beside an OK verdict, the list's "has an error" filter found it and the API gave no way to tell.
"""

import html
import re

import pytest
from django.utils import timezone

from connections import services
from connections.drain import drain
from connections.models import Connection
from staff import dates
from tests.connections.factories import StaticAudienceFactory, add_members, sandbox_output
from tests.outputs.factories import MAILCHIMP_KEY

pytestmark = pytest.mark.django_db

LIST = "/admin/connections/connection/"
REJECTED = "Mailchimp rejected the API key"


def text(response) -> str:
    """The page as a person reads it: tags dropped, entities decoded, whitespace collapsed."""
    assert response.status_code == 200
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


@pytest.fixture
def faulted(sandbox):
    """Potential Parisians → Mailchimp, stopped by a revoked key with two members waiting."""
    sandbox.mailchimp_account(MAILCHIMP_KEY)
    audience = StaticAudienceFactory(name="Potential Parisians")
    add_members(audience, emails=["ann@example.com", "bob@example.com"])
    conn = services.connect(audience, sandbox_output(sandbox), {"list_id": "a1b2c3d4e5"})
    sandbox.revoke("mailchimp", MAILCHIMP_KEY)
    drain(conn.pk)
    conn.refresh_from_db()
    assert conn.status == Connection.Status.FAULTED and conn.last_error.startswith(REJECTED)
    return conn


def fixed_and_resumed(sandbox, conn, send=True):
    sandbox.mailchimp_account(MAILCHIMP_KEY)  # put right at Mailchimp
    services.resume(conn)
    if send:
        assert drain(conn.pk).accepted == 2
    conn.refresh_from_db()
    return conn


def test_the_error_reads_as_current_while_nothing_has_put_it_right(admin_client, api, faulted):
    page = text(admin_client.get(f"{LIST}{faulted.pk}/change/"))
    assert f"Last error: {faulted.last_error} {dates.when(faulted.last_error_at)}" in page
    assert f'title="{faulted.last_error}"' in html.unescape(admin_client.get(LIST).content.decode())
    assert [c.pk for c in admin_client.get(LIST, {"has_error": "yes"}).context["cl"].result_list] == [faulted.pk]
    body = api.get(f"/api/v1/connections/{faulted.pk}/").json()
    assert (body["last_error_current"], body["last_error_resolved_at"]) == (True, None)


def test_once_a_delivery_succeeds_the_old_error_is_history_everywhere(admin_client, api, sandbox, faulted):
    conn = fixed_and_resumed(sandbox, faulted)
    at, since = dates.when(conn.last_error_at), dates.when(conn.last_error_resolved_at)

    page = text(admin_client.get(f"{LIST}{conn.pk}/change/"))
    assert (
        f"Last error: None now: Deliveries have succeeded since {since}. Last problem, {at}: {conn.last_error}"
    ) in page
    listed = html.unescape(admin_client.get(LIST).content.decode())
    resolved = f"Last problem, {at}: {conn.last_error} — deliveries have succeeded since {since}."
    assert f'title="{resolved}">resolved</span>' in listed
    assert f'title="{conn.last_error}"' not in listed
    assert [c.pk for c in admin_client.get(LIST, {"has_error": "yes"}).context["cl"].result_list] == []
    assert [c.pk for c in admin_client.get(LIST, {"has_error": "no"}).context["cl"].result_list] == [conn.pk]

    body = api.get(f"/api/v1/connections/{conn.pk}/").json()
    assert body["last_error"].startswith(REJECTED)  # kept: the history an operator looks for
    assert body["last_error_current"] is False and body["last_error_resolved_at"] is not None


def test_a_new_error_after_a_recovery_is_current_again(api, sandbox, faulted):
    conn = fixed_and_resumed(sandbox, faulted)
    sandbox.revoke("mailchimp", MAILCHIMP_KEY)
    conn.messages.update(state="pending", next_attempt_at=timezone.now())  # sent again, say by a new member
    drain(conn.pk)

    body = api.get(f"/api/v1/connections/{conn.pk}/").json()
    assert (body["last_error_current"], body["last_error_resolved_at"]) == (True, None)


def test_checks_that_pass_after_the_fix_say_so_before_anything_is_sent(admin_client, api, sandbox, faulted):
    conn = fixed_and_resumed(sandbox, faulted, send=False)
    # No worker has sent the waiting members yet: only the checks can say the key works again.
    services.verify(conn)
    conn.refresh_from_db()
    assert conn.verification_status == "ok", conn.verification_checks

    page = text(admin_client.get(f"{LIST}{conn.pk}/change/"))
    assert (
        f"Last error: None now: The checks pass since {dates.when(conn.verified_at)}; nothing has been sent since. "
        f"Last problem, {dates.when(conn.last_error_at)}: {conn.last_error}"
    ) in page
    assert api.get(f"/api/v1/connections/{conn.pk}/").json()["last_error_current"] is False
