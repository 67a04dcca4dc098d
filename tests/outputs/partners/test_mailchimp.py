"""Mailchimp against the partner sandbox: real HTTP, the list checked on the sandbox side."""

import threading

import pytest
import requests

from outputs.partners.base import Account, Message, Outcome
from outputs.partners.mailchimp.adapter import Mailchimp, subscriber_hash
from outputs.partners.registry import get
from outputs.sandbox.client import SandboxError
from outputs.schema import clean_value
from tests.waiting import wait_until

KEY = "5f0c7e1d9a2b4c6e8f1a3b5c7d9e0f12-us6"
LIST = "a1b2c3d4e5"
CONNECTION = {"list_id": LIST}
KEY_HINT = (
    "Check that the key is active and that its suffix (us6) matches your account's data center: "
    "Account → Extras → API keys."
)
LIST_HINT = (
    "Check the List ID in the connection settings: in Mailchimp, Audience → Settings → "
    "Audience name and defaults shows it as the Audience ID."
)
INVALID_KEY = (
    "Mailchimp rejected the API key: Your API key may be invalid, or you've attempted to access the wrong datacenter."
)


@pytest.fixture
def partner():
    return get("mailchimp")


@pytest.fixture
def mailchimp(sandbox):
    sandbox.mailchimp_list(KEY, LIST, "Potential Parisians")
    return sandbox


def account(sandbox, **settings):
    return Account({"api_key": KEY, **settings}, f"{sandbox.base_url}/mailchimp/{{dc}}")


def add(key, email, identity_type="email"):
    return Message(key, "add", identity_type, email, "Potential Parisians")


def remove(key, email):
    return Message(key, "remove", "email", email, "Potential Parisians")


def members(sandbox):
    return sandbox.mailchimp_list_state(LIST)["members"]


def statuses(sandbox):
    return {email: m["status"] for email, m in members(sandbox).items()}


# --- declarations and normalization -----------------------------------------------------------------------


def test_it_is_registered_with_mailchimps_limits(partner):
    assert isinstance(partner, Mailchimp)
    assert (partner.slug, partner.pattern, partner.batch_size, partner.max_concurrency) == (
        "mailchimp",
        "direct",
        500,
        10,
    )
    assert set(partner.identity_types) == {"email"}
    assert partner.delivery.describe() == "realtime"
    assert [s.name for s in partner.output_settings] == [
        "api_key",
        "email_type",
        "double_optin",
        "delete_on_subscription_end",
    ]
    assert [s.name for s in partner.connection_settings] == ["list_id"]


def test_it_hashes_members_as_mailchimps_docs_do():
    # Mailchimp's docs: the MD5 of urist.mcvankab@freddiesjokes.com is 62eeb292278cc15f5817cb78f7790b08.
    assert subscriber_hash("Urist.McVankab@freddiesjokes.com") == "62eeb292278cc15f5817cb78f7790b08"


def test_it_validates_the_api_key_form(partner):
    api_key = partner.output_settings[0]
    assert api_key.secret
    assert clean_value(api_key, KEY) == KEY
    with pytest.raises(ValueError) as excinfo:
        clean_value(api_key, "5f0c7e1d9a2b4c6e8f1a3b5c7d9e0f12")
    assert str(excinfo.value) == (
        "This is not a Mailchimp API key: expected 32 letters and digits, a dash and your data center, such as …-us6."
    )


def test_it_declares_the_optional_settings_with_their_defaults(partner):
    by_name = {s.name: s for s in partner.output_settings}
    assert clean_value(by_name["email_type"], "") == "html"
    assert clean_value(by_name["double_optin"], None) is False
    assert clean_value(by_name["delete_on_subscription_end"], None) is False
    with pytest.raises(ValueError) as excinfo:
        clean_value(by_name["email_type"], "rich")
    assert str(excinfo.value) == "Must be one of html, text."


def test_it_uses_the_data_center_from_the_key(partner):
    assert partner.base_url(Account({"api_key": KEY})) == "https://us6.api.mailchimp.com"
    sandboxed = Account({"api_key": KEY.replace("-us6", "-us19")}, "http://127.0.0.1:8125/mailchimp/{dc}")
    assert partner.base_url(sandboxed) == "http://127.0.0.1:8125/mailchimp/us19"


