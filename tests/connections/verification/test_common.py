"""Verification against the partner sandbox, the part every partner shares: the whole run and what it stores, an
unreachable partner, identity coverage, delivery health and the partner's own count.
"""

import datetime as dt
import hashlib
from dataclasses import asdict

import pytest
import requests
from django.utils import timezone

from connections import services
from connections.drain import drain
from connections.models import Connection, OutboxMessage
from connections.verification import verify
from outputs import schema
from outputs.partners import registry
from outputs.services import clean_output_settings
from staff import dates
from tests.connections.factories import ConnectionFactory, StaticAudienceFactory, add_members, sandbox_output
from tests.connections.verification.support import (
    INVALID_KEY,
    KEY_HINT,
    aaid,
    assert_hint,
    by_name,
    emails,
    mailchimp_connection,
    output,
    reverify,
)
from tests.outputs.factories import ANOTHER_MAILCHIMP_KEY, LIST_ID, MAILCHIMP_KEY

pytestmark = pytest.mark.django_db


# --- the whole verification, and what it stores ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_says_the_connection_is_working_when_every_check_passes(sandbox):
    conn = mailchimp_connection(sandbox, members=50)
    drain(conn.pk)

    before = timezone.now()
    status, checks = reverify(conn)

    assert status == "ok"
    assert [(c.name, c.status, c.detail, c.hint) for c in checks] == [
        ("credentials", "ok", "Mailchimp accepted the API key (data center us6).", ""),
        ("destination", "ok", "The list 'Potential Parisians' exists.", ""),
        ("identity coverage", "ok", "50 of 50 members have an identity Mailchimp accepts.", ""),
        ("status", "ok", "The connection is active.", ""),
        ("delivery", "ok", "No rejections in the last 24 hours, no failures, nothing late.", ""),
        ("partner count", "ok", "Mailchimp reports 50, as many as were forwarded and accepted.", ""),
    ]
    stored = Connection.objects.get(pk=conn.pk)
    assert stored.verification_status == "ok"
    assert before <= stored.verified_at <= timezone.now()
    assert stored.verification_checks == [asdict(c) for c in checks]


def test_it_stores_a_failing_verification_in_place_of_the_last_one(sandbox):
    conn = mailchimp_connection(sandbox)
    assert verify(conn)[0] == "ok"
    first = Connection.objects.get(pk=conn.pk).verified_at

    sandbox.revoke("mailchimp", MAILCHIMP_KEY)
    status, checks = reverify(conn)

    stored = Connection.objects.get(pk=conn.pk)
    assert (status, stored.verification_status) == ("failing", "failing")
    assert stored.verified_at > first
    assert stored.verification_checks == [asdict(c) for c in checks]
    assert stored.verification_checks[0] == {
        "name": "credentials",
        "status": "failing",
        "detail": INVALID_KEY,
        "hint": KEY_HINT,
    }


# --- an unreachable partner: a warning, worded alike for every partner ---------------------------------------


NOWHERE = "http://127.0.0.1:9"  # the discard port: nothing listens there


def unreachable_output(kind):
    """The partner's sandbox demo account, pointed where nothing answers."""
    partner = registry.get(kind)
    fields = partner.sandbox_destination(NOWHERE)
    settings, connection_settings = partner.sandbox_demo
    plain, secrets = clean_output_settings(kind, {**settings, **{k: v for k, v in fields.items() if k != "base_url"}})
    out = output(kind, plain, secrets, fields.get("base_url", ""))
    return out, schema.clean_settings(partner.connection_settings, connection_settings)


