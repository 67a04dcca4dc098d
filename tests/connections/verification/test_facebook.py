"""Verifying a Facebook Custom Audiences connection against the sandbox over real HTTP: each check and each hint."""

from dataclasses import asdict

import pytest

from connections import services
from connections.drain import drain
from connections.funnel import compute
from connections.verification import verify
from tests.connections.factories import StaticAudienceFactory, add_members
from tests.connections.verification.support import TRANSIENT, assert_hint, by_name, emails, output, reverify

pytestmark = pytest.mark.django_db

FB_TOKEN, ACT, FB_AUDIENCE = "EAAB-sandbox-s3cret-token-value", "act_1001", "23850000000000001"


def facebook_connection(sandbox, token=FB_TOKEN, audience_id=FB_AUDIENCE):
    settings = {"ad_account_id": ACT, "api_version": "v21.0"}
    out = output("facebook", settings, {"access_token": token}, f"{sandbox.base_url}/facebook")
    audience = StaticAudienceFactory()
    add_members(audience, emails=emails(3))
    return services.connect(audience, out, {"audience_id": audience_id})


def facebook_sandbox(sandbox, flagged=False, **token_flags):
    sandbox.facebook_token(FB_TOKEN, ACT, **token_flags)
    sandbox.facebook_audience(FB_AUDIENCE, ACT, name="Potential Parisians", flagged=flagged)
    return sandbox


@pytest.mark.django_db(transaction=True)
def test_it_shows_facebooks_estimate_without_comparing_it(sandbox):
    conn = facebook_connection(facebook_sandbox(sandbox))
    drain(conn.pk)

    status, checks = reverify(conn)

    assert status == "ok"
    assert [(c.name, c.status) for c in checks] == [
        ("credentials", "ok"),
        ("terms", "ok"),
        ("audience", "ok"),
        ("identity coverage", "ok"),
        ("status", "ok"),
        ("delivery", "ok"),
        ("partner count", "ok"),
    ]
    assert by_name(checks)["partner count"].detail == (
        "Facebook Custom Audiences estimates at least 3 people; 3 identities were accepted."
    )
    assert asdict(compute(conn).steps[5]) == {
        "name": "partner's own count",
        "count": 3,
        "lost": 0,
        "reason": "Facebook Custom Audiences estimates at least 3 people (matched people, updated within a day).",
    }

    sandbox.delete_facebook_audience(FB_AUDIENCE)  # an estimate of 0 is not a warning: it lags by up to a day
    sandbox.facebook_audience(FB_AUDIENCE, ACT, name="Potential Parisians")
    status, checks = reverify(conn)
    assert status == "ok"
    assert by_name(checks)["partner count"].detail == (
        "Facebook Custom Audiences estimates at least 0 people; 3 identities were accepted."
    )


def test_it_fails_a_revoked_facebook_token(sandbox):
    facebook_sandbox(sandbox)
    sandbox.revoke("facebook", FB_TOKEN)

    status, checks = verify(facebook_connection(sandbox))

    assert status == "failing"
    assert (checks[0].name, checks[0].status, checks[0].detail) == (
        "credentials",
        "failing",
        "The Facebook access token has expired.",
    )
    assert_hint(
        checks[0],
        "facebook:expired",
        "Generate a new system-user token in Business Settings → System users and paste it into this output.",
    )


def test_it_fails_a_token_facebook_does_not_know(sandbox):
    facebook_sandbox(sandbox)

    status, checks = verify(facebook_connection(sandbox, token="EAAB-some-other-token"))

    assert status == "failing"
    assert checks[0].detail == "Facebook did not accept the access token of this output."
    assert_hint(
        checks[0],
        "facebook:token",
        "Generate a new system-user token with the ads_management permission in Business Settings → System users "
        "and paste it into this output.",
    )