# --- sending ----------------------------------------------------------------------------------------------


def test_it_subscribes_new_members(partner, mailchimp):
    result = partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com"), add(2, "bob@example.com")])

    assert result.fault is None
    assert {k: o.status for k, o in result.outcomes.items()} == {1: "accepted", 2: "accepted"}
    assert [(a.method, a.path, a.status) for a in result.attempts] == [
        ("POST", f"/mailchimp/us6/3.0/lists/{LIST}", 200)
    ]
    state = mailchimp.mailchimp_list_state(LIST)
    assert state["member_count"] == 2
    assert state["members"]["ada@example.com"] == {"status": "subscribed", "email_type": "html", "operations": 1}


def test_it_sets_the_email_type(partner, mailchimp):
    partner.send(account(mailchimp, email_type="text"), CONNECTION, [add(1, "ada@example.com")])

    assert members(mailchimp)["ada@example.com"]["email_type"] == "text"


def test_it_adds_a_member_again_without_changing_anything(partner, mailchimp):
    partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")])
    result = partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")])

    assert result.outcomes[1].status == "accepted"
    state = mailchimp.mailchimp_list_state(LIST)
    assert state["member_count"] == 1
    assert state["members"]["ada@example.com"]["status"] == "subscribed"
    assert mailchimp.stats()["duplicates"]["mailchimp"] == 1  # the repeat was an identical upsert


def test_it_records_mailchimps_reason_for_each_refused_member(partner, mailchimp):
    mailchimp.mailchimp_rejection("fake@example.com", "fake")
    mailchimp.mailchimp_rejection("bounced@example.com", "compliance")

    result = partner.send(
        account(mailchimp),
        CONNECTION,
        [add(1, "ada@example.com"), add(2, "fake@example.com"), add(3, "bounced@example.com")],
    )

    assert result.fault is None
    assert result.outcomes[1].status == "accepted"
    assert result.outcomes[2].status == "rejected"
    assert result.outcomes[2].reason == "fake@example.com looks fake or invalid, please enter a real email address."
    assert result.outcomes[3].status == "rejected"
    assert result.outcomes[3].reason == (
        "bounced@example.com is in a compliance state due to unsubscribe, bounce, or compliance review "
        "and cannot be subscribed."
    )
    assert statuses(mailchimp) == {"ada@example.com": "subscribed"}


def test_it_rejects_identities_that_are_not_email_addresses_without_calling(partner, mailchimp):
    result = partner.send(account(mailchimp), CONNECTION, [add(1, "cust-42", "customer_id")])

    assert result.outcomes[1].status == "rejected"
    assert result.outcomes[1].reason == "Mailchimp accepts only email addresses."
    assert result.attempts == []


def test_it_adds_new_members_as_pending_with_double_opt_in(partner, mailchimp):
    result = partner.send(account(mailchimp, double_optin=True), CONNECTION, [add(1, "ada@example.com")])

    assert result.outcomes[1].status == "accepted"
    state = mailchimp.mailchimp_list_state(LIST)
    assert state["members"]["ada@example.com"]["status"] == "pending"
    assert state["member_count"] == 0


def test_it_leaves_confirmed_members_subscribed_with_double_opt_in(partner, mailchimp):
    partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com"), add(2, "bob@example.com")])
    partner.send(account(mailchimp), CONNECTION, [remove(2, "bob@example.com")])
    doi = account(mailchimp, double_optin=True)

    first = partner.send(doi, CONNECTION, [add(1, "ada@example.com"), add(2, "bob@example.com")])
    again = partner.send(doi, CONNECTION, [add(1, "ada@example.com"), add(2, "bob@example.com")])

    assert {o.status for o in [*first.outcomes.values(), *again.outcomes.values()]} == {"accepted"}
    # Ada had confirmed: a repeat must not send her back to pending. Bob had left: he must confirm again.
    assert statuses(mailchimp) == {"ada@example.com": "subscribed", "bob@example.com": "pending"}


def test_it_unsubscribes_members_who_leave_by_default(partner, mailchimp):
    partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com"), add(2, "bob@example.com")])

    result = partner.send(account(mailchimp), CONNECTION, [remove(1, "ada@example.com")])

    assert result.outcomes[1].status == "accepted"
    state = mailchimp.mailchimp_list_state(LIST)
    assert state["member_count"] == 1
    assert state["counts"]["unsubscribed"] == 1
    assert state["members"]["ada@example.com"]["status"] == "unsubscribed"


