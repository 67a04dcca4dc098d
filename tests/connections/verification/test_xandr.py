"""Verifying an AppNexus / Xandr connection against the sandbox over real HTTP: each check and each hint."""

import datetime as dt

import pytest
from django.utils import timezone

from connections import services
from connections.drain import drain
from connections.models import OutboxMessage
from connections.verification import verify
from tests.connections.factories import StaticAudienceFactory, add_members
from tests.connections.verification.support import TRANSIENT, aaid, assert_hint, by_name, output, stand_in

pytestmark = pytest.mark.django_db

XANDR_USER, XANDR_PASSWORD, MEMBER, SEGMENT = "relay-api", "xandr-s3cret-pass", 1234, 5678


def test_a_xandr_base_url_with_no_api_behind_it_fails_with_the_base_url_hint(xandr_sandbox):
    # Under the sandbox, Xandr lives at /xandr: /appnexus answers 404, as a mistyped override would.
    status, checks = verify(xandr_connection(f"{xandr_sandbox.base_url}/appnexus"))

    assert status == "failing"
    assert checks[0].detail == (
        f"Xandr answered HTTP 404 at {xandr_sandbox.base_url}/appnexus/auth: there is no Xandr API at this base URL."
    )
    assert_hint(
        checks[0],
        "xandr:base_url",
        "Check the base URL override of this output: empty for Xandr itself (https://api.appnexus.com); "
        "`manage.py partner_sandbox` prints the sandbox's.",
    )


def xandr_connection(base_url, password=XANDR_PASSWORD, member=MEMBER, segment=SEGMENT):
    out = output("xandr", {"username": XANDR_USER, "member_id": member}, {"password": password}, base_url)
    audience = StaticAudienceFactory()
    add_members(audience, aaids=[aaid(1), aaid(2)])
    return services.connect(audience, out, {"segment_id": segment})


@pytest.fixture
def xandr_sandbox(sandbox):
    sandbox.xandr_account(XANDR_USER, XANDR_PASSWORD, MEMBER)
    sandbox.xandr_segment(MEMBER, SEGMENT)
    return sandbox


def test_it_passes_a_working_xandr_login_and_segment(xandr_sandbox):
    status, checks = verify(xandr_connection(xandr_sandbox.xandr_url()))

    assert status == "ok"
    assert [(c.name, c.status, c.detail) for c in checks[:2]] == [
        ("credentials", "ok", f"Signed in to Xandr as {XANDR_USER}."),
        ("segment", "ok", f"Segment {SEGMENT} (Segment {SEGMENT}) exists in member {MEMBER}."),
    ]


def test_it_fails_a_wrong_xandr_password(xandr_sandbox):
    status, checks = verify(xandr_connection(xandr_sandbox.xandr_url(), password="not-the-password"))

    assert status == "failing"
    assert [(c.name, c.status, c.detail) for c in checks[:1]] == [
        ("credentials", "failing", "Xandr refused the username and password of this output."),
    ]
    assert_hint(
        checks[0],
        "xandr:login",
        "Check the username and password of this output; the user needs API access to Xandr (your Xandr "
        "representative can enable it).",
    )


def test_it_fails_xandr_members_last_added_longer_ago_than_xandr_keeps_them(xandr_sandbox):
    conn = xandr_connection(xandr_sandbox.xandr_url())
    drain(conn.pk)
    OutboxMessage.objects.update(finished_at=timezone.now() - dt.timedelta(days=181))

    status, checks = verify(conn)

    expiry = by_name(checks)["expiry"]
    assert status == "failing"
    assert (expiry.status, expiry.detail) == (
        "failing",
        "2 members of the audience were last added to AppNexus / Xandr more than 180 days ago, "
        "so AppNexus / Xandr has dropped them.",
    )
    assert_hint(
        expiry,
        "expired",
        "AppNexus / Xandr removes a member 180 days after the last upload that added them. Members still in the "
        "audience are uploaded again once their last add is 60 days old (the connection's refresh setting), by the "
        'hourly "Refresh expiring members" schedule: check that a qcluster is running (manage.py qcluster) and that '
        "the connection is active.",
    )


def refuse_sign_in(sandbox, error_id):
    body = {"response": {"status": "error", "error_id": error_id, "error": "Authentication failed"}}
    sandbox.fault("xandr", "status", path="/auth", status=401, body=body)


