"""Klaviyo against the partner sandbox: real HTTP, the list's profiles checked on the sandbox side."""

import pytest

from outputs.partners.base import Account, Message, Outcome
from outputs.partners.klaviyo.adapter import Klaviyo
from outputs.partners.registry import get
from outputs.schema import clean_value

KEY = "pk_3f1c9a7e5b2d4f6a8c0e1b3d5f7a9c2e4b"
LIST_ID = "Y6nRLr"
AUDIENCE = "Potential Parisians"
LIST = {"list_id": LIST_ID}
SUBSCRIBE = {"list_id": LIST_ID, "consent": "subscribe"}
BY_PROFILE_ID = {"list_id": LIST_ID, "customer_ids": "profile_id"}

CREDENTIALS_HINT = (
    "Check in Klaviyo (Settings → API keys) that the private key exists and has not been revoked; a revoked key "
    "cannot be restored, so create a new one and save it on this output."
)
LIST_HINT = (
    "Check the List ID in the connection settings: in Klaviyo, open Audience → Lists & Segments, then the list; "
    "its ID is the last part of the page's address (such as Y6nRLr) and under Settings."
)


def scope_hint(scopes):
    return (
        f"The private key lacks the scope {scopes}. Klaviyo cannot add scopes to an existing key: create a new private "
        "key (Settings → API keys → Create Private API Key) with Lists and Profiles (and Subscriptions, when this "
        "connection subscribes members) on Full access, and save it on this output."
    )


class Control:
    """The sandbox's Klaviyo control routes (/_sandbox/klaviyo/...)."""

    def __init__(self, sandbox):
        self.sandbox = sandbox

    def key(self, api_key, scopes=None):
        return self.sandbox._call("POST", "klaviyo/keys", {"api_key": api_key, "scopes": scopes})

    def list(self, list_id=LIST_ID, name="Potential Parisians", opt_in_process="single_opt_in"):
        body = {"list_id": list_id, "name": name, "opt_in_process": opt_in_process}
        return self.sandbox._call("POST", "klaviyo/lists", body)

    def state(self, list_id=LIST_ID):
        return self.sandbox._call("GET", f"klaviyo/lists/{list_id}")

    def emails(self, list_id=LIST_ID, part="members"):
        return sorted(p["email"] or p["phone_number"] or p["external_id"] for p in self.state(list_id)[part].values())

    def rate_limits(self, burst, steady):
        return self.sandbox._call("POST", "klaviyo/rate_limits", {"burst": burst, "steady": steady})

    def confirm(self, email, list_id=LIST_ID):
        return self.sandbox._call("POST", "klaviyo/confirm", {"list_id": list_id, "email": email})


@pytest.fixture
def partner():
    return get("klaviyo")


@pytest.fixture
def klaviyo(sandbox):
    control = Control(sandbox)
    control.key(KEY)
    control.list()
    return control


def account(sandbox, key=KEY):
    return Account({"api_key": key}, f"{sandbox.url}/klaviyo")


def add(key, value, identity_type="email"):
    return Message(key, "add", identity_type, value, AUDIENCE)


def remove(key, value, identity_type="email"):
    return Message(key, "remove", identity_type, value, AUDIENCE)


# --- declarations -----------------------------------------------------------------------------------------


def test_it_is_registered_with_klaviyos_limits(partner):
    assert isinstance(partner, Klaviyo)
    assert (partner.slug, partner.pattern, partner.batch_size, partner.requests_per_second) == (
        "klaviyo",
        "direct",
        1000,
        2.5,
    )
    assert partner.hosts == ("a.klaviyo.com",)
    assert set(partner.identity_types) == {"email", "mobile_number", "customer_id"}
    assert [(s.name, s.secret) for s in partner.output_settings] == [("api_key", True)]
    assert [s.name for s in partner.connection_settings] == ["list_id", "consent", "customer_ids"]


def test_it_defaults_to_adding_to_the_list_without_touching_consent(partner):
    by_name = {s.name: s for s in partner.connection_settings}
    assert clean_value(by_name["consent"], None) == "list_only"
    assert clean_value(by_name["customer_ids"], None) == "external_id"


def test_a_subscribing_connection_cannot_send_customer_ids_matched_as_external_ids(partner):
    assert partner.accepted_types(LIST) == {"email", "mobile_number", "customer_id"}
    assert partner.accepted_types(SUBSCRIBE) == {"email", "mobile_number"}
    assert partner.accepted_types({**SUBSCRIBE, "customer_ids": "profile_id"}) == {
        "email",
        "mobile_number",
        "customer_id",
    }


# --- sending ----------------------------------------------------------------------------------------------