def test_it_subscribes_a_member_who_comes_back(partner, mailchimp):
    partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")])
    partner.send(account(mailchimp), CONNECTION, [remove(1, "ada@example.com")])

    partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")])

    assert statuses(mailchimp) == {"ada@example.com": "subscribed"}


def test_it_archives_members_who_leave_with_delete_on_subscription_end(partner, mailchimp):
    deleting = account(mailchimp, delete_on_subscription_end=True)
    partner.send(deleting, CONNECTION, [add(1, "ada@example.com"), add(2, "bob@example.com")])

    result = partner.send(deleting, CONNECTION, [remove(1, "ada@example.com")])

    assert result.outcomes[1].status == "accepted"
    # The member is addressed by the MD5 of the email; the attempt kept for troubleshooting masks it.
    assert [(a.method, a.path, a.status) for a in result.attempts] == [
        ("DELETE", f"/mailchimp/us6/3.0/lists/{LIST}/members/[hash]", 204)
    ]
    state = mailchimp.mailchimp_list_state(LIST)
    assert state["members"]["ada@example.com"]["status"] == "archived"
    assert (state["member_count"], state["counts"]["archived"]) == (1, 1)


def test_it_counts_archiving_an_absent_member_as_done(partner, mailchimp):
    deleting = account(mailchimp, delete_on_subscription_end=True)

    result = partner.send(deleting, CONNECTION, [remove(1, "never@example.com"), remove(2, "nor@example.com")])

    assert {k: o.status for k, o in result.outcomes.items()} == {1: "accepted", 2: "accepted"}
    # One look at the list tells "no such member" from "no such list"; it is not repeated per member.
    assert [(a.method, a.status) for a in result.attempts] == [("DELETE", 404), ("GET", 200), ("DELETE", 404)]
    assert members(mailchimp) == {}


def test_it_unsubscribes_then_archives_a_member_who_leaves_while_pending(partner, mailchimp):
    deleting = account(mailchimp, delete_on_subscription_end=True, double_optin=True)
    partner.send(deleting, CONNECTION, [add(1, "ada@example.com")])

    result = partner.send(deleting, CONNECTION, [remove(1, "ada@example.com")])

    assert result.outcomes[1] == Outcome("accepted")
    # Mailchimp will not archive a pending member; unsubscribed first, the confirmation link no longer works.
    assert [(a.method, a.status) for a in result.attempts] == [
        ("DELETE", 405),
        ("GET", 200),
        ("PATCH", 200),
        ("DELETE", 204),
    ]
    assert statuses(mailchimp) == {"ada@example.com": "archived"}
    with pytest.raises(SandboxError) as excinfo:
        mailchimp.mailchimp_contact_acts(LIST, "ada@example.com", "confirm")
    assert str(excinfo.value).endswith("ada@example.com cannot confirm: the contact is archived, not pending.")


def test_it_unsubscribes_a_member_who_leaves_while_pending_so_they_cannot_confirm(partner, mailchimp):
    doi = account(mailchimp, double_optin=True)
    partner.send(doi, CONNECTION, [add(1, "ada@example.com")])

    result = partner.send(doi, CONNECTION, [remove(1, "ada@example.com")])

    assert result.outcomes[1] == Outcome("accepted")
    with pytest.raises(SandboxError) as excinfo:
        mailchimp.mailchimp_contact_acts(LIST, "ada@example.com", "confirm")
    assert str(excinfo.value).endswith("ada@example.com cannot confirm: the contact is unsubscribed, not pending.")
    assert statuses(mailchimp) == {"ada@example.com": "unsubscribed"}


def test_it_counts_removing_an_archived_member_again_as_done(partner, mailchimp):
    deleting = account(mailchimp, delete_on_subscription_end=True)
    partner.send(deleting, CONNECTION, [add(1, "ada@example.com")])
    partner.send(deleting, CONNECTION, [remove(1, "ada@example.com")])

    again = partner.send(deleting, CONNECTION, [remove(1, "ada@example.com")])

    assert again.outcomes[1] == Outcome("accepted")
    assert [(a.method, a.status) for a in again.attempts] == [("DELETE", 405), ("GET", 200)]
    assert statuses(mailchimp) == {"ada@example.com": "archived"}


