"""Klaviyo: each connection keeps one Klaviyo list in step with an audience.

REST API, revision 2026-10-15 (https://developers.klaviyo.com/en/reference/api_overview):
- Every request carries `Authorization: Klaviyo-API-Key <private key>` and the `revision` header; bodies and errors
  are JSON:API (`application/vnd.api+json`, errors as `{"errors": [{"code", "title", "detail", "source"}]}`).
- A list holds profiles, and Add Profiles to List takes only Klaviyo profile IDs, so a member named by email address,
  phone number or external ID must be a profile first: Bulk Import Profiles (POST /api/profile-bulk-import-jobs,
  up to 10,000 profiles) creates or updates the profiles and adds them to the list in one job, without touching
  consent. Where consent matters, Bulk Subscribe Profiles (POST /api/profile-subscription-bulk-create-jobs, up to
  1,000) subscribes them to email or SMS marketing and adds them to the list (a double opt-in list asks them first).
- Remove Profiles from List (DELETE /api/lists/{id}/relationships/profiles, up to 1,000 IDs) takes profile IDs too:
  Get Profiles (filter `any(email,[...])`, at most 100 a page) finds them first. Removing never changes consent.
- Rate limits are per account, in a burst (per second) and a steady (per minute) window; 429 comes with Retry-After.
  Import and list membership: 10/s and 150/m. Get List with `additional-fields[list]=profile_count`: 1/s and 15/m.
- 401: the key is unknown or revoked. 403: the key lacks a scope the endpoint needs (lists:write, profiles:write, …).
"""

from __future__ import annotations

import json

from outputs.partners import http
from outputs.partners.base import ACCEPTED, Account, Check, Fault, Message, Outcome, Partner, SendResult, Setting, raw
from outputs.partners.plumbing import TRANSIENT_HINT, Stop, chunks, sentence

REVISION = "2026-10-15"
JSONAPI = "application/vnd.api+json"
LIST_BATCH = 1000  # Add/Remove Profiles to/from List, Bulk Subscribe Profiles: 1,000 a call
PROFILES_PAGE = 100  # Get Profiles: page[size] at most 100

# What each Klaviyo identifier is called, by our identity type and the connection's choice for customer IDs.
FIELDS = {"email": "email", "mobile_number": "phone_number"}
SUBSCRIBE, LIST_ONLY = "subscribe", "list_only"
EXTERNAL_ID, PROFILE_ID = "external_id", "profile_id"
SCOPES = {
    "import": "lists:write and profiles:write",
    "subscribe": "lists:write, profiles:write and subscriptions:write",
    "members": "lists:write and profiles:write",
    "profiles": "profiles:read",
    "lists": "lists:read",
}

HINTS = {
    "credentials": (
        "Check in Klaviyo (Settings → API keys) that the private key exists and has not been revoked; a revoked key "
        "cannot be restored, so create a new one and save it on this output."
    ),
    "scope": (
        "The private key lacks the scope {scopes}. Klaviyo cannot add scopes to an existing key: create a new private "
        "key (Settings → API keys → Create Private API Key) with Lists and Profiles (and Subscriptions, when this "
        "connection subscribes members) on Full access, and save it on this output."
    ),
    "list": (
        "Check the List ID in the connection settings: in Klaviyo, open Audience → Lists & Segments, then the list; "
        "its ID is the last part of the page's address (such as Y6nRLr) and under Settings."
    ),
    "base_url": (
        "Check the base URL override of this output: empty for Klaviyo itself (https://a.klaviyo.com); otherwise "
        "it stands for that address, without /api (`manage.py partner_sandbox` prints the sandbox's)."
    ),
    "transient": TRANSIENT_HINT,
}


