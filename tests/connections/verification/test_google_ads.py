"""Verifying a Google Ads Customer Match connection against the sandbox over real HTTP: each check and each hint."""

from dataclasses import asdict

import pytest

from connections import services
from connections.drain import drain
from connections.funnel import compute
from connections.verification import verify
from outputs.partners.google_ads import adapter
from tests.connections.factories import StaticAudienceFactory, add_members
from tests.connections.verification.support import TRANSIENT, assert_hint, by_name, emails, output, reverify

pytestmark = pytest.mark.django_db

DEV, CLIENT, SECRET, REFRESH = "gads-dev-token", "relay.apps.googleusercontent.com", "client-secret", "1//refresh"
CUSTOMER, SHOWN, LIST = "1234567890", "123-456-7890", "5550001"
KEY_LABEL = "contact info (email addresses and phone numbers)"


@pytest.fixture(autouse=True)
def fresh_tokens():
    adapter._tokens.clear()
    adapter._pending.clear()


def google_sandbox(sandbox, list_type="CRM_BASED", key_type="CONTACT_INFO", **account):
    body = {"developer_token": DEV, "client_id": CLIENT, "client_secret": SECRET, "refresh_token": REFRESH}
    sandbox._call("POST", "google_ads/accounts", {**body, "customer_id": CUSTOMER, **account})
    sandbox._call(
        "POST",
        "google_ads/lists",
        {
            "user_list_id": LIST,
            "customer_id": CUSTOMER,
            "name": "Potential Parisians",
            "type": list_type,
            "upload_key_type": key_type,
        },
    )
    return sandbox


def google_connection(sandbox, members=None, list_id=LIST, **settings):
    plain = {"client_id": CLIENT, "customer_id": SHOWN, "login_customer_id": "", "api_version": "v24", **settings}
    secrets = {"developer_token": DEV, "client_secret": SECRET, "refresh_token": REFRESH}
    out = output("google_ads", plain, secrets, f"{sandbox.base_url}/google_ads")
    audience = StaticAudienceFactory()
    add_members(audience, emails=members if members is not None else emails(3))
    return services.connect(audience, out, {"user_list_id": list_id, "upload_key_type": "CONTACT_INFO"})


def failing_check(sandbox, name, **account):
    google_sandbox(sandbox, **account)
    status, checks = verify(google_connection(sandbox))
    assert status == "failing"
    return by_name(checks)[name]


@pytest.mark.django_db(transaction=True)
def test_it_shows_googles_size_estimate_without_comparing_it(sandbox):
    conn = google_connection(google_sandbox(sandbox))
    drain(conn.pk)

    status, checks = reverify(conn)

    assert status == "ok"
    assert [(c.name, c.status) for c in checks][:3] == [
        ("credentials", "ok"),
        ("user list", "ok"),
        ("customer match", "ok"),
    ]
    assert by_name(checks)["partner count"].detail == (
        "Google Ads Customer Match estimates at least 3 people; 3 identities were accepted."
    )
    assert asdict(compute(conn).steps[5]) == {
        "name": "partner's own count",
        "count": 3,
        "lost": 0,
        "reason": "Google Ads Customer Match estimates at least 3 people (matched people, updated within a day).",
    }


def test_the_funnel_says_who_cannot_be_sent(sandbox):
    google_sandbox(sandbox)
    conn = google_connection(sandbox)
    add_members(conn.audience, aaids=["00000000-0000-4000-8000-000000000001"])

    funnel = compute(conn, partner_count=None)

    assert funnel.steps[1].count == 3 and funnel.steps[1].lost == 1
    assert funnel.steps[1].reason == (
        "3 have an email address; Google Ads Customer Match accepts only email addresses or mobile numbers, so "
        "Google Ads Customer Match receives 3."
    )


def test_it_fails_a_revoked_refresh_token(sandbox):
    google_sandbox(sandbox)
    sandbox.revoke("google_ads", REFRESH)

    status, checks = verify(google_connection(sandbox))

    assert status == "failing"
    assert (checks[0].name, checks[0].detail) == (
        "credentials",
        "Google refused the refresh token of this output: Token has been expired or revoked.",
    )
    assert_hint(
        checks[0],
        "google_ads:expired",
        "Generate a new refresh token (scope https://www.googleapis.com/auth/adwords) with a Google account that can "
        f"open customer {SHOWN} in Google Ads, paste it into this output, then resume the connection. A refresh "
        "token lapses when it is revoked, unused for six months, or issued while the OAuth consent screen was in "
        "Testing (7 days).",
    )


def test_it_fails_a_client_secret_google_does_not_know(sandbox):
    google_sandbox(sandbox)
    conn = google_connection(sandbox)
    conn.output.set_secrets({"client_secret": "wrong"})
    conn.output.save()

    status, checks = reverify(conn)

    assert checks[0].detail == "Google did not accept the OAuth client ID and secret of this output."
    assert_hint(
        checks[0],
        "google_ads:client",
        "Check the OAuth client ID and client secret of this output: they must be the pair the refresh token was "
        "issued to (Google Cloud console → APIs & Services → Credentials).",
    )