def test_it_counts_removing_a_cleaned_member_as_done(partner, mailchimp):
    requests.post(
        f"{mailchimp.base_url}/mailchimp/us6/3.0/lists/{LIST}",
        auth=("x", KEY),
        json={"members": [{"email_address": "bounced@example.com", "status": "cleaned"}], "update_existing": True},
        timeout=5,
    )

    result = partner.send(
        account(mailchimp, delete_on_subscription_end=True), CONNECTION, [remove(1, "bounced@example.com")]
    )

    assert result.outcomes[1] == Outcome("accepted")
    assert statuses(mailchimp) == {"bounced@example.com": "cleaned"}


def test_it_subscribes_members_to_a_list_that_requires_merge_fields(partner, mailchimp):
    mailchimp.mailchimp_list(KEY, "withnames", "Needs names", required_merge_fields=["FNAME", "LNAME"])

    result = partner.send(account(mailchimp), {"list_id": "withnames"}, [add(1, "ada@example.com")])

    assert result.outcomes[1] == Outcome("accepted")
    state = mailchimp.mailchimp_list_state("withnames")
    assert state["members"]["ada@example.com"]["status"] == "subscribed"


def test_it_retries_a_member_who_signed_up_to_many_lists_recently(partner, mailchimp):
    mailchimp.mailchimp_rejection("busy@example.com", "busy", count=1)

    first = partner.send(account(mailchimp), CONNECTION, [add(1, "busy@example.com"), add(2, "ada@example.com")])
    later = partner.send(account(mailchimp), CONNECTION, [add(1, "busy@example.com")])

    assert first.outcomes == {
        1: Outcome(
            "retry",
            "busy@example.com has signed up to a lot of lists very recently; we're not allowing more signups for now",
        ),
        2: Outcome("accepted"),
    }
    assert later.outcomes == {1: Outcome("accepted")}
    assert statuses(mailchimp) == {"busy@example.com": "subscribed", "ada@example.com": "subscribed"}


def test_it_rejects_for_good_a_member_who_unsubscribed_themselves(partner, mailchimp):
    partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")])
    mailchimp.mailchimp_contact_acts(LIST, "ada@example.com", "unsubscribe")

    result = partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")])

    assert result.outcomes[1] == Outcome(
        "rejected",
        "ada@example.com is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be "
        "subscribed.",
    )
    assert statuses(mailchimp) == {"ada@example.com": "unsubscribed"}


def test_it_sends_a_full_batch_of_500_in_one_call(partner, mailchimp):
    batch = [add(i, f"member{i}@example.com") for i in range(500)]

    result = partner.send(account(mailchimp), CONNECTION, batch)

    assert len(result.attempts) == 1
    assert {o.status for o in result.outcomes.values()} == {"accepted"} and len(result.outcomes) == 500
    assert mailchimp.mailchimp_list_state(LIST)["member_count"] == 500


def test_it_never_sends_more_than_500_members_in_one_call(partner, mailchimp):
    # The engine hands over batch_size messages at most; a longer list is still split, because Mailchimp
    # refuses a call with 501 members as a whole.
    batch = [add(i, f"member{i}@example.com") for i in range(501)]

    result = partner.send(account(mailchimp), CONNECTION, batch)

    assert [(a.method, a.status) for a in result.attempts] == [("POST", 200), ("POST", 200)]
    assert len(result.outcomes) == 501 and {o.status for o in result.outcomes.values()} == {"accepted"}
    assert mailchimp.mailchimp_list_state(LIST)["member_count"] == 501


# --- error classes ----------------------------------------------------------------------------------------


def test_it_faults_on_an_unknown_key(partner, sandbox):
    sandbox.mailchimp_list("0" * 32 + "-us6", LIST, "Someone else's")

    result = partner.send(account(sandbox), CONNECTION, [add(1, "ada@example.com")])

    assert result.outcomes == {}
    assert (result.fault.kind, result.fault.message, result.fault.hint) == ("credentials", INVALID_KEY, KEY_HINT)


