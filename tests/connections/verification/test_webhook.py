"""Verifying a webhook connection against a receiver over real HTTP: each check failing and passing, each hint."""

import pytest

from connections.verification import verify
from tests.connections.factories import ConnectionFactory, StaticAudienceFactory, add_members
from tests.connections.verification.support import TRANSIENT, assert_hint, by_name, emails, output, stand_in

pytestmark = pytest.mark.django_db

WEBHOOK_SECRET = "whsec-sandbox-s3cret"


def webhook_connection(url, identity_types=("email",)):
    out = output("webhook", {"url": url}, {"secret": WEBHOOK_SECRET}, "")
    audience = StaticAudienceFactory()
    add_members(audience, emails=emails(2))
    return ConnectionFactory(audience=audience, output=out, settings={"identity_types": list(identity_types)})


def test_it_passes_a_webhook_receiver_that_answers(sandbox):
    sandbox.webhook_endpoint("crm", WEBHOOK_SECRET)

    status, checks = verify(webhook_connection(sandbox.webhook_url("crm")))

    assert status == "ok"
    assert [(c.name, c.status, c.detail) for c in checks[:2]] == [
        ("receiver", "ok", "The webhook receiver accepted a signed test request (HTTP 200)."),
        ("identity types", "ok", "This connection forwards email."),
    ]


def test_it_fails_a_webhook_receiver_that_refuses(sandbox):
    sandbox.webhook_endpoint("crm", WEBHOOK_SECRET, status=403)

    status, checks = verify(webhook_connection(sandbox.webhook_url("crm")))

    assert status == "failing"
    assert (checks[0].status, checks[0].detail) == ("failing", "The webhook receiver refused the request (HTTP 403).")
    assert_hint(checks[0], "webhook:signature", "Check that it uses the same signing secret as this output.")


def test_it_fails_a_webhook_url_the_receiver_does_not_have(sandbox):
    sandbox.webhook_endpoint("crm", WEBHOOK_SECRET, status=404)
    url = sandbox.webhook_url("crm")

    status, checks = verify(webhook_connection(url))

    assert status == "failing"
    assert checks[0].detail == f"The webhook URL {url} does not exist on the receiver (HTTP 404)."
    assert_hint(checks[0], "webhook:url", "Check the URL of this output: the receiver must accept POST requests there.")


def test_it_fails_a_webhook_url_that_redirects(sandbox):
    final = sandbox.webhook_url("crm")
    with stand_in({("POST", "/hook"): (301, {}, [("Location", final)])}) as url:
        status, checks = verify(webhook_connection(url + "/hook"))

    assert status == "failing"
    assert checks[0].detail == (
        f"The webhook answered with a redirect (HTTP 301) to {final}; redirects are not followed: use the final URL."
    )
    assert_hint(
        checks[0],
        "webhook:redirect",
        "Put the address the receiver redirects to in this output's URL: redirects are not followed, so that the "
        "data and its signature go only where you configured.",
    )


def test_it_warns_when_the_webhook_receiver_has_a_server_error(sandbox):
    sandbox.webhook_endpoint("crm", WEBHOOK_SECRET, status=502)

    status, checks = verify(webhook_connection(sandbox.webhook_url("crm")))

    assert status == "warning"
    assert (checks[0].status, checks[0].detail) == (
        "warning",
        "Could not check the receiver: The webhook receiver answered with HTTP 502, a temporary error.",
    )
    assert_hint(checks[0], "webhook:transient", TRANSIENT)


def test_it_fails_a_webhook_connection_that_forwards_no_identity_types(sandbox):
    sandbox.webhook_endpoint("crm", WEBHOOK_SECRET)

    status, checks = verify(webhook_connection(sandbox.webhook_url("crm"), identity_types=()))

    assert status == "failing"
    types = by_name(checks)["identity types"]
    assert (types.status, types.detail) == ("failing", "This connection forwards no identity types.")
    assert_hint(types, "webhook:identity_types", "Choose at least one identity type in this connection's settings.")