class Klaviyo(Partner):
    slug = "klaviyo"
    name = "Klaviyo"
    pattern = "direct"
    docs_url = "https://developers.klaviyo.com/en/reference/add_profiles_to_list"
    default_base_url = "https://a.klaviyo.com"
    hosts = ("a.klaviyo.com",)
    sandbox_demo = ({"api_key": "pk_demo_0123456789abcdef0123456789abcdef"}, {"list_id": "Y6nRLr"})
    # Stored emails are trimmed and lower-cased, mobile numbers E.164 (Klaviyo's phone_number format): sent as they
    # are. Customer IDs are the profile's external_id, or its Klaviyo profile ID (connection setting).
    identity_types = {"email": raw, "mobile_number": raw, "customer_id": raw}
    output_settings = (
        Setting(
            "api_key",
            "Private API key",
            "Create one in Klaviyo under Settings → API keys → Create Private API Key, with Lists and Profiles on "
            "Full access (and Subscriptions, to subscribe members) "
            "(https://help.klaviyo.com/hc/en-us/articles/7423954176283).",
            kind="secret",
        ),
    )
    connection_settings = (
        Setting(
            "list_id", "List ID", "The ID of the Klaviyo list, such as Y6nRLr: the last part of the list's address."
        ),
        Setting(
            "consent",
            "Consent",
            "Add to the list only: members are added as profiles without changing their consent; Klaviyo sends list "
            "campaigns only to those who already consented. Subscribe: members are subscribed to email marketing "
            "(email addresses) or SMS marketing (mobile numbers) as they join; a double opt-in list asks them to "
            "confirm first (https://developers.klaviyo.com/en/docs/collect_email_and_sms_consent_via_api). Only "
            "choose Subscribe for people who gave you that consent.",
            kind="choice",
            required=False,
            default=LIST_ONLY,
            choices=((LIST_ONLY, "Add to the list only"), (SUBSCRIBE, "Subscribe (consent given)")),
        ),
        Setting(
            "customer_ids",
            "Customer IDs are",
            "External ID: our customer ID is the profile's external_id in Klaviyo. Klaviyo profile ID: our customer "
            "ID is Klaviyo's own profile ID (such as 01GDDKASAP8TKDDA2GRZDSVP4H).",
            kind="choice",
            required=False,
            default=EXTERNAL_ID,
            choices=((EXTERNAL_ID, "External ID"), (PROFILE_ID, "Klaviyo profile ID")),
        ),
    )
    batch_size = LIST_BATCH
    max_concurrency = 2
    requests_per_second = 2.5  # the steady limit of import and list membership: 150 a minute
    secret_mark = "…"

    def accepted_types(self, connection_settings: dict) -> set[str]:
        # Bulk Subscribe Profiles finds a profile by email, phone number or profile ID, never by external_id.
        if _consent(connection_settings) == SUBSCRIBE and _customer_ids(connection_settings) == EXTERNAL_ID:
            return {"email", "mobile_number"}
        return set(self.identity_types)

    # --- the hooks -------------------------------------------------------------------------------------------

    def _check_credentials(self, account: Account) -> Check:
        try:
            self._get(account, "/api/lists", "lists", params={"fields[list]": "name"})
        except Stop as stop:
            return _check("credentials", stop)
        return Check("credentials", "ok", "Klaviyo accepted the private API key.")

    def _verify(self, account: Account, connection_settings: dict) -> list[Check]:
        credentials = self._check_credentials(account)
        if credentials.status != "ok":
            return [credentials, Check("destination", "warning", "Not checked: the API key must work first.")]
        list_id = connection_settings.get("list_id", "")
        try:
            body = http.json_or_empty(self._get(account, f"/api/lists/{list_id}", "lists", list_id=list_id))
        except Stop as stop:
            return [credentials, _check("destination", stop)]
        attributes = (body.get("data") or {}).get("attributes") or {}
        detail = f"The list '{attributes.get('name') or list_id}' exists"
        if attributes.get("opt_in_process") == "double_opt_in" and _consent(connection_settings) == SUBSCRIBE:
            detail += "; it uses double opt-in, so subscribed members join it once they confirm by email"
        return [credentials, Check("destination", "ok", f"{detail}.")]

    def _partner_count(self, account: Account, connection_settings: dict) -> int | None:
        list_id = connection_settings.get("list_id", "")
        try:
            response = self._get(
                account, f"/api/lists/{list_id}", "lists", list_id, params={"additional-fields[list]": "profile_count"}
            )
        except (Stop, http.TransportError):
            return None
        count = ((http.json_or_empty(response).get("data") or {}).get("attributes") or {}).get("profile_count")
        return count if isinstance(count, int) else None

    def _send(self, account: Account, connection_settings: dict, messages: list[Message]) -> SendResult:
        result = SendResult()
        accepted = self.accepted_types(connection_settings)
        result.mark_all(
            [m for m in messages if m.identity_type not in accepted],
            Outcome("rejected", _not_accepted(connection_settings)),
        )
        sendable = [m for m in messages if m.identity_type in accepted]
        list_id = connection_settings["list_id"]
        by_id = _customer_ids(connection_settings) == PROFILE_ID
        ids = [m for m in sendable if by_id and m.identity_type == "customer_id"]
        named = [m for m in sendable if not (by_id and m.identity_type == "customer_id")]
        try:
            adds = [m for m in named if m.action == "add"]
            if _consent(connection_settings) == SUBSCRIBE:
                for chunk in chunks(adds + [m for m in ids if m.action == "add"], LIST_BATCH):
                    self._subscribe(account, list_id, chunk, result)
            else:
                for chunk in chunks(adds, LIST_BATCH):
                    self._import(account, list_id, chunk, result)
                for chunk in chunks([m for m in ids if m.action == "add"], LIST_BATCH):
                    self._members(account, "POST", list_id, {m.key: m.value for m in chunk}, chunk, result)
            removes = [m for m in named if m.action == "remove"]
            found = self._profile_ids(account, removes, connection_settings, result)
            for m in removes:
                if m.key not in found:
                    result.outcomes[m.key] = ACCEPTED  # no such profile: it is in no list
            removes = [m for m in removes if m.key in found] + [m for m in ids if m.action == "remove"]
            found.update({m.key: m.value for m in ids})
            for chunk in chunks(removes, LIST_BATCH):
                self._members(account, "DELETE", list_id, {m.key: found[m.key] for m in chunk}, chunk, result)
        except Stop as stop:
            stop.settle(result, messages)
        except http.TransportError as exc:
            result.mark_all(messages, Outcome("retry", str(exc)))
        return result

    # --- sending ---------------------------------------------------------------------------------------------

    def _import(self, account, list_id, chunk, result):
        """One bulk import job: creates or updates the profiles and adds them to the list, consent untouched."""
        profiles = [{"type": "profile", "attributes": {_field(m): m.value}} for m in chunk]
        body = {
            "data": {
                "type": "profile-bulk-import-job",
                "attributes": {"profiles": {"data": profiles}},
                "relationships": {"lists": {"data": [{"type": "list", "id": list_id}]}},
            }
        }
        self._write(account, "/api/profile-bulk-import-jobs", "import", list_id, body, chunk, result)

    def _subscribe(self, account, list_id, chunk, result):
        """One bulk subscription job: email or SMS marketing consent, and the list."""
        profiles = []
        for m in chunk:
            if m.identity_type == "customer_id":  # a Klaviyo profile ID: its email address is subscribed
                subscriptions = {"email": {"marketing": {"consent": "SUBSCRIBED"}}}
                profiles.append({"type": "profile", "id": m.value, "attributes": {"subscriptions": subscriptions}})
                continue
            channel = "email" if m.identity_type == "email" else "sms"
            subscriptions = {channel: {"marketing": {"consent": "SUBSCRIBED"}}}
            profiles.append({"type": "profile", "attributes": {_field(m): m.value, "subscriptions": subscriptions}})
        body = {
            "data": {
                "type": "profile-subscription-bulk-create-job",
                "attributes": {"custom_source": "Audience Relay", "profiles": {"data": profiles}},
                "relationships": {"list": {"data": {"type": "list", "id": list_id}}},
            }
        }
        self._write(account, "/api/profile-subscription-bulk-create-jobs", "subscribe", list_id, body, chunk, result)

    def _members(self, account, method, list_id, profile_ids, chunk, result):
        body = {"data": [{"type": "profile", "id": profile_ids[m.key]} for m in chunk]}
        self._write(
            account,
            f"/api/lists/{list_id}/relationships/profiles",
            "members",
            list_id,
            body,
            chunk,
            result,
            method=method,
        )

    def _write(self, account, path, scope, list_id, body, chunk, result, method="POST"):
        """Send one write; a 400 naming some members by their place rejects those and sends the others again."""
        while chunk:
            response = self._call(account, method, path, scope, list_id, result, data=json.dumps(body))
            if response.status_code < 300:
                result.mark_all(chunk, ACCEPTED)
                return
            errors = _errors(response)
            named = {}
            for error in errors:
                index = _index(error)
                if index is not None and index < len(chunk):
                    named[index] = self.scrub(account, str(error.get("detail") or error.get("title") or "")).rstrip(".")
            if not named:
                reason = sentence(f"Klaviyo refused the request (HTTP {response.status_code})", _detail(errors))
                result.mark_all(chunk, Outcome("rejected", self.scrub(account, reason)))
                return
            for index, detail in named.items():
                result.outcomes[chunk[index].key] = Outcome(
                    "rejected", sentence("Klaviyo rejected this member", detail)
                )
            keep = [i for i in range(len(chunk)) if i not in named]
            chunk = [chunk[i] for i in keep]
            items = _items(body)
            items[:] = [items[i] for i in keep]

    def _profile_ids(self, account, messages, connection_settings, result) -> dict:
        """The Klaviyo profile ID of each message's member, where a profile has its identifier: key -> ID."""
        found = {}
        by_field = {}
        for m in messages:
            by_field.setdefault(_field(m), []).append(m)
        for field, group in by_field.items():
            for chunk in chunks(group, PROFILES_PAGE):
                values = json.dumps([m.value for m in chunk])
                params = {
                    "filter": f"any({field},{values})",
                    "page[size]": str(PROFILES_PAGE),
                    "fields[profile]": field,
                }
                response = self._get(account, "/api/profiles", "profiles", params=params, result=result)
                ids = {}
                for item in http.json_or_empty(response).get("data") or []:
                    value = ((item or {}).get("attributes") or {}).get(field)
                    if isinstance(value, str) and isinstance(item.get("id"), str):
                        ids[value.lower() if field == "email" else value] = item["id"]
                for m in chunk:
                    if m.value in ids:
                        found[m.key] = ids[m.value]
        return found

    # --- HTTP and error classes ------------------------------------------------------------------------------

    def _get(self, account, path, scope, list_id=None, params=None, result=None):
        response = self._call(account, "GET", path, scope, list_id, result, params=params)
        if response.status_code >= 300:
            raise Stop(
                outcome=Outcome(
                    "rejected", sentence(f"Klaviyo answered HTTP {response.status_code}", _detail(_errors(response)))
                )
            )
        return response

    def _call(self, account, method, path, scope, list_id, result, **kwargs):
        """One request; a fault a person must fix, or a temporary refusal, raises Stop."""
        headers = {
            "Authorization": f"Klaviyo-API-Key {account.settings.get('api_key', '')}",
            "revision": REVISION,
            "Accept": JSONAPI,
        }
        if method != "GET":
            headers["Content-Type"] = JSONAPI
        response = http.call(
            method,
            f"{self.base_url(account)}{path}",
            result.attempts if result is not None else None,
            expect_json=True,
            handles=(401, 403, 404),
            headers=headers,
            **kwargs,
        )
        status = response.status_code
        if status == 401:
            raise Stop(fault=Fault("credentials", "Klaviyo rejected the private API key.", HINTS["credentials"]))
        if status == 403:
            message = f"Klaviyo refused the private API key for {method} {path.split('?')[0]} (HTTP 403)."
            raise Stop(fault=Fault("credentials", message, HINTS["scope"].format(scopes=SCOPES[scope])))
        if status == 404:
            # Klaviyo's own 404 (JSON:API errors) on a request naming the list: the list is missing. Any other 404
            # comes from an address where no Klaviyo API is.
            if list_id is not None and any(e.get("code") == "not_found" for e in _errors(response)):
                message = f"Klaviyo has no list '{list_id}'."
                raise Stop(fault=Fault("destination", message, HINTS["list"]))
            message = f"Klaviyo answered HTTP 404 at {self.base_url(account)}{path}: there is no Klaviyo API here."
            raise Stop(fault=Fault("destination", message, HINTS["base_url"]))
        if status == 429:
            reason = sentence("Klaviyo is rate limiting requests (HTTP 429)", _detail(_errors(response)))
            raise Stop(outcome=Outcome("retry", reason, http.retry_after(response)))
        if status >= 500:
            raise Stop(outcome=Outcome("retry", f"Klaviyo had a server error (HTTP {status})."))
        return response