def test_it_names_the_data_center_when_the_key_suffix_is_wrong(partner, mailchimp):
    wrong_dc = Account({"api_key": KEY.replace("-us6", "-us9")}, f"{mailchimp.base_url}/mailchimp/{{dc}}")

    result = partner.send(wrong_dc, CONNECTION, [add(1, "ada@example.com")])

    assert result.attempts[0].path == f"/mailchimp/us9/3.0/lists/{LIST}"
    assert result.fault.message == INVALID_KEY
    assert result.fault.hint == KEY_HINT.replace("(us6)", "(us9)")


def test_it_faults_on_a_revoked_key(partner, mailchimp):
    partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")])
    mailchimp.revoke("mailchimp", KEY)

    result = partner.send(account(mailchimp), CONNECTION, [add(2, "bob@example.com")])

    assert (result.fault.kind, result.fault.message) == ("credentials", INVALID_KEY)
    assert 2 not in result.outcomes


def test_it_faults_on_a_key_that_is_not_in_mailchimps_form_without_calling(partner, mailchimp):
    result = partner.send(Account({"api_key": "not-a-key"}, mailchimp.base_url), CONNECTION, [add(1, "a@example.com")])

    assert result.attempts == []
    assert result.fault.message == "The Mailchimp API key is not in the expected form."
    assert result.fault.hint == (
        "Copy the key again from Mailchimp: Account → Extras → API keys. It is 32 letters and digits, "
        "a dash, then your data center (such as us6)."
    )


def test_it_faults_when_the_list_does_not_exist(partner, mailchimp):
    result = partner.send(account(mailchimp), {"list_id": "nope"}, [add(1, "ada@example.com")])

    assert (result.fault.kind, result.fault.message, result.fault.hint) == (
        "destination",
        "Mailchimp has no list with ID 'nope' in this account.",
        LIST_HINT,
    )


def test_it_faults_when_the_list_is_deleted_while_archiving(partner, mailchimp):
    mailchimp.delete_mailchimp_list(LIST)

    result = partner.send(account(mailchimp, delete_on_subscription_end=True), CONNECTION, [remove(1, "a@example.com")])

    assert result.fault.kind == "destination"
    assert result.fault.message == f"Mailchimp has no list with ID '{LIST}' in this account."


def test_it_retries_on_429_after_the_time_mailchimp_gives(partner, mailchimp):
    mailchimp.fault("mailchimp", "status", path=f"/lists/{LIST}", status=429, retry_after=7)

    result = partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com"), add(2, "bob@example.com")])

    assert result.fault is None
    reason = "Mailchimp is limiting requests (HTTP 429): You have exceeded the limit of 10 simultaneous connections."
    assert result.outcomes == {1: Outcome("retry", reason, 7.0), 2: Outcome("retry", reason, 7.0)}


def test_it_retries_when_mailchimp_refuses_an_eleventh_connection(partner, mailchimp):
    mailchimp.fault("mailchimp", "slow", path="/ping", delay=1.5, count=10)
    auth = ("relay", KEY)
    ping = f"{mailchimp.base_url}/mailchimp/us6/3.0/ping"
    holders = [threading.Thread(target=requests.get, args=(ping,), kwargs={"auth": auth}) for _ in range(10)]
    for thread in holders:
        thread.start()
    wait_until(lambda: mailchimp.stats()["in_flight"]["mailchimp"] >= 10, 5, "ten requests held at Mailchimp")

    result = partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")])
    for thread in holders:
        thread.join()

    assert result.outcomes[1].status == "retry"
    assert result.outcomes[1].reason == (
        "Mailchimp is limiting requests (HTTP 429): You have exceeded the limit of 10 simultaneous connections."
    )
    assert result.outcomes[1].retry_after is None  # no Retry-After: the engine backs off on its own


def test_it_retries_on_a_server_error(partner, mailchimp):
    mailchimp.fault("mailchimp", "status", status=503)

    result = partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")])

    assert result.outcomes[1] == Outcome("retry", "Mailchimp had a server error (HTTP 503).")
    assert result.attempts[0].status == 503


def test_it_retries_on_a_timeout(partner, mailchimp, settings, monkeypatch):
    settings.PARTNER_HTTP_TIMEOUT = 0.3
    mailchimp.fault("mailchimp", "timeout", delay=2)

    result = partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")])

    assert (result.outcomes[1].status, result.outcomes[1].reason) == (
        "retry",
        "The request timed out after 0.3 seconds.",
    )
    assert result.attempts[0].status is None


