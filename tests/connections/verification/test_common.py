"""Verification against the partner sandbox over real HTTP: each check failing and passing, each hint word for word.

Every hint a connection can show (the shared ones and each partner module's) is asserted through
`assert_hint`; `test_it_asserts_every_hint_in_the_catalogue` fails when one of them is never asserted here.
"""

import ast
import datetime as dt
import hashlib
import json
import re
import string
import threading
from contextlib import contextmanager
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests
from django.utils import timezone

from audiences.models import Audience, Profile
from connections import services
from connections.drain import drain
from connections.funnel import compute
from connections.hints import HINTS
from connections.models import Connection, OutboxMessage
from connections.verification import cap_check, verify
from outputs import schema
from outputs.models import Output
from outputs.partners import registry
from outputs.partners.braze import adapter as braze
from outputs.partners.facebook import adapter as facebook
from outputs.partners.mailchimp import adapter as mailchimp
from outputs.partners.webhook import adapter as webhook
from outputs.partners.xandr import adapter as xandr
from outputs.services import clean_output_settings
from staff import dates
from tests.audiences.factories import MembershipFactory
from tests.connections.factories import (
    LIST_ID,
    MAILCHIMP_KEY,
    ConnectionFactory,
    MailchimpOutputFactory,
    StaticAudienceFactory,
    add_members,
    sandbox_output,
)

pytestmark = pytest.mark.django_db

PARTNER_HINTS = {"mailchimp": mailchimp, "braze": braze, "xandr": xandr, "facebook": facebook, "webhook": webhook}
CATALOGUE = {**HINTS, **{f"{slug}:{k}": v for slug, module in PARTNER_HINTS.items() for k, v in module.HINTS.items()}}

BRAZE_KEY = "7c1e5a90-braze-sandbox-key-0001"
XANDR_USER, XANDR_PASSWORD, MEMBER, SEGMENT = "relay-api", "xandr-s3cret-pass", 1234, 5678
FB_TOKEN, ACT, FB_AUDIENCE = "EAAB-sandbox-s3cret-token-value", "act_1001", "23850000000000001"
WEBHOOK_SECRET = "whsec-sandbox-s3cret"
INVALID_KEY = (
    "Mailchimp rejected the API key: Your API key may be invalid, or you've attempted to access the wrong datacenter."
)
KEY_HINT = (
    "Check that the key is active and that its suffix (us6) matches your account's data center: "
    "Account → Extras → API keys."
)
TRANSIENT = "This is usually temporary; verification runs again on its schedule."


def assert_hint(check, key, text):
    """`check` shows the hint `key` of the catalogue ("paused", "mailchimp:credentials"), worded exactly `text`."""
    assert check.hint == text
    pattern = "".join(
        re.escape(literal) + (".+?" if field is not None else "")
        for literal, field, _, _ in string.Formatter().parse(CATALOGUE[key])
    )
    assert re.fullmatch(pattern, text, re.DOTALL), f"{text!r} is not worded by the hint {key!r}"


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


def emails(n, start=0):
    return [f"u{i}@example.com" for i in range(start, start + n)]


def aaid(n):
    return f"00000000-0000-4000-8000-{n:012d}"


def output(kind, settings, secrets, base_url, name=None):
    out = Output(kind=kind, name=name or kind.title(), base_url=base_url, settings=settings)
    out.set_secrets(secrets)
    out.save()
    return out


def mailchimp_connection(sandbox, members=3, **output_kwargs):
    out = sandbox_output(sandbox, **output_kwargs)
    audience = StaticAudienceFactory(name="Potential Parisians")
    add_members(audience, emails=emails(members))
    return services.connect(audience, out, {"list_id": LIST_ID})


def reverify(conn):
    conn.refresh_from_db()
    return verify(conn)