def test_it_imports_members_into_the_list_by_email_phone_and_external_id(partner, klaviyo, sandbox):
    messages = [add(1, "ada@example.com"), add(2, "+33612345678", "mobile_number"), add(3, "C-42", "customer_id")]

    result = partner.send(account(sandbox), LIST, messages)

    assert result.fault is None
    assert result.outcomes == {1: Outcome("accepted"), 2: Outcome("accepted"), 3: Outcome("accepted")}
    assert [(a.method, a.path, a.status) for a in result.attempts] == [
        ("POST", "/klaviyo/api/profile-bulk-import-jobs", 202)
    ]
    assert klaviyo.emails() == ["+33612345678", "C-42", "ada@example.com"]
    assert klaviyo.state()["profile_count"] == 3


def test_it_adds_and_removes_idempotently(partner, klaviyo, sandbox):
    partner.send(account(sandbox), LIST, [add(1, "ada@example.com"), add(2, "bob@example.com")])
    again = partner.send(account(sandbox), LIST, [add(1, "ada@example.com")])
    assert again.outcomes[1] == Outcome("accepted")
    assert klaviyo.state()["profile_count"] == 2

    removed = partner.send(account(sandbox), LIST, [remove(1, "ada@example.com")])
    assert removed.outcomes[1] == Outcome("accepted")
    assert [(a.method, a.path) for a in removed.attempts] == [
        ("GET", "/klaviyo/api/profiles"),
        ("DELETE", f"/klaviyo/api/lists/{LIST_ID}/relationships/profiles"),
    ]
    assert klaviyo.emails() == ["bob@example.com"]
    again = partner.send(account(sandbox), LIST, [remove(1, "ada@example.com")])
    assert again.outcomes[1] == Outcome("accepted")
    assert sandbox.stats()["duplicates"]["klaviyo"] == 2  # the repeated add and the repeated remove


def test_removing_someone_klaviyo_never_had_is_done_without_a_write(partner, klaviyo, sandbox):
    result = partner.send(account(sandbox), LIST, [remove(1, "nobody@example.com")])

    assert result.outcomes == {1: Outcome("accepted")}
    assert [a.method for a in result.attempts] == ["GET"]


def test_it_sends_a_full_batch_of_1000_adds_in_one_request_and_removes_in_one_per_100_lookups(
    partner, klaviyo, sandbox
):
    adds = [add(i, f"m{i}@example.com") for i in range(1000)]
    assert len(partner.send(account(sandbox), LIST, adds).attempts) == 1
    assert klaviyo.state()["profile_count"] == 1000

    removes = [remove(i, f"m{i}@example.com") for i in range(250)]
    result = partner.send(account(sandbox), LIST, removes)

    assert [a.method for a in result.attempts] == ["GET", "GET", "GET", "DELETE"]
    assert set(result.outcomes.values()) == {Outcome("accepted")}
    assert klaviyo.state()["profile_count"] == 750


def test_it_subscribes_members_with_consent_when_the_connection_says_so(partner, klaviyo, sandbox):
    messages = [add(1, "ada@example.com"), add(2, "+33612345678", "mobile_number"), add(3, "C-42", "customer_id")]

    result = partner.send(account(sandbox), SUBSCRIBE, messages)

    assert result.outcomes[1] == result.outcomes[2] == Outcome("accepted")
    assert result.outcomes[3] == Outcome(
        "rejected",
        "This Klaviyo connection subscribes members, which Klaviyo does by email address, phone number or Klaviyo "
        "profile ID; it accepts only email addresses and mobile numbers.",
    )
    assert [a.path for a in result.attempts] == ["/klaviyo/api/profile-subscription-bulk-create-jobs"]
    assert klaviyo.emails() == ["+33612345678", "ada@example.com"]


def test_a_double_opt_in_list_holds_subscribed_members_until_they_confirm(partner, klaviyo, sandbox):
    klaviyo.list("Dbl0pt", "Newsletter", "double_opt_in")
    connection = {**SUBSCRIBE, "list_id": "Dbl0pt"}

    partner.send(account(sandbox), connection, [add(1, "ada@example.com")])

    assert (klaviyo.emails("Dbl0pt"), klaviyo.emails("Dbl0pt", "pending")) == ([], ["ada@example.com"])
    klaviyo.confirm("ada@example.com", "Dbl0pt")
    assert klaviyo.emails("Dbl0pt") == ["ada@example.com"]
    check = partner.verify(account(sandbox), connection)[1]
    assert check.detail == (
        "The list 'Newsletter' exists; it uses double opt-in, so subscribed members join it once they confirm by email."
    )