def test_it_retries_on_a_dropped_connection(partner, mailchimp):
    mailchimp.fault("mailchimp", "drop")

    result = partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")])

    host = mailchimp.base_url.removeprefix("http://")
    assert (result.outcomes[1].status, result.outcomes[1].reason) == (
        "retry",
        f"A connection error occurred: could not reach {host}.",
    )


def test_it_rejects_a_batch_mailchimp_refuses_as_a_whole(partner, mailchimp):
    mailchimp.fault("mailchimp", "status", status=400)

    result = partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com"), add(2, "bob@example.com")])

    assert result.fault is None
    assert {o.status for o in result.outcomes.values()} == {"rejected"}
    assert result.outcomes[1].reason == "Mailchimp refused the request (HTTP 400): Your request could not be processed."


def test_it_never_shows_the_api_key(partner, mailchimp):
    results = [
        partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")]),
        partner.send(account(mailchimp), {"list_id": "nope"}, [add(1, "ada@example.com")]),
    ]
    mailchimp.revoke("mailchimp", KEY)
    results.append(partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")]))
    checks = partner.verify(account(mailchimp), CONNECTION)

    shown = [c.detail + c.hint for c in checks]
    for result in results:
        shown += [o.reason for o in result.outcomes.values()]
        shown += [a.path + a.response_excerpt for a in result.attempts]
        if result.fault:
            shown += [result.fault.message, result.fault.hint]
    secret = KEY.split("-")[0]
    assert not [text for text in shown if secret in text]


def test_it_masks_a_key_that_mailchimp_echoes(partner, mailchimp):
    echo = {"title": "API Key Invalid", "status": 401, "detail": f"Key {KEY} is disabled."}
    mailchimp.fault("mailchimp", "status", status=401, body=echo)

    result = partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")])

    assert result.fault.message == "Mailchimp rejected the API key: Key … is disabled."
    assert KEY.split("-")[0] not in result.attempts[0].response_excerpt


# --- verification and counts ------------------------------------------------------------------------------


def test_it_verifies_the_key_and_the_list(partner, mailchimp):
    partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com")])

    checks = partner.verify(account(mailchimp), CONNECTION)

    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("credentials", "ok", "Mailchimp accepted the API key (data center us6)."),
        ("destination", "ok", "The list 'Potential Parisians' exists."),
    ]


def test_it_fails_verification_for_a_missing_list(partner, mailchimp):
    credentials, destination = partner.verify(account(mailchimp), {"list_id": "nope"})

    assert credentials.status == "ok"
    assert (destination.status, destination.detail, destination.hint) == (
        "failing",
        "Mailchimp has no list with ID 'nope' in this account.",
        LIST_HINT,
    )


def test_it_fails_verification_for_a_rejected_key(partner, sandbox):
    credentials, destination = partner.verify(account(sandbox), CONNECTION)

    assert (credentials.status, credentials.detail, credentials.hint) == ("failing", INVALID_KEY, KEY_HINT)
    assert (destination.status, destination.detail) == ("warning", "Not checked: the API key must work first.")


def test_it_checks_credentials_with_a_ping(partner, mailchimp):
    check = partner.check_credentials(account(mailchimp))

    assert (check.name, check.status) == ("credentials", "ok")


def test_it_warns_when_verification_cannot_reach_mailchimp(partner, mailchimp):
    mailchimp.fault("mailchimp", "status", path="/ping", status=503)

    check = partner.check_credentials(account(mailchimp))

    assert (check.status, check.detail, check.hint) == (
        "warning",
        "Could not check the API key: Mailchimp answered HTTP 503.",
        "This is usually temporary; verification runs again on its schedule.",
    )


def test_it_reports_the_lists_subscribed_count(partner, mailchimp):
    partner.send(account(mailchimp), CONNECTION, [add(1, "ada@example.com"), add(2, "bob@example.com")])
    partner.send(account(mailchimp), CONNECTION, [remove(2, "bob@example.com")])

    assert partner.partner_count(account(mailchimp), CONNECTION) == 1
    assert partner.partner_count(account(mailchimp), {"list_id": "nope"}) is None