def test_it_fails_when_the_custom_audience_terms_are_not_accepted(sandbox):
    facebook_sandbox(sandbox, tos_accepted=False)

    status, checks = verify(facebook_connection(sandbox))

    assert status == "failing"
    terms = by_name(checks)["terms"]
    assert (terms.status, terms.detail) == (
        "failing",
        f"The Custom Audience terms are not accepted for ad account {ACT}.",
    )
    assert_hint(
        terms,
        "facebook:terms",
        f"Someone with admin access to the ad account must accept the Custom Audience terms for ad account {ACT} at "
        "https://www.facebook.com/customaudiences/app/tos/?act=1001, then resume this connection.",
    )


def test_it_fails_an_ad_account_outside_a_business(sandbox):
    facebook_sandbox(sandbox, business_verified=False)

    status, checks = verify(facebook_connection(sandbox))

    assert status == "failing"
    business = by_name(checks)["business"]
    assert (business.status, business.detail) == (
        "failing",
        f"Ad account {ACT} does not belong to a business portfolio.",
    )
    assert_hint(
        business,
        "facebook:business",
        f"Move ad account {ACT} into a business portfolio (Business Manager) and complete business verification, "
        "then assign it to the system user of this token.",
    )


def test_it_fails_a_token_without_admin_access(sandbox):
    facebook_sandbox(sandbox, admin=False)

    status, checks = verify(facebook_connection(sandbox))

    assert status == "failing"
    audience = by_name(checks)["audience"]
    assert (audience.status, audience.detail) == (
        "failing",
        f"This token may not change the members of audience {FB_AUDIENCE}.",
    )
    assert_hint(
        audience,
        "facebook:permission",
        f"In Business Settings, assign ad account {ACT} and this audience to the system user with full (admin) "
        "control, and give its token the ads_management permission.",
    )


def test_it_fails_a_flagged_audience(sandbox):
    facebook_sandbox(sandbox, flagged=True)

    status, checks = verify(facebook_connection(sandbox))

    assert status == "failing"
    audience = by_name(checks)["audience"]
    assert (audience.status, audience.detail) == (
        "failing",
        f"Audience Potential Parisians ({FB_AUDIENCE}) is flagged and blocks uploads.",
    )
    assert_hint(
        audience,
        "facebook:flagged",
        "Open Audiences in Ads Manager, resolve or appeal the restrictions on this audience, or create a new "
        "audience and connect it instead.",
    )


def test_it_fails_a_missing_facebook_audience(sandbox):
    facebook_sandbox(sandbox)

    status, checks = verify(facebook_connection(sandbox, audience_id="999"))

    assert status == "failing"
    audience = by_name(checks)["audience"]
    assert (audience.status, audience.detail) == (
        "failing",
        "Facebook audience 999 does not exist, or this token cannot see it.",
    )
    assert_hint(
        audience,
        "facebook:audience",
        f"Check the audience ID of this connection, and that ad account {ACT} owns the audience or has it shared "
        "with it.",
    )


def test_it_fails_a_request_facebook_refuses_for_another_reason(sandbox):
    facebook_sandbox(sandbox)
    sandbox.fault("facebook", "status", path=FB_AUDIENCE, status=400)

    status, checks = verify(facebook_connection(sandbox))

    assert status == "failing"
    audience = by_name(checks)["audience"]
    assert (audience.status, audience.detail) == ("failing", "Facebook rejected the request: Invalid parameter.")
    assert_hint(
        audience,
        "facebook:refused",
        "Facebook refused the request in a way Audience Relay does not know; its answer is above. Check the settings "
        "of this output and connection against it.",
    )


def test_it_warns_when_facebook_answers_with_a_server_error(sandbox):
    facebook_sandbox(sandbox)
    sandbox.fault("facebook", "status", path=FB_AUDIENCE, status=503)

    status, checks = verify(facebook_connection(sandbox))

    assert status == "warning"
    audience = by_name(checks)["audience"]
    assert (audience.status, audience.detail) == (
        "warning",
        "Could not check the audience: Facebook answered with HTTP 503, a temporary error.",
    )
    assert_hint(audience, "facebook:transient", TRANSIENT)