def test_it_fails_a_deactivated_xandr_user(xandr_sandbox):
    refuse_sign_in(xandr_sandbox, "NOAUTH_DISABLED")

    status, checks = verify(xandr_connection(xandr_sandbox.xandr_url()))

    assert status == "failing"
    assert (checks[0].status, checks[0].detail) == ("failing", "The Xandr user of this output has been deactivated.")
    assert_hint(
        checks[0],
        "xandr:disabled",
        "Use another Xandr user with API access, or ask your Xandr representative to reactivate this one.",
    )


def test_it_fails_an_expired_xandr_password(xandr_sandbox):
    refuse_sign_in(xandr_sandbox, "NOAUTH_EXPIRED")

    status, checks = verify(xandr_connection(xandr_sandbox.xandr_url()))

    assert status == "failing"
    assert (checks[0].status, checks[0].detail) == ("failing", "The password of this output's Xandr user has expired.")
    assert_hint(
        checks[0], "xandr:password_expired", "Reset the password in Xandr and paste the new one into this output."
    )


def test_it_fails_a_missing_xandr_segment(xandr_sandbox):
    status, checks = verify(xandr_connection(xandr_sandbox.xandr_url(), segment=777))

    assert status == "failing"
    segment = by_name(checks)["segment"]
    assert (segment.status, segment.detail) == ("failing", f"Xandr segment 777 was not found in member {MEMBER}.")
    assert_hint(
        segment,
        "xandr:segment",
        f"Check the segment ID of this connection: it must be a segment of member {MEMBER} "
        "(Audience > Segments in Xandr).",
    )


def test_it_fails_a_member_the_xandr_user_has_no_access_to(xandr_sandbox):
    status, checks = verify(xandr_connection(xandr_sandbox.xandr_url(), member=999))

    assert status == "failing"
    segment = by_name(checks)["segment"]
    assert (segment.status, segment.detail) == (
        "failing",
        "Xandr does not allow this user to upload segment data for member 999.",
    )
    assert_hint(
        segment,
        "xandr:no_access",
        "Check the member ID of this output, and ask your Xandr representative to give this user access to "
        "member 999 and to enable the Batch Segment Service for it.",
    )


def test_it_warns_about_an_inactive_xandr_segment(db):
    # The sandbox keeps every segment active, so a stand-in answers as Xandr does for an inactive one.
    routes = {
        ("POST", "/auth"): (200, {"response": {"status": "OK", "token": "stand-in-token"}}, []),
        ("GET", "/segment"): (
            200,
            {"response": {"status": "OK", "segment": {"id": SEGMENT, "short_name": "Paris", "state": "inactive"}}},
            [],
        ),
    }
    with stand_in(routes) as url:
        status, checks = verify(xandr_connection(url))

    assert status == "warning"
    segment = by_name(checks)["segment"]
    assert (segment.status, segment.detail) == ("warning", f"Segment {SEGMENT} (Paris) of member {MEMBER} is inactive.")
    assert_hint(segment, "xandr:inactive", f"Activate segment {SEGMENT} in Xandr, or connect an active segment.")


def test_it_fails_a_request_xandr_refuses_for_another_reason(xandr_sandbox):
    xandr_sandbox.fault("xandr", "status", path="/auth", status=400)

    status, checks = verify(xandr_connection(xandr_sandbox.xandr_url()))

    assert status == "failing"
    assert checks[0].status == "failing"
    assert checks[0].detail.startswith("Xandr rejected the request: ")
    assert_hint(
        checks[0],
        "xandr:refused",
        "Xandr refused the request in a way Audience Relay does not know; its answer is above. Check the settings "
        "of this output and connection, and ask your Xandr representative if they look right.",
    )


def test_it_warns_when_xandr_answers_with_a_server_error(xandr_sandbox):
    xandr_sandbox.fault("xandr", "status", path="/auth", status=503)

    status, checks = verify(xandr_connection(xandr_sandbox.xandr_url()))

    assert status == "warning"
    assert (checks[0].status, checks[0].detail) == (
        "warning",
        "Could not check the credentials: Xandr answered with HTTP 503, a temporary error.",
    )
    assert_hint(checks[0], "xandr:transient", TRANSIENT)
