"""Mailchimp: each connection keeps one Mailchimp list (audience) in step with an audience.

Marketing API 3.0, https://mailchimp.com/developer/marketing/api/list-members/
- POST /lists/{list_id} subscribes or updates up to 500 members in one call and answers 200 even when some
  of them failed; those come back in `errors[]` with the member's email address.
- A member's own URL is keyed by the MD5 of the lower-cased email address (the "subscriber hash");
  DELETE on it archives the member (`actions/delete-permanent` would erase it for good, which we never do).
- DELETE refuses (405) a member who is pending, cleaned (bounced) or already archived.
- A list can require merge fields (a first name, say); `skip_merge_validation=true` lets members in without them.
- The API key ends in the data center that hosts the account (`…-us6` → https://us6.api.mailchimp.com).
- 10 simultaneous connections per key; the 11th gets a 429.
"""

from __future__ import annotations

import hashlib
import re

from outputs.partners import http
from outputs.partners.base import ACCEPTED, Account, Check, Fault, Message, Outcome, Partner, SendResult, Setting, raw
from outputs.partners.plumbing import TRANSIENT_HINT, Stop, chunks, sentence

API_KEY = re.compile(r"^[0-9a-f]{32}-([a-z]{2}[0-9]{1,3})$")
ALREADY_A_MEMBER = "ERROR_CONTACT_EXISTS"
# Mailchimp words a temporary per-member refusal only in its message (its error_code is ERROR_GENERIC):
# "… has signed up to a lot of lists very recently; we're not allowing more signups for now".
TEMPORARY = ("signed up to a lot of lists very recently",)

HINTS = {
    "key_format": (
        "Copy the key again from Mailchimp: Account → Extras → API keys. It is 32 letters and digits, "
        "a dash, then your data center (such as us6)."
    ),
    "credentials": (
        "Check that the key is active and that its suffix ({dc}) matches your account's data center: "
        "Account → Extras → API keys."
    ),
    "destination": (
        "Check the List ID in the connection settings: in Mailchimp, Audience → Settings → "
        "Audience name and defaults shows it as the Audience ID."
    ),
    "base_url": (
        "Check the base URL override of this output: empty for Mailchimp itself; otherwise it stands for "
        "https://{dc}.api.mailchimp.com, without /3.0 (`manage.py partner_sandbox` prints the sandbox's)."
    ),
    "transient": TRANSIENT_HINT,
}
KEY_FORM = "The Mailchimp API key is not in the expected form."


def subscriber_hash(email: str) -> str:
    """Mailchimp's ID for a member: MD5 of the lower-cased email address."""
    return hashlib.md5(email.lower().encode("utf-8")).hexdigest()


def data_center(api_key: str) -> str | None:
    match = API_KEY.match(api_key or "")
    return match.group(1) if match else None


def _check_api_key(value: str) -> str:
    if data_center(value):
        return ""
    return (
        "This is not a Mailchimp API key: expected 32 letters and digits, a dash and your data center, such as …-us6."
    )