@pytest.mark.parametrize(("kind", "name"), registry.choices())
def test_it_warns_that_it_could_not_reach_the_partner(sandbox, kind, name):
    out, settings = unreachable_output(kind)
    conn = ConnectionFactory(output=out, settings=settings)

    status, checks = verify(conn)

    assert status == "warning"
    assert (checks[0].name, checks[0].status, checks[0].detail) == (
        "partner",
        "warning",
        f"Could not reach {name}: A connection error occurred: could not reach 127.0.0.1:9.",
    )
    assert_hint(
        checks[0],
        "unreachable",
        f"Nothing was checked at {name} this time. This is usually temporary: verification runs again on its "
        f"schedule. If it keeps happening, check that this server can reach {name} (network, proxy, firewall).",
    )
    assert "partner count" not in by_name(checks)


# --- identity coverage ---------------------------------------------------------------------------------------


def test_it_warns_when_no_member_has_an_identity_the_partner_accepts(sandbox):
    out = sandbox_output(sandbox)
    audience = StaticAudienceFactory()
    add_members(audience, aaids=[aaid(1), aaid(2), aaid(3)])  # device IDs only, for an email partner
    conn = services.connect(audience, out, {"list_id": LIST_ID})

    status, checks = verify(conn)

    assert status == "warning"
    coverage = by_name(checks)["identity coverage"]
    assert (coverage.status, coverage.detail) == ("warning", "None of the 3 members has an identity Mailchimp accepts.")
    assert_hint(
        coverage,
        "no_accepted_identities",
        "None of the audience's members has an identity Mailchimp accepts (email addresses). Send those identities "
        "with the profiles (POST /api/v1/profiles/bulk/), or connect an output that accepts the identities you have.",
    )
    assert by_name(checks)["partner count"].detail == "Mailchimp reports no members, and none were forwarded yet."

    add_members(audience, emails=emails(1))
    status, checks = reverify(conn)
    assert by_name(checks)["identity coverage"].detail == "1 of 4 members have an identity Mailchimp accepts."


def test_it_warns_when_the_audience_has_no_members_yet(sandbox):
    conn = services.connect(StaticAudienceFactory(), sandbox_output(sandbox), {"list_id": LIST_ID})

    status, checks = verify(conn)

    assert status == "warning"
    coverage = by_name(checks)["identity coverage"]
    assert (coverage.status, coverage.detail) == ("warning", "The audience has no members yet.")
    assert_hint(
        coverage,
        "no_members",
        "The audience has no members yet, so nothing is forwarded. Check its criteria (admin: the audience page "
        "shows its size) or wait for the profiles and events it needs.",
    )


# --- delivery health -----------------------------------------------------------------------------------------


def test_it_warns_about_a_paused_connection(sandbox):
    conn = mailchimp_connection(sandbox)
    services.pause(conn)

    status, checks = reverify(conn)

    assert status == "warning"
    state = by_name(checks)["status"]
    assert (state.status, state.detail) == ("warning", "The connection is paused.")
    assert_hint(
        state,
        "paused",
        "The connection is paused: changes are queued but not sent. Resume it when the partner side is ready "
        f"(admin: Resume; API: POST /api/v1/connections/{conn.pk}/resume/; command: manage.py resume {conn.pk}).",
    )
    assert "waiting" not in by_name(checks)  # paused messages wait on purpose

    services.resume(conn)
    status, checks = reverify(conn)
    assert (status, by_name(checks)["status"].detail) == ("ok", "The connection is active.")


@pytest.mark.django_db(transaction=True)
def test_it_fails_a_faulted_connection_until_it_is_fixed_and_resumed(sandbox):
    conn = mailchimp_connection(sandbox)
    sandbox.revoke("mailchimp", MAILCHIMP_KEY)
    drain(conn.pk)

    status, checks = reverify(conn)

    assert status == "failing"
    state = by_name(checks)["status"]
    assert (state.status, state.detail) == ("failing", f"Forwarding stopped: {INVALID_KEY} {KEY_HINT}")
    assert_hint(
        state,
        "faulted",
        "Forwarding stopped because of the failure above. Fix it at the partner or in the output's settings, then "
        "resume the connection: waiting messages go out at once.",
    )
    assert by_name(checks)["credentials"].status == "failing"

    new_key = ANOTHER_MAILCHIMP_KEY
    sandbox.mailchimp_list(new_key, LIST_ID, "Potential Parisians")
    conn.output.set_secrets({"api_key": new_key})
    conn.output.save()
    status, checks = reverify(conn)
    assert (status, by_name(checks)["credentials"].status) == ("failing", "ok")  # still stopped: resume it

    services.resume(conn)
    drain(conn.pk)
    assert reverify(conn)[0] == "ok"