def test_it_fails_a_token_without_the_ads_scope(sandbox):
    check = failing_check(sandbox, "credentials", scope="https://www.googleapis.com/auth/userinfo.email")

    assert check.detail == "The refresh token of this output was not granted the Google Ads API scope."
    assert_hint(
        check,
        "google_ads:scope",
        "Generate a new refresh token that includes the scope https://www.googleapis.com/auth/adwords and paste it "
        "into this output.",
    )


def test_it_fails_a_developer_token_with_test_access(sandbox):
    check = failing_check(sandbox, "credentials", approved=False)

    assert (
        check.detail == "Google Ads did not accept the developer token of this output (DEVELOPER_TOKEN_NOT_APPROVED)."
    )
    assert_hint(
        check,
        "google_ads:developer_token",
        "Check the developer token of this output (Google Ads → Tools → API Center of your manager account); a "
        "token with test access reaches only test accounts, so apply for Basic or Standard access.",
    )


def test_it_fails_a_customer_reached_only_through_a_manager(sandbox):
    check = failing_check(sandbox, "credentials", manager_id="999-888-7777")

    assert check.detail == f"The Google account of this output's refresh token may not access customer {SHOWN}."
    assert_hint(
        check,
        "google_ads:access",
        f"Give the Google account of this refresh token access to customer {SHOWN}, or set the login customer ID of "
        "this output to the manager account through which it has access.",
    )


def test_it_fails_when_the_customer_match_terms_are_not_accepted(sandbox):
    check = failing_check(sandbox, "customer match", terms_accepted=False)

    assert check.detail == f"Customer {SHOWN} has not accepted the Customer Match terms."
    assert_hint(
        check,
        "google_ads:terms",
        f"Someone with admin access to customer {SHOWN} must accept the Customer Match terms (Google Ads → Tools → "
        "Audience manager → Customer list), then resume this connection.",
    )


def test_it_fails_an_account_not_eligible_for_customer_match(sandbox):
    check = failing_check(sandbox, "customer match", eligible=False)

    assert check.detail == f"Customer {SHOWN} is not eligible for Customer Match."
    assert_hint(
        check,
        "google_ads:eligible",
        f"Customer {SHOWN} is not allowed to use Customer Match: it needs a good history of policy compliance and "
        "payments (https://support.google.com/adspolicy/answer/6299717). Connect a list of an eligible account, or "
        "ask Google Ads support.",
    )


def test_it_fails_a_missing_user_list(sandbox):
    google_sandbox(sandbox)

    status, checks = verify(google_connection(sandbox, list_id="404"))

    check = by_name(checks)["user list"]
    assert (status, check.detail) == ("failing", f"Google Ads user list 404 was not found in customer {SHOWN}.")
    assert_hint(
        check,
        "google_ads:list",
        f"Check the user list ID of this connection: it must be a Customer Match list of customer {SHOWN} (Google "
        "Ads → Tools → Audience manager, or user_list.id in the API).",
    )


def test_it_fails_a_list_that_is_not_customer_match(sandbox):
    check = failing_check(sandbox, "user list", list_type="RULE_BASED")

    assert (
        check.detail
        == f"User list Potential Parisians ({LIST}) is a RULE_BASED list; this connection uploads {KEY_LABEL}."
    )
    assert_hint(
        check,
        "google_ads:list_type",
        "Connect a Customer Match list (type CRM_BASED) whose upload key type is the one set on this connection "
        "(CONTACT_INFO), or change this connection's upload key type to the list's.",
    )


def test_it_fails_a_request_google_refuses_for_another_reason(sandbox):
    google_sandbox(sandbox)
    sandbox.fault("google_ads", "status", path="googleAds:search", status=400, count=1)

    status, checks = verify(google_connection(sandbox))

    assert status == "failing"
    assert (checks[0].name, checks[0].detail) == (
        "credentials",
        "Google Ads rejected the request: The input is invalid.",
    )
    assert_hint(
        checks[0],
        "google_ads:refused",
        "Google Ads refused the request in a way Audience Relay does not know; its answer is above. Check the "
        "settings of this output and connection against it.",
    )


def test_it_warns_when_google_answers_with_a_server_error(sandbox):
    google_sandbox(sandbox)
    sandbox.fault("google_ads", "status", path="googleAds:search", status=503, count=1)

    status, checks = verify(google_connection(sandbox))

    assert status == "warning"
    check = by_name(checks)["credentials"]
    assert (check.status, check.detail) == (
        "warning",
        "Could not check the credentials: Google Ads answered with HTTP 503, a temporary error.",
    )
    assert_hint(check, "google_ads:transient", TRANSIENT)