def test_it_adds_and_removes_klaviyo_profile_ids_directly(partner, klaviyo, sandbox):
    partner.send(account(sandbox), LIST, [add(1, "ada@example.com")])
    profile_id = next(iter(klaviyo.state()["members"]))
    partner.send(account(sandbox), LIST, [remove(1, "ada@example.com")])

    added = partner.send(account(sandbox), BY_PROFILE_ID, [add(2, profile_id, "customer_id")])
    assert (added.outcomes, [a.path for a in added.attempts]) == (
        {2: Outcome("accepted")},
        [f"/klaviyo/api/lists/{LIST_ID}/relationships/profiles"],
    )
    assert klaviyo.emails() == ["ada@example.com"]

    removed = partner.send(account(sandbox), BY_PROFILE_ID, [remove(2, profile_id, "customer_id")])
    assert [a.method for a in removed.attempts] == ["DELETE"]
    assert klaviyo.emails() == []


def test_it_rejects_only_the_profile_id_klaviyo_does_not_know(partner, klaviyo, sandbox):
    partner.send(account(sandbox), LIST, [add(1, "ada@example.com")])
    profile_id = next(iter(klaviyo.state()["members"]))
    partner.send(account(sandbox), LIST, [remove(1, "ada@example.com")])

    result = partner.send(
        account(sandbox), BY_PROFILE_ID, [add(1, "01NOSUCHPROFILE", "customer_id"), add(2, profile_id, "customer_id")]
    )

    assert result.outcomes == {
        1: Outcome("rejected", "Klaviyo rejected this member: Profile 01NOSUCHPROFILE does not exist."),
        2: Outcome("accepted"),
    }
    assert klaviyo.state()["profile_count"] == 1


def test_it_rejects_identity_types_klaviyo_does_not_take_without_calling(partner, klaviyo, sandbox):
    result = partner.send(account(sandbox), LIST, [add(1, "aebe52e7-03ee-455a-b3c4-e57283966239", "ios_idfa")])

    assert result.outcomes[1] == Outcome(
        "rejected", "Klaviyo accepts only email addresses, mobile numbers and customer IDs."
    )
    assert result.attempts == []


# --- faults -----------------------------------------------------------------------------------------------


def test_it_faults_on_a_revoked_key_and_keeps_the_batch(partner, klaviyo, sandbox):
    partner.send(account(sandbox), LIST, [add(1, "ada@example.com")])
    sandbox.revoke("klaviyo", KEY)

    result = partner.send(account(sandbox), LIST, [add(2, "bob@example.com")])

    assert (result.fault.kind, result.fault.message, result.fault.hint) == (
        "credentials",
        "Klaviyo rejected the private API key.",
        CREDENTIALS_HINT,
    )
    assert result.outcomes == {}
    assert klaviyo.emails() == ["ada@example.com"]


def test_it_faults_on_a_key_without_the_write_scope_naming_it(partner, klaviyo, sandbox):
    klaviyo.key("pk_read_only_0000000000000000000000", ["lists:read", "profiles:read"])

    result = partner.send(account(sandbox, "pk_read_only_0000000000000000000000"), LIST, [add(1, "ada@example.com")])

    assert (result.fault.kind, result.fault.message, result.fault.hint) == (
        "credentials",
        "Klaviyo refused the private API key for POST /api/profile-bulk-import-jobs (HTTP 403).",
        scope_hint("lists:write and profiles:write"),
    )
    subscribing = partner.send(account(sandbox, "pk_read_only_0000000000000000000000"), SUBSCRIBE, [add(1, "a@b.fr")])
    assert subscribing.fault.hint == scope_hint("lists:write, profiles:write and subscriptions:write")
    assert klaviyo.state()["profile_count"] == 0


def test_it_faults_on_a_missing_list(partner, klaviyo, sandbox):
    result = partner.send(account(sandbox), {"list_id": "NoSuch"}, [add(1, "ada@example.com")])

    assert (result.fault.kind, result.fault.message, result.fault.hint) == (
        "destination",
        "Klaviyo has no list 'NoSuch'.",
        LIST_HINT,
    )


def test_it_retries_on_429_after_the_time_klaviyo_gives(partner, klaviyo, sandbox):
    sandbox.fault("klaviyo", "status", status=429, retry_after=7)

    result = partner.send(account(sandbox), LIST, [add(1, "ada@example.com"), add(2, "bob@example.com")])

    expected = Outcome(
        "retry",
        "Klaviyo is rate limiting requests (HTTP 429): Request was throttled. Expected available in 7 seconds.",
        7.0,
    )
    assert result.outcomes == {1: expected, 2: expected}
    assert klaviyo.state()["profile_count"] == 0