@pytest.mark.django_db(transaction=True)
def test_it_warns_about_rejections_in_the_last_24_hours(sandbox):
    conn = mailchimp_connection(sandbox, members=3)
    sandbox.mailchimp_rejection("u1@example.com", "fake")
    drain(conn.pk)

    status, checks = reverify(conn)

    assert status == "warning"
    rejections = by_name(checks)["rejections"]
    assert (rejections.status, rejections.detail) == (
        "warning",
        "1 message refused by Mailchimp in the last 24 hours.",
    )
    assert_hint(
        rejections,
        "rejections",
        "The most common reason Mailchimp gave: [identity] looks fake or invalid, please enter a real email "
        "address. Open the connection's rejected messages (admin: Outbox messages, state Rejected; it needs the "
        "“Can see member identities” permission) to see which identities and why; they are not sent again.",
    )
    assert by_name(checks)["partner count"].detail == "Mailchimp reports 2, as many as were forwarded and accepted."

    OutboxMessage.objects.filter(state="rejected").update(finished_at=timezone.now() - dt.timedelta(hours=25))
    status, checks = reverify(conn)
    assert status == "ok"
    assert "rejections" not in by_name(checks)


@pytest.mark.django_db(transaction=True)
def test_it_warns_about_messages_that_failed_after_the_retry_window(sandbox, settings):
    settings.RETRY_WINDOW_HOURS = 1
    conn = mailchimp_connection(sandbox, members=1)
    OutboxMessage.objects.filter(connection=conn).update(created_at=timezone.now() - dt.timedelta(hours=2))
    sandbox.fault("mailchimp", "status", path="/lists/", status=503)
    assert drain(conn.pk).failed == 1

    status, checks = reverify(conn)

    assert status == "warning"
    failures = by_name(checks)["failures"]
    assert (failures.status, failures.detail) == (
        "warning",
        "1 message could not be delivered within the retry window.",
    )
    assert_hint(
        failures,
        "failures",
        "Look at the connection's last error and fix its cause, then send them again (admin: Retry failed messages; "
        f"API: POST /api/v1/connections/{conn.pk}/retry-failed/).",
    )

    services.retry_failed(conn)
    drain(conn.pk)
    status, checks = reverify(conn)
    assert status == "ok"
    assert "failures" not in by_name(checks)


def test_it_warns_about_messages_waiting_too_long(sandbox):
    conn = mailchimp_connection(sandbox, members=2)
    since = timezone.now() - dt.timedelta(minutes=20)
    OutboxMessage.objects.filter(connection=conn).update(created_at=since)

    status, checks = reverify(conn)

    assert status == "warning"
    waiting = by_name(checks)["waiting"]
    assert (waiting.status, waiting.detail) == ("warning", "2 messages waiting longer than 15 minutes.")
    assert_hint(
        waiting,
        "waiting",
        f"The oldest has waited since {dates.when(since)}. Check that a qcluster is running "
        "(manage.py qcluster) and look at the connection's last error.",
    )

    OutboxMessage.objects.filter(connection=conn).update(created_at=timezone.now() - dt.timedelta(minutes=10))
    status, checks = reverify(conn)
    assert status == "ok"
    assert by_name(checks)["delivery"].detail == "No rejections in the last 24 hours, no failures, nothing late."