def _consent(connection_settings: dict) -> str:
    return connection_settings.get("consent") or LIST_ONLY


def _customer_ids(connection_settings: dict) -> str:
    return connection_settings.get("customer_ids") or EXTERNAL_ID


def _field(message: Message) -> str:
    return FIELDS.get(message.identity_type, "external_id")


def _not_accepted(connection_settings: dict) -> str:
    if _consent(connection_settings) == SUBSCRIBE:
        return (
            "This Klaviyo connection subscribes members, which Klaviyo does by email address, phone number or "
            "Klaviyo profile ID; it accepts only email addresses and mobile numbers."
        )
    return "Klaviyo accepts only email addresses, mobile numbers and customer IDs."


def _errors(response) -> list[dict]:
    errors = http.json_or_empty(response).get("errors")
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


def _detail(errors: list[dict]) -> str:
    return "; ".join(str(e.get("detail") or e.get("title") or "").rstrip(".") for e in errors).strip("; ")


def _index(error: dict) -> int | None:
    """The member an error's JSON:API pointer names (`/data/3/id`, `/data/attributes/profiles/data/3/...`)."""
    pointer = str(((error.get("source") or {}).get("pointer")) or "")
    parts = pointer.strip("/").split("/")
    for i, part in enumerate(parts[:-1]):
        if part == "data" and parts[i + 1].isdigit():
            return int(parts[i + 1])
    return None


def _items(body: dict) -> list:
    data = body["data"]
    return data if isinstance(data, list) else data["attributes"]["profiles"]["data"]


def _check(name: str, stop: Stop) -> Check:
    if stop.fault:
        return Check(name, "failing", stop.fault.message, stop.fault.hint)
    if stop.outcome.status == "retry":
        return Check(name, "warning", f"Could not check the {name}: {stop.outcome.reason}", TRANSIENT_HINT)
    return Check(name, "failing", stop.outcome.reason, HINTS["base_url"])