def test_it_retries_when_the_burst_limit_is_used_up(partner, klaviyo, sandbox):
    klaviyo.rate_limits(burst=1, steady=100)
    partner.send(account(sandbox), LIST, [add(1, "ada@example.com")])

    result = partner.send(account(sandbox), LIST, [add(2, "bob@example.com")])

    if result.outcomes[2].status == "accepted":  # the second began in the next second: use it up again
        result = partner.send(account(sandbox), LIST, [add(3, "cy@example.com"), add(2, "bob@example.com")])
    outcome = list(result.outcomes.values())[0]
    assert (outcome.status, outcome.retry_after) == ("retry", 1.0)
    assert outcome.reason.startswith("Klaviyo is rate limiting requests (HTTP 429): Request was throttled.")


def test_it_retries_on_a_server_error(partner, klaviyo, sandbox):
    sandbox.fault("klaviyo", "status", status=503)

    result = partner.send(account(sandbox), LIST, [add(1, "ada@example.com")])

    assert result.outcomes[1] == Outcome("retry", "Klaviyo had a server error (HTTP 503).")


def test_it_rejects_a_request_klaviyo_refuses_as_a_whole(partner, klaviyo, sandbox):
    body = {"errors": [{"id": "1", "code": "invalid", "title": "Invalid input.", "detail": "Bad body."}]}
    sandbox.fault("klaviyo", "status", status=400, body=body)

    result = partner.send(account(sandbox), LIST, [add(1, "ada@example.com"), add(2, "bob@example.com")])

    expected = Outcome("rejected", "Klaviyo refused the request (HTTP 400): Bad body.")
    assert result.outcomes == {1: expected, 2: expected}


def test_it_never_shows_the_api_key(partner, klaviyo, sandbox):
    body = {"errors": [{"id": "1", "code": "invalid", "title": "Invalid input.", "detail": f"Key {KEY} is odd."}]}
    sandbox.fault("klaviyo", "status", status=400, body=body)

    result = partner.send(account(sandbox), LIST, [add(1, "ada@example.com")])

    assert result.outcomes[1].reason == "Klaviyo refused the request (HTTP 400): Key … is odd."
    assert KEY not in result.attempts[0].response_excerpt


# --- verification -----------------------------------------------------------------------------------------


def test_it_verifies_the_key_and_the_list(partner, klaviyo, sandbox):
    checks = partner.verify(account(sandbox), LIST)

    assert [(c.name, c.status, c.detail) for c in checks] == [
        ("credentials", "ok", "Klaviyo accepted the private API key."),
        ("destination", "ok", "The list 'Potential Parisians' exists."),
    ]


def test_verification_fails_on_a_revoked_key_and_on_a_missing_list(partner, klaviyo, sandbox):
    missing = partner.verify(account(sandbox), {"list_id": "NoSuch"})[1]
    assert (missing.status, missing.detail, missing.hint) == ("failing", "Klaviyo has no list 'NoSuch'.", LIST_HINT)

    sandbox.revoke("klaviyo", KEY)
    credentials, destination = partner.verify(account(sandbox), LIST)
    assert (credentials.status, credentials.detail, credentials.hint) == (
        "failing",
        "Klaviyo rejected the private API key.",
        CREDENTIALS_HINT,
    )
    assert destination.detail == "Not checked: the API key must work first."


def test_verification_warns_when_klaviyo_is_rate_limiting(partner, klaviyo, sandbox):
    sandbox.fault("klaviyo", "status", status=429, retry_after=1)

    check = partner.verify(account(sandbox), LIST)[0]

    assert check.status == "warning"
    assert check.detail == (
        "Could not check the credentials: Klaviyo is rate limiting requests (HTTP 429): Request was throttled. "
        "Expected available in 1 second."
    )


def test_it_reads_the_lists_profile_count(partner, klaviyo, sandbox):
    partner.send(account(sandbox), LIST, [add(i, f"m{i}@example.com") for i in range(7)])

    assert partner.partner_count(account(sandbox), LIST) == 7
    assert partner.partner_count(account(sandbox), {"list_id": "NoSuch"}) is None


def test_a_subscribing_connection_subscribes_klaviyo_profile_ids_to_email(partner, klaviyo, sandbox):
    partner.send(account(sandbox), LIST, [add(1, "ada@example.com")])
    profile_id = next(iter(klaviyo.state()["members"]))
    partner.send(account(sandbox), LIST, [remove(1, "ada@example.com")])

    result = partner.send(
        account(sandbox), {**SUBSCRIBE, "customer_ids": "profile_id"}, [add(1, profile_id, "customer_id")]
    )

    assert result.outcomes == {1: Outcome("accepted")}
    assert [a.path for a in result.attempts] == ["/klaviyo/api/profile-subscription-bulk-create-jobs"]
    assert klaviyo.emails() == ["ada@example.com"]