def test_it_gives_an_interval_upload_its_period_before_messages_are_late(sandbox):
    out = sandbox_output(sandbox)
    audience = StaticAudienceFactory()
    add_members(audience, emails=emails(1))
    conn = services.connect(audience, out, {"list_id": LIST_ID}, mode="interval", minutes=60)
    messages = OutboxMessage.objects.filter(connection=conn)

    messages.update(created_at=timezone.now() - dt.timedelta(minutes=70))
    assert "waiting" not in by_name(reverify(conn)[1])

    messages.update(created_at=timezone.now() - dt.timedelta(minutes=80))
    assert by_name(reverify(conn)[1])["waiting"].detail == "1 message waiting longer than 75 minutes."


# --- the partner's own count ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_warns_when_the_partner_counts_more_than_were_forwarded(sandbox):
    conn = mailchimp_connection(sandbox, members=1)
    drain(conn.pk)
    # A member the audience does not hold is subscribed at Mailchimp (a late add, or another tool).
    member = hashlib.md5(b"stray@example.com").hexdigest()
    response = requests.put(
        f"{sandbox.mailchimp_url()}/lists/{LIST_ID}/members/{member}",
        json={"email_address": "stray@example.com", "status_if_new": "subscribed", "status": "subscribed"},
        auth=("anyone", MAILCHIMP_KEY),
        timeout=5,
    )
    assert response.status_code == 200

    status, checks = reverify(conn)

    assert status == "warning"
    count = by_name(checks)["partner count"]
    assert (count.status, count.detail) == ("warning", "Mailchimp reports 2; 1 was forwarded and accepted.")
    assert_hint(
        count,
        "partner_count_higher",
        "Mailchimp reports 2 but only 1 of the audience's members were forwarded and accepted. Mailchimp also "
        "counts members added there by other means (by hand, an import, a signup form, another tool writing to "
        "the same destination); check that nothing else writes to it, and look up at Mailchimp the members the "
        "audience does not hold.",
    )


@pytest.mark.django_db(transaction=True)
def test_it_warns_when_the_partner_counts_fewer_than_were_forwarded(sandbox):
    conn = mailchimp_connection(sandbox, members=3)
    drain(conn.pk)
    # Someone archives a member in Mailchimp, through Mailchimp's own API.
    member = hashlib.md5(b"u0@example.com").hexdigest()
    response = requests.delete(
        f"{sandbox.mailchimp_url()}/lists/{LIST_ID}/members/{member}", auth=("anyone", MAILCHIMP_KEY), timeout=5
    )
    assert response.status_code == 204

    status, checks = reverify(conn)

    assert status == "warning"
    count = by_name(checks)["partner count"]
    assert (count.status, count.detail) == ("warning", "Mailchimp reports 2; 3 were forwarded and accepted.")
    assert_hint(
        count,
        "partner_count_lower",
        "Mailchimp reports 2 but 3 were forwarded and accepted. Members removed or unsubscribed at Mailchimp (by "
        "hand, by a bounce or by a compliance review) are not added back; check the destination's activity at "
        "Mailchimp.",
    )


@pytest.mark.django_db(transaction=True)
def test_it_warns_when_the_partner_counts_none_of_what_was_forwarded(sandbox):
    conn = mailchimp_connection(sandbox, members=3)
    drain(conn.pk)
    sandbox.delete_mailchimp_list(LIST_ID)  # the list is emptied: deleted and made again under the same ID
    sandbox.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Potential Parisians")

    status, checks = reverify(conn)

    assert status == "warning"
    count = by_name(checks)["partner count"]
    assert (count.status, count.detail) == ("warning", "Mailchimp reports no members; 3 were forwarded and accepted.")
    assert_hint(
        count,
        "partner_count_zero",
        "Mailchimp reports no members although 3 were forwarded and accepted: check that the connection points at "
        "the list or segment you are looking at, and that nobody emptied it at Mailchimp.",
    )