@contextmanager
def stand_in(routes):
    """A tiny HTTP server for what the sandbox cannot be told to do: {(method, path): (status, body, headers)}."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body, headers = routes[(self.command, urlsplit(self.path).path)]
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


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


# --- Mailchimp -----------------------------------------------------------------------------------------------


def test_it_fails_a_wrong_mailchimp_key(sandbox):
    conn = mailchimp_connection(sandbox, api_key="ffffffffffffffffffffffffffffffff-us6")

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


# --- Braze ---------------------------------------------------------------------------------------------------


def braze_connection(sandbox, key=BRAZE_KEY, base_url=None):
    settings = {"rest_endpoint": "https://rest.iad-01.braze.com"}
    out = output("braze", settings, {"api_key": key}, base_url or f"{sandbox.base_url}/braze")
    audience = StaticAudienceFactory()
    add_members(audience, emails=emails(2))
    return services.connect(audience, out, {"identifier": "email", "attribute_name": "relay_audiences"})


def braze_key_hint(sandbox):
    host = sandbox.base_url.removeprefix("http://")
    return (
        "Check in Braze (Settings → APIs and Identifiers) that the key exists and has not been deleted, and "
        f"that the REST endpoint is your instance's ({host}): a key works only on its own instance."
    )


def test_it_passes_a_working_braze_key(sandbox):
    sandbox.braze_key(BRAZE_KEY, ["users.track"])

    status, checks = verify(braze_connection(sandbox))

    assert status == "ok"
    assert [(c.name, c.status, c.detail) for c in checks[:2]] == [
        ("credentials", "ok", "Braze accepted the API key for users.track."),
        (
            "destination",
            "ok",
            "Users are tagged with one attribute per audience ('relay_audiences: …'), matched by email address.",
        ),
    ]
    assert "partner count" not in by_name(checks)  # Braze has no count to compare


def test_it_fails_a_revoked_braze_key(sandbox):
    sandbox.braze_key(BRAZE_KEY, ["users.track"])
    sandbox.revoke("braze", BRAZE_KEY)

    status, checks = verify(braze_connection(sandbox))

    assert status == "failing"
    assert (checks[0].status, checks[0].detail) == ("failing", "Braze rejected the API key.")
    assert_hint(checks[0], "braze:credentials", braze_key_hint(sandbox))


def test_it_fails_a_braze_key_without_the_users_track_permission(sandbox):
    # Braze answers a key it knows but that lacks the permission with 403: the hint names the permission.
    sandbox.braze_key(BRAZE_KEY, ["campaigns.trigger.send"])

    status, checks = verify(braze_connection(sandbox))

    assert status == "failing"
    assert (checks[0].status, checks[0].detail) == ("failing", "Braze refused the API key for /users/track (HTTP 403).")
    assert_hint(
        checks[0],
        "braze:permission",
        "The key lacks the users.track permission: Settings → APIs and Identifiers → edit the key → tick "
        "users.track under User Data.",
    )


def braze_audiences(sandbox, n, membership=None, array_cap=None):
    """`n` audiences connected to one Braze output, one user in all of them and another in the first only."""
    sandbox.braze_key(BRAZE_KEY, ["users.track"])
    settings = {"rest_endpoint": "https://rest.iad-01.braze.com"}
    if array_cap:
        settings["array_cap"] = array_cap
    out = output("braze", settings, {"api_key": BRAZE_KEY}, f"{sandbox.base_url}/braze")
    audiences = [StaticAudienceFactory() for _ in range(n)]
    add_members(audiences[0], emails=emails(2))
    everywhere = Profile.objects.get(identities__value="u0@example.com")
    for audience in audiences[1:]:
        MembershipFactory(audience=audience, profile=everywhere)
    settings = {"identifier": "email", **({"membership": membership} if membership else {})}
    return [services.connect(a, out, settings) for a in audiences]


# Audience IDs far past what the tests' sequences reach, so a test can choose them: sorted as numbers, these
# three are not sorted as text.
IDS = (7_000_000, 40_000_000, 120_000_000)


def string_audiences(sandbox, ids=IDS, settings=None):
    """Audiences with these IDs connected to one Braze output in string mode: u0 in all of them, u1 in the first."""
    sandbox.braze_key(BRAZE_KEY, ["users.track"])
    out = output(
        "braze", {"rest_endpoint": "https://rest.iad-01.braze.com"}, {"api_key": BRAZE_KEY}, f"{sandbox.base_url}/braze"
    )
    audiences = [StaticAudienceFactory(pk=pk) for pk in ids]
    add_members(audiences[0], emails=["u0@example.com", "u1@example.com"])
    for audience in audiences[1:]:
        MembershipFactory(audience=audience, profile=u0())
        Audience.objects.filter(pk=audience.pk).update(size=1)
    settings = {"identifier": "email", "membership": "string", **(settings or {})}
    return [services.connect(a, out, settings) for a in audiences]


def u0():
    return Profile.objects.get(identities__value="u0@example.com")


def test_it_warns_when_members_of_a_braze_array_are_in_more_audiences_than_the_cap(sandbox):
    conns = braze_audiences(sandbox, 30, "array")

    status, checks = verify(conns[0])

    assert status == "warning"
    check = by_name(checks)["array cap"]
    assert (check.status, check.detail) == (
        "warning",
        "1 member of this audience is in more than 25 audiences connected to this output; Braze keeps only 25 "
        "in the array attribute 'relay_audiences'.",
    )
    assert_hint(
        check,
        "braze:array_cap",
        "Braze keeps only the 25 newest values of an array attribute and silently drops the oldest. Switch this "
        "connection to one attribute per audience (setting 'Membership written as'), or raise the attribute's "
        "maximum array length in Braze (Data Settings → Custom Attributes, up to 100) and set the output's array "
        "cap to match.",
    )


def test_it_counts_members_past_the_braze_array_cap_in_one_query(sandbox, django_assert_num_queries):
    conns = braze_audiences(sandbox, 30, "array", array_cap=30)
    conn = Connection.objects.select_related("audience", "output").get(pk=conns[0].pk)
    # Connections writing another array do not share this one: they do not count towards its cap.
    other = services.connect(
        StaticAudienceFactory(),
        conn.output,
        {"identifier": "email", "membership": "array", "attribute_name": "other_audiences"},
    )
    MembershipFactory(audience=other.audience, profile=Profile.objects.get(identities__value="u0@example.com"))

    with django_assert_num_queries(1):
        check = cap_check(conn)

    # 31 connected audiences, but only 30 write this array: within its cap.
    assert (check.status, check.detail) == ("ok", "No member is in more than 30 audiences connected to this output.")


def test_it_passes_a_braze_array_within_the_outputs_cap(sandbox):
    conns = braze_audiences(sandbox, 30, "array", array_cap=30)

    status, checks = verify(conns[0])

    check = by_name(checks)["array cap"]
    assert (check.status, check.detail) == ("ok", "No member is in more than 30 audiences connected to this output.")


def test_it_rejects_and_counts_braze_string_members_whose_ids_pass_255_characters(sandbox):
    # 24 IDs of 10 digits and 23 commas: 263 characters; the member of the first audience alone fits.
    conns = string_audiences(sandbox, ids=[2_000_000_000 + n for n in range(24)])

    for conn in conns:
        drain(conn.pk)
    status, checks = verify(conns[0])

    rejected = OutboxMessage.objects.get(connection=conns[0], value="u0@example.com")
    assert (rejected.state, rejected.last_error) == (
        "rejected",
        "This user is in 24 audiences connected to this output; their IDs take 263 characters, more than the 255 "
        "Braze keeps in the string attribute 'relay_audiences'.",
    )
    assert "email:u0@example.com" not in sandbox.braze_users()["users"]  # nothing was sent for u0
    assert sandbox.braze_users()["users"]["email:u1@example.com"]["relay_audiences"] == "2000000000"
    check = by_name(checks)["string length"]
    assert (status, check.status, check.detail) == (
        "warning",
        "warning",
        "1 member of this audience is in so many audiences connected to this output that their IDs take more "
        "than the 255 characters Braze keeps in the string attribute 'relay_audiences'.",
    )
    assert_hint(
        check,
        "braze:string_cap",
        "Braze keeps at most 255 characters in a string attribute, so these members' lists are not sent. Switch "
        "this connection to one attribute per audience (setting 'Membership written as'), or give some of the "
        "output's string connections another attribute name so that each list stays shorter.",
    )


def test_it_passes_braze_string_lists_within_255_characters(sandbox):
    conns = string_audiences(sandbox, ids=[2_000_000_000 + n for n in range(23)])  # 252 characters

    _, checks = verify(conns[0])

    check = by_name(checks)["string length"]
    assert (check.status, check.detail) == ("ok", "Every member's audience IDs fit in 255 characters.")


def test_it_delivers_all_30_memberships_of_a_user_with_one_braze_attribute_per_audience(sandbox):
    conns = braze_audiences(sandbox, 30)  # the default for a new connection
    for conn in conns:
        drain(conn.pk)

    status, checks = verify(conns[0])

    assert "array cap" not in by_name(checks)  # no cap to warn about
    held = sandbox.braze_users()["users"]["email:u0@example.com"]
    assert {k: v for k, v in held.items() if k.startswith("relay_audiences")} == {
        f"relay_audiences: {conn.audience.name}": True for conn in conns
    }


def test_it_fails_a_braze_key_refused_for_the_endpoint(sandbox):
    sandbox.braze_key(BRAZE_KEY, ["users.track"])
    sandbox.fault("braze", "status", status=403)

    status, checks = verify(braze_connection(sandbox))

    assert status == "failing"
    assert checks[0].detail == "Braze refused the API key for /users/track (HTTP 403)."
    assert_hint(
        checks[0],
        "braze:permission",
        "The key lacks the users.track permission: Settings → APIs and Identifiers → edit the key → tick "
        "users.track under User Data.",
    )


def test_it_fails_a_wrong_braze_endpoint(sandbox):
    sandbox.braze_key(BRAZE_KEY, ["users.track"])

    status, checks = verify(braze_connection(sandbox, base_url=f"{sandbox.base_url}/braze/v2"))

    assert status == "failing"
    host = sandbox.base_url.removeprefix("http://")
    assert checks[0].detail == f"Braze has no /users/track endpoint at {host}."
    assert_hint(
        checks[0],
        "braze:endpoint",
        "Check the REST endpoint in the output settings: it is listed for your dashboard's instance at "
        "https://www.braze.com/docs/api/basics/#endpoints, such as https://rest.iad-01.braze.com.",
    )


def test_it_warns_when_braze_answers_with_a_server_error(sandbox):
    sandbox.braze_key(BRAZE_KEY, ["users.track"])
    sandbox.fault("braze", "status", status=503)

    status, checks = verify(braze_connection(sandbox))

    assert status == "warning"
    assert (checks[0].status, checks[0].detail) == ("warning", "Could not check the API key: Braze answered HTTP 503.")
    assert_hint(checks[0], "braze:transient", TRANSIENT)


# --- AppNexus / Xandr ----------------------------------------------------------------------------------------


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


# --- Facebook Custom Audiences -------------------------------------------------------------------------------


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


# --- webhook -------------------------------------------------------------------------------------------------


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

    new_key = "fedcba9876543210fedcba9876543210-us6"
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


# --- the catalogue ------------------------------------------------------------------------------------------


def test_it_asserts_every_hint_in_the_catalogue():
    tree = ast.parse(Path(__file__).read_text())
    asserted = {
        node.args[1].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "assert_hint"
        and isinstance(node.args[1], ast.Constant)
    }
    assert sorted(set(CATALOGUE) - asserted) == []
    assert sorted(asserted - set(CATALOGUE)) == []
