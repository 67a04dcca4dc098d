"""Verifying a Mailchimp connection against the sandbox over real HTTP: each check failing and passing, each hint."""

import pytest

from connections import services
from connections.verification import verify
from tests.connections.factories import ConnectionFactory, StaticAudienceFactory, add_members
from tests.connections.verification.support import (
    INVALID_KEY,
    KEY_HINT,
    TRANSIENT,
    assert_hint,
    by_name,
    emails,
    mailchimp_connection,
    reverify,
)
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY, WRONG_MAILCHIMP_KEY, MailchimpOutputFactory

pytestmark = pytest.mark.django_db


def test_it_fails_a_wrong_mailchimp_key(sandbox):
    conn = mailchimp_connection(sandbox, api_key=WRONG_MAILCHIMP_KEY)

    status, checks = verify(conn)

    assert status == "failing"
    credentials, destination = checks[:2]
    assert (credentials.name, credentials.status, credentials.detail) == ("credentials", "failing", INVALID_KEY)
    assert_hint(credentials, "mailchimp:credentials", KEY_HINT)
    assert (destination.status, destination.detail) == ("warning", "Not checked: the API key must work first.")
    assert "partner count" not in by_name(checks)  # a count from a key that does not work means nothing


def test_a_mailchimp_base_url_with_the_api_version_fails_with_the_base_url_hint(sandbox):
    # The adapter appends /3.0 itself: an override that already ends with it asks for /3.0/3.0, a 404.
    sandbox.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Potential Parisians")
    out = MailchimpOutputFactory(base_url=f"{sandbox.base_url}/mailchimp/{{dc}}/3.0")
    audience = StaticAudienceFactory()
    add_members(audience, emails=emails(1))

    status, checks = verify(services.connect(audience, out, {"list_id": LIST_ID}))

    assert status == "failing"
    assert checks[0].detail == (
        f"Mailchimp answered HTTP 404 at {sandbox.base_url}/mailchimp/us6/3.0/3.0/ping: there is no Mailchimp API "
        "at this base URL."
    )
    assert_hint(
        checks[0],
        "mailchimp:base_url",
        "Check the base URL override of this output: empty for Mailchimp itself; otherwise it stands for "
        "https://{dc}.api.mailchimp.com, without /3.0 (`manage.py partner_sandbox` prints the sandbox's).",
    )


def test_it_fails_a_key_for_another_data_center(sandbox):
    # The account lives in us19; the same key with a -us6 suffix goes to us6, where Mailchimp does not know it.
    us19 = MAILCHIMP_KEY.replace("-us6", "-us19")
    sandbox.mailchimp_list(us19, LIST_ID, "Potential Parisians")
    out = MailchimpOutputFactory(base_url=f"{sandbox.base_url}/mailchimp/{{dc}}")
    audience = StaticAudienceFactory()
    add_members(audience, emails=emails(1))
    conn = services.connect(audience, out, {"list_id": LIST_ID})

    status, checks = verify(conn)

    assert status == "failing"
    assert (checks[0].status, checks[0].detail) == ("failing", INVALID_KEY)
    assert_hint(checks[0], "mailchimp:credentials", KEY_HINT)

    out.set_secrets({"api_key": us19})
    out.save()
    status, checks = reverify(conn)
    assert status == "ok"
    assert checks[0].detail == "Mailchimp accepted the API key (data center us19)."


def test_it_fails_a_key_that_is_not_a_mailchimp_key(sandbox):
    conn = ConnectionFactory(output=MailchimpOutputFactory(api_key="not-a-mailchimp-key"))

    status, checks = verify(conn)

    assert status == "failing"
    assert (checks[0].status, checks[0].detail) == ("failing", "The Mailchimp API key is not in the expected form.")
    assert_hint(
        checks[0],
        "mailchimp:key_format",
        "Copy the key again from Mailchimp: Account → Extras → API keys. It is 32 letters and digits, a dash, "
        "then your data center (such as us6).",
    )


def test_it_fails_a_missing_list_and_passes_once_it_exists(sandbox):
    conn = mailchimp_connection(sandbox)
    sandbox.delete_mailchimp_list(LIST_ID)

    status, checks = verify(conn)

    assert status == "failing"
    destination = by_name(checks)["destination"]
    assert (destination.status, destination.detail) == (
        "failing",
        f"Mailchimp has no list with ID '{LIST_ID}' in this account.",
    )
    assert_hint(
        destination,
        "mailchimp:destination",
        "Check the List ID in the connection settings: in Mailchimp, Audience → Settings → Audience name and "
        "defaults shows it as the Audience ID.",
    )

    sandbox.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Potential Parisians")
    status, checks = reverify(conn)
    assert by_name(checks)["destination"].status == "ok"


def test_it_warns_when_mailchimp_answers_with_a_server_error(sandbox):
    conn = mailchimp_connection(sandbox)
    sandbox.fault("mailchimp", "status", path="/ping", status=503)

    status, checks = verify(conn)

    assert status == "warning"
    assert (checks[0].status, checks[0].detail) == (
        "warning",
        "Could not check the API key: Mailchimp answered HTTP 503.",
    )
    assert_hint(checks[0], "mailchimp:transient", TRANSIENT)