class Mailchimp(Partner):
    slug = "mailchimp"
    sandbox_demo = ({"api_key": "0123456789abcdef0123456789abcdef-us6"}, {"list_id": "a1b2c3d4e5"})
    name = "Mailchimp"
    pattern = "direct"
    docs_url = "https://mailchimp.com/developer/marketing/api/list-members/"
    default_base_url = "https://{dc}.api.mailchimp.com"
    hosts = ("*.api.mailchimp.com",)  # one per data center: us6.api.mailchimp.com …
    identity_types = {"email": raw}  # stored emails are already trimmed and lower-cased
    output_settings = (
        Setting(
            "api_key",
            "API key",
            "Create one in Mailchimp under Account → Extras → API keys "
            "(https://mailchimp.com/help/about-api-keys/). It ends in your data center, such as -us6.",
            kind="secret",
            validate=_check_api_key,
        ),
        Setting(
            "email_type",
            "Email type",
            "Whether new members receive HTML or plain-text emails.",
            kind="choice",
            required=False,
            default="html",
            choices=(("html", "HTML"), ("text", "Plain text")),
        ),
        Setting(
            "double_optin",
            "Double opt-in",
            "New members get a confirmation email and stay 'pending' until they confirm "
            "(https://mailchimp.com/help/about-double-opt-in/). Off: they are subscribed at once.",
            kind="bool",
            required=False,
            default=False,
        ),
        Setting(
            "delete_on_subscription_end",
            "Delete on subscription end",
            "On: a member leaving the audience is archived in Mailchimp "
            "(https://mailchimp.com/help/archive-unarchive-contacts/). Off: they are unsubscribed and stay "
            "in the list.",
            kind="bool",
            required=False,
            default=False,
        ),
    )
    connection_settings = (
        Setting(
            "list_id",
            "List ID",
            "The Audience ID of the Mailchimp list: Audience → Settings → Audience name and defaults "
            "(https://mailchimp.com/help/find-audience-id/).",
        ),
    )
    batch_size = 500  # the batch subscribe endpoint takes at most 500 members
    max_concurrency = 10  # simultaneous connections per key
    secret_mark = "…"  # "Key … is disabled": the key's place in Mailchimp's sentence stays readable

    # --- the hooks -------------------------------------------------------------

    def _check_credentials(self, account: Account) -> Check:
        dc = data_center(account.settings.get("api_key", ""))
        if not dc:
            return Check("credentials", "failing", KEY_FORM, HINTS["key_format"])
        response = self._call(account, "GET", "/ping")  # no answer: TransportError, for the caller to word
        if response.status_code == 200:
            return Check("credentials", "ok", f"Mailchimp accepted the API key (data center {dc}).")
        if response.status_code in (401, 403):
            fault = self._credentials_fault(account, response)
            return Check("credentials", "failing", fault.message, fault.hint)
        if response.status_code == 429 or response.status_code >= 500:
            detail = f"Could not check the API key: Mailchimp answered HTTP {response.status_code}."
            return Check("credentials", "warning", detail, TRANSIENT_HINT)
        # /ping exists at every Mailchimp address: anything else (a 404) means the base URL leads elsewhere.
        url = f"{self.base_url(account)}/3.0/ping"
        detail = f"Mailchimp answered HTTP {response.status_code} at {url}: there is no Mailchimp API at this base URL."
        return Check("credentials", "failing", detail, HINTS["base_url"])

    def _verify(self, account: Account, connection_settings: dict) -> list[Check]:
        credentials = self._check_credentials(account)
        if credentials.status != "ok":
            return [credentials, Check("destination", "warning", "Not checked: the API key must work first.")]
        list_id = connection_settings.get("list_id", "")
        response = self._call(account, "GET", f"/lists/{list_id}")
        if response.status_code == 200:
            body = http.json_or_empty(response)
            # No member count here: the "partner count" check reads it once, beside what was forwarded, and a
            # second reading moments apart (while a backfill goes out) would contradict it on the same page.
            detail = f"The list '{body.get('name', list_id)}' exists."
            return [credentials, Check("destination", "ok", detail)]
        if response.status_code == 404:
            fault = self._missing_list(list_id)
            return [credentials, Check("destination", "failing", fault.message, fault.hint)]
        detail = f"Could not check the list: Mailchimp answered HTTP {response.status_code}."
        return [credentials, Check("destination", "warning", detail, TRANSIENT_HINT)]

    def _partner_count(self, account: Account, connection_settings: dict) -> int | None:
        try:
            response = self._call(account, "GET", f"/lists/{connection_settings.get('list_id', '')}")
        except http.TransportError:
            return None
        if response.status_code != 200:
            return None
        count = (http.json_or_empty(response).get("stats") or {}).get("member_count")
        return count if isinstance(count, int) else None

    def _send(self, account: Account, connection_settings: dict, messages: list[Message]) -> SendResult:
        result = SendResult()
        if not data_center(account.settings.get("api_key", "")):
            result.fault = Fault("credentials", KEY_FORM, HINTS["key_format"])
            return result
        result.mark_all(
            [m for m in messages if m.identity_type not in self.identity_types],
            Outcome("rejected", "Mailchimp accepts only email addresses."),
        )
        emails = [m for m in messages if m.identity_type in self.identity_types]
        adds = [m for m in emails if m.action == "add"]
        removes = [m for m in emails if m.action == "remove"]
        list_id = connection_settings["list_id"]
        try:
            for chunk in chunks(adds, self.batch_size):
                self._add(account, list_id, chunk, result)
            if account.settings.get("delete_on_subscription_end"):
                self._archive(account, list_id, removes, result)
            else:
                for chunk in chunks(removes, self.batch_size):
                    self._batch(account, list_id, chunk, "unsubscribed", True, result)
        except Stop as stop:
            stop.settle(result, messages)
        except http.TransportError as exc:
            result.mark_all(messages, Outcome("retry", str(exc)))
        return result

    # --- sending ---------------------------------------------------------------

    def _add(self, account, list_id, adds, result):
        if not account.settings.get("double_optin"):
            self._batch(account, list_id, adds, "subscribed", True, result)
            return
        # With double opt-in, an upsert would put confirmed members back to 'pending' (and mail them again)
        # on every repeat, so add new members only, then look at the ones Mailchimp already has.
        existing = self._batch(account, list_id, adds, "pending", False, result)
        lapsed = []
        for message in existing:
            response = self._call(account, "GET", f"/lists/{list_id}/members/{subscriber_hash(message.value)}", result)
            self._raise_for_request(account, list_id, response)
            status = http.json_or_empty(response).get("status")
            if status in ("subscribed", "pending"):
                result.outcomes[message.key] = ACCEPTED
            else:  # unsubscribed or archived: they must confirm again
                lapsed.append(message)
        if lapsed:
            self._batch(account, list_id, lapsed, "pending", True, result)

    def _batch(self, account, list_id, messages, status, update_existing, result) -> list[Message]:
        """One batch subscribe call; settles each message and returns those Mailchimp already had."""
        email_type = account.settings.get("email_type") or "html"
        members = [{"email_address": m.value, "status": status, "email_type": email_type} for m in messages]
        body = {"members": members, "update_existing": update_existing}
        # We hold no merge field values (names, addresses): without this a list that requires one refuses every
        # new member. https://mailchimp.com/developer/marketing/api/lists/batch-subscribe-or-unsubscribe/
        params = {"skip_merge_validation": "true"}
        response = self._call(account, "POST", f"/lists/{list_id}", result, json=body, params=params)
        self._raise_for_request(account, list_id, response)
        if response.status_code >= 400:
            reason = self._refused(account, response)
            for m in messages:
                result.outcomes[m.key] = Outcome("rejected", reason)
            return []
        errors = {}
        for error in http.json_or_empty(response).get("errors") or []:
            errors[str(error.get("email_address", "")).lower()] = error
        if not errors:  # the usual answer
            result.outcomes.update(dict.fromkeys([m.key for m in messages], ACCEPTED))
            return []
        existing = []
        for m in messages:
            error = errors.get(m.value.lower())
            if error is None:
                result.outcomes[m.key] = ACCEPTED
            elif error.get("error_code") == ALREADY_A_MEMBER and not update_existing:
                existing.append(m)
            else:
                reason = self.scrub(account, str(error.get("error") or "Mailchimp did not accept this member."))
                final = not any(phrase in reason for phrase in TEMPORARY)
                result.outcomes[m.key] = Outcome("rejected" if final else "retry", reason)
        return existing

    def _archive(self, account, list_id, removes, result):
        list_checked = False
        for m in removes:
            member_path = f"/lists/{list_id}/members/{subscriber_hash(m.value)}"
            response = self._call(account, "DELETE", member_path, result)
            if response.status_code == 405:
                # Mailchimp will not archive a member who is pending, cleaned or archived already.
                result.outcomes[m.key] = self._remove_unarchivable(account, list_id, member_path, result)
                continue
            if response.status_code == 404:
                # Either the member is not there (done already: a repeat is harmless) or the list is gone.
                if not list_checked:
                    self._raise_for_request(account, list_id, self._call(account, "GET", f"/lists/{list_id}", result))
                    list_checked = True
                result.outcomes[m.key] = ACCEPTED
                continue
            self._raise_for_request(account, list_id, response)
            if response.status_code >= 400:
                result.outcomes[m.key] = Outcome("rejected", self._refused(account, response))
            else:
                result.outcomes[m.key] = ACCEPTED

    def _remove_unarchivable(self, account, list_id, member_path, result) -> Outcome:
        response = self._call(account, "GET", member_path, result)
        if response.status_code == 404:
            return ACCEPTED  # gone since the DELETE (the list was there: it just answered 405)
        self._raise_for_request(account, list_id, response)
        if http.json_or_empty(response).get("status") != "pending":
            return ACCEPTED  # archived already (a repeat), or cleaned: Mailchimp sends a bounced address nothing
        # Not confirmed yet: left pending, the confirmation email would still subscribe them. Unsubscribed, they
        # can no longer confirm, and Mailchimp then archives them like anyone else.
        for method, body in (("PATCH", {"status": "unsubscribed"}), ("DELETE", None)):
            response = self._call(account, method, member_path, result, json=body)
            self._raise_for_request(account, list_id, response)
            if response.status_code >= 400:
                return Outcome("rejected", self._refused(account, response))
        return ACCEPTED

    # --- HTTP and error classes ------------------------------------------------

    def base_url(self, account: Account) -> str:
        dc = data_center(account.settings.get("api_key", "")) or ""
        return super().base_url(account).replace("{dc}", dc)

    def sandbox_destination(self, sandbox_url: str) -> dict[str, str]:
        # As for https://{dc}.api.mailchimp.com: base_url() puts the key's data center in, _call() adds /3.0.
        return {"base_url": f"{sandbox_url}/{self.slug}/{{dc}}"}

    def _call(self, account, method, path, result: SendResult | None = None, **kwargs):
        url = f"{self.base_url(account)}/3.0{path}"
        attempts = result.attempts if result is not None else None
        key = account.settings.get("api_key", "")
        # Mailchimp always answers JSON: anything else (a proxy's page, say) is no answer, not a success.
        # It words a bad key (401/403) and a missing list or member (404) itself (_raise_for_request).
        return http.call(
            method, url, attempts, expect_json=True, handles=(401, 403, 404), auth=("relay", key), **kwargs
        )

    def _raise_for_request(self, account, list_id, response) -> None:
        """Stop the batch for answers that concern the whole request rather than one member."""
        status = response.status_code
        if status in (401, 403):
            raise Stop(fault=self._credentials_fault(account, response))
        if status == 404:
            raise Stop(fault=self._missing_list(list_id))
        if status == 429:
            # Mailchimp sends no reset time; Retry-After is honoured if present, else the engine backs off.
            reason = sentence("Mailchimp is limiting requests (HTTP 429)", self._problem(account, response))
            raise Stop(outcome=Outcome("retry", reason, http.retry_after(response)))
        if status >= 500:
            raise Stop(outcome=Outcome("retry", f"Mailchimp had a server error (HTTP {status})."))

    def _credentials_fault(self, account, response) -> Fault:
        dc = data_center(account.settings.get("api_key", "")) or "?"
        message = sentence("Mailchimp rejected the API key", self._problem(account, response))
        return Fault("credentials", message, HINTS["credentials"].format(dc=dc))

    def _missing_list(self, list_id) -> Fault:
        return Fault("destination", f"Mailchimp has no list with ID '{list_id}' in this account.", HINTS["destination"])

    def _problem(self, account, response) -> str:
        """Mailchimp's own words from a problem+json body: its field errors when it lists them, else its detail."""
        body = http.json_or_empty(response)
        fields = [e for e in body.get("errors") or [] if isinstance(e, dict) and e.get("message")]
        if fields:
            problems = "; ".join(f"{e['field']}: {e['message']}" if e.get("field") else e["message"] for e in fields)
            return self.scrub(account, f"{body.get('title') or 'Invalid Resource'}: {problems}")
        return self.scrub(account, str(body.get("detail") or body.get("title") or "").strip())

    def _refused(self, account, response) -> str:
        return sentence(
            f"Mailchimp refused the request (HTTP {response.status_code})", self._problem(account, response)
        )
