"""Braze: audience membership as custom attributes on each user.

Braze's audiences ("segments") cannot be created over the API, so, like mParticle, we tag users instead, in
one of three ways a connection chooses:
- one boolean attribute per audience ("relay_audiences: VIP": true), the default for new connections: no cap;
- one array attribute listing the audiences ("relay_audiences": ["VIP", …]), as connections made before the
  choice existed do. Braze keeps 25 values in an array by default (up to 100 if Braze raises it) and drops the
  oldest past that, so verification warns when members are in more connected audiences than the output's cap
  (https://www.braze.com/docs/user_guide/data/activation/custom_data/data_types/);
- one string attribute of comma-separated audience IDs ("relay_audiences": "12,31,40"). A string has no add or
  remove: each write replaces it whole, so every message carries the user's complete current list, read by the
  engine at send time (`SharedList.whole`), and a user in none is cleared with null. A string holds at most 255
  characters (same page: "String attributes can be up to 255 characters long"): a longer list is not sent, and
  verification counts the members past it.

REST API, https://www.braze.com/docs/api/endpoints/user_data/post_user_track/
- POST /users/track with `Authorization: Bearer <key>`; the key needs the users.track permission.
- At most 75 attribute objects a request; 3,000 requests per 3 seconds per workspace.
- `{"attr": {"add": [...], "remove": [...]}}` adds or removes array values without rewriting the array,
  so a repeat is harmless.
- 201 with `errors: [{"type", "input_array", "index"}]` means the other objects were taken; 202 `queued` (during
  maintenance) means Braze took the call and processes it later (https://www.braze.com/docs/api/errors/).
- 401 is an unknown key; 403 a key without the endpoint's permission.
- Each workspace lives on one instance with its own REST endpoint (https://rest.iad-01.braze.com, …).
"""

from __future__ import annotations

import time
from urllib.parse import urlparse

from identities import DEVICE_TYPES
from outputs.partners import http
from outputs.partners.base import (
    ACCEPTED,
    Account,
    Check,
    Fault,
    Message,
    Outcome,
    Partner,
    SendResult,
    Setting,
    SharedList,
    raw,
)
from outputs.partners.braze.attributes import (
    ARRAY,
    ATTRIBUTE,
    STRING,
    STRING_CAP,
    WRITES,
    Unwritable,
    attribute_object,
    membership,
)
from outputs.partners.plumbing import TRANSIENT_HINT, Stop, chunks, sentence

MATCHED_BY = {"external_id": "external ID", "email": "email address", "device_alias": "device ID alias"}
IDENTIFIER_TYPES = {
    "external_id": {"customer_id"},
    "email": {"email"},
    "device_alias": set(DEVICE_TYPES),
}

HINTS = {
    # 401: Braze does not know the key here; a key without the permission gets 403 ("permission").
    "credentials": (
        "Check in Braze (Settings → APIs and Identifiers) that the key exists and has not been deleted, and "
        "that the REST endpoint is your instance's ({host}): a key works only on its own instance."
    ),
    "permission": (
        "The key lacks the users.track permission: Settings → APIs and Identifiers → edit the key → "
        "tick users.track under User Data."
    ),
    "endpoint": (
        "Check the REST endpoint in the output settings: it is listed for your dashboard's instance at "
        "https://www.braze.com/docs/api/basics/#endpoints, such as https://rest.iad-01.braze.com."
    ),
    "string_cap": (
        "Braze keeps at most 255 characters in a string attribute, so these members' lists are not sent. Switch "
        "this connection to one attribute per audience (setting 'Membership written as'), or give some of the "
        "output's string connections another attribute name so that each list stays shorter."
    ),
    "array_cap": (
        "Braze keeps only the {cap} newest values of an array attribute and silently drops the oldest. Switch "
        "this connection to one attribute per audience (setting 'Membership written as'), or raise the "
        "attribute's maximum array length in Braze (Data Settings → Custom Attributes, up to 100) and set the "
        "output's array cap to match."
    ),
    "transient": TRANSIENT_HINT,
}

DEFAULT_ARRAY_CAP = 25


# The REST endpoint of each Braze instance, as listed at https://www.braze.com/docs/api/basics/#endpoints
# (US-01 … US-08, US-10, EU-01, EU-02, AU-01). A workspace's key goes to its instance's endpoint and nowhere else.
REST_HOSTS = (
    *(f"rest.iad-0{n}.braze.com" for n in range(1, 9)),
    "rest.us-10.braze.com",
    "rest.fra-01.braze.eu",
    "rest.fra-02.braze.eu",
    "rest.au-01.braze.com",
)


def _check_rest_endpoint(value: str) -> str:
    url = urlparse(value)
    if url.scheme == "https" and (url.hostname or "") in REST_HOSTS and not url.port and url.path in ("", "/"):
        return ""
    return (
        "Use your Braze instance's REST endpoint as listed at https://www.braze.com/docs/api/basics/#endpoints, "
        "such as https://rest.iad-01.braze.com."
    )


def _check_array_cap(value: int) -> str:
    return "" if 1 <= value <= 100 else "Braze keeps from 1 to 100 values in an array attribute."


def _check_attribute_name(value: str) -> str:
    if len(value) > 255 or value.startswith("$"):
        return "A Braze custom attribute name has at most 255 characters and does not start with $."
    return ""


class Braze(Partner):
    slug = "braze"
    sandbox_demo = ({"api_key": "braze-demo-key"}, {})
    name = "Braze"
    pattern = "indirect"
    docs_url = "https://www.braze.com/docs/api/endpoints/user_data/post_user_track/"
    identity_types = {"customer_id": raw, "email": raw, **{t: raw for t in DEVICE_TYPES}}
    hosts = REST_HOSTS
    output_settings = (
        Setting(
            "api_key",
            "REST API key",
            "Create one in Braze under Settings → APIs and Identifiers with the users.track permission "
            "(https://www.braze.com/docs/api/basics/#rest-api-key).",
            kind="secret",
        ),
        Setting(
            "rest_endpoint",
            "REST endpoint",
            "Your instance's REST endpoint, such as https://rest.iad-01.braze.com "
            "(https://www.braze.com/docs/api/basics/#endpoints).",
            kind="url",
            validate=_check_rest_endpoint,
            destination=True,
        ),
        Setting(
            "array_cap",
            "Array cap",
            "How many values Braze keeps in an array attribute: 25 unless Braze raised the attribute's maximum "
            "(up to 100). Verification warns when members of an array connection are in more audiences.",
            kind="int",
            required=False,
            default=DEFAULT_ARRAY_CAP,
            validate=_check_array_cap,
        ),
    )
    connection_settings = (
        Setting(
            "membership",
            "Membership written as",
            "One attribute per audience: a boolean custom attribute named after the audience, such as "
            "'relay_audiences: VIP', true while the user is a member; no limit. One array attribute: the "
            "audience names in one array, of which Braze keeps only the newest 25 by default. One string "
            "attribute: the IDs of the audiences the user is in, comma-separated (such as '12,31,40'), rewritten "
            "whole at each change; at most 255 characters "
            "(https://www.braze.com/docs/user_guide/data/activation/custom_data/data_types/).",
            kind="choice",
            required=False,
            default=ATTRIBUTE,
            choices=(
                (ATTRIBUTE, "One attribute per audience"),
                (ARRAY, "One array attribute"),
                (STRING, "One string attribute of audience IDs"),
            ),
        ),
        Setting(
            "attribute_name",
            "Attribute name",
            "The array or string attribute that lists the audiences a user is in, or the prefix of each "
            "audience's attribute; segment on it in Braze "
            "(https://www.braze.com/docs/user_guide/data_and_analytics/custom_data/custom_attributes/).",
            required=False,
            default="relay_audiences",
            validate=_check_attribute_name,
        ),
        Setting(
            "identifier",
            "Identify users by",
            "External ID: our customer ID is the Braze external_id. Email: Braze matches users by email. "
            "Device alias: a user alias labelled with the device ID type (ios_idfa, android_aaid, …).",
            kind="choice",
            required=False,
            default="external_id",
            choices=(("external_id", "External ID"), ("email", "Email"), ("device_alias", "Device ID alias")),
        ),
    )
    batch_size = 75  # attribute objects per /users/track request
    max_concurrency = 10  # Braze limits by request rate, not by connections: 10 in parallel stay far below it
    requests_per_second = 1000.0  # 3,000 requests per three seconds
    secret_mark = "…"  # "Invalid API key: …": the key's place in Braze's sentence stays readable

    def accepted_types(self, connection_settings: dict) -> set[str]:
        return set(IDENTIFIER_TYPES[connection_settings.get("identifier") or "external_id"])

    def base_url(self, account: Account) -> str:
        return (account.base_url or account.settings.get("rest_endpoint") or "").rstrip("/")

    def sandbox_destination(self, sandbox_url: str) -> dict[str, str]:
        # The REST endpoint field takes only an instance's endpoint: any one will do, the override wins.
        return {"base_url": f"{sandbox_url}/{self.slug}", "rest_endpoint": f"https://{REST_HOSTS[0]}"}

    # --- the hooks -------------------------------------------------------------

    def _check_credentials(self, account: Account) -> Check:
        # Braze has no ping: an empty /users/track call proves both the key and its users.track permission.
        response = self._track(account, {"attributes": []})  # no answer: TransportError, for the caller to word
        if response.status_code < 300:
            return Check("credentials", "ok", "Braze accepted the API key for users.track.")
        fault = self._fault(account, response)
        if fault:
            return Check("credentials", "failing", fault.message, fault.hint)
        # 400 for the empty request still means the key got through authentication and permission checks.
        if response.status_code == 400:
            return Check("credentials", "ok", "Braze accepted the API key for users.track.")
        if response.status_code == 429 or response.status_code >= 500:
            detail = f"Could not check the API key: Braze answered HTTP {response.status_code}."
            return Check("credentials", "warning", detail, TRANSIENT_HINT)
        host = urlparse(self.base_url(account)).netloc or "not set"
        detail = f"Braze answered HTTP {response.status_code} at {host}/users/track, which Braze does not."
        return Check("credentials", "failing", detail, HINTS["endpoint"])

    def _verify(self, account: Account, connection_settings: dict) -> list[Check]:
        # Braze has no list to look up: the attribute is created by the first write.
        credentials = self._check_credentials(account)
        if credentials.status != "ok":
            return [credentials, Check("destination", "warning", "Not checked: the API key must work first.")]
        attribute = connection_settings.get("attribute_name") or "relay_audiences"
        matched_by = MATCHED_BY[connection_settings.get("identifier") or "external_id"]
        if membership(connection_settings) == ARRAY:
            detail = f"Users are tagged in the array attribute '{attribute}', matched by {matched_by}."
        elif membership(connection_settings) == STRING:
            detail = (
                f"Users are tagged in the string attribute '{attribute}' (audience IDs, comma-separated), "
                f"matched by {matched_by}."
            )
        else:
            detail = f"Users are tagged with one attribute per audience ('{attribute}: …'), matched by {matched_by}."
        return [credentials, Check("destination", "ok", detail)]

    def shared_list(self, output_settings: dict, connection_settings: dict) -> SharedList | None:
        mode = membership(connection_settings)
        if mode == ATTRIBUTE:
            return None
        # Connections of one output share an array (or a string) when they match users alike and name the same
        # attribute. Stored settings always hold these three: new connections get the defaults written, and
        # older ones got "membership" from connections migration 0006.
        matching = {
            "membership": mode,
            "identifier": connection_settings.get("identifier") or "external_id",
            "attribute_name": connection_settings.get("attribute_name") or "relay_audiences",
        }
        if mode == STRING:
            return SharedList(matching, STRING_CAP, unit="characters", whole=True)
        return SharedList(matching, int(output_settings.get("array_cap") or DEFAULT_ARRAY_CAP))

    def cap_check(self, over: int, shared: SharedList, connection_settings: dict) -> Check:
        attribute = connection_settings.get("attribute_name") or "relay_audiences"
        members = f"{over:,} member{'' if over == 1 else 's'}"
        are = "is" if over == 1 else "are"
        cap = shared.cap
        if shared.unit == "characters":
            if not over:
                return Check("string length", "ok", f"Every member's audience IDs fit in {cap} characters.")
            detail = (
                f"{members} of this audience {are} in so many audiences connected to this output that their IDs "
                f"take more than the {cap} characters Braze keeps in the string attribute '{attribute}'."
            )
            return Check("string length", "warning", detail, HINTS["string_cap"])
        if not over:
            return Check("array cap", "ok", f"No member is in more than {cap} audiences connected to this output.")
        detail = (
            f"{members} of this audience {are} in more than {cap} audiences connected to "
            f"this output; Braze keeps only {cap} in the array attribute '{attribute}'."
        )
        return Check("array cap", "warning", detail, HINTS["array_cap"].format(cap=cap))

    def _send(self, account: Account, connection_settings: dict, messages: list[Message]) -> SendResult:
        result = SendResult()
        accepted = self.accepted_types(connection_settings)
        identifier = connection_settings.get("identifier") or "external_id"
        sendable = [m for m in messages if m.identity_type in accepted]
        result.mark_all(
            [m for m in messages if m.identity_type not in accepted],
            Outcome("rejected", _wrong_type(identifier)),
        )
        attribute = connection_settings.get("attribute_name") or "relay_audiences"
        write = WRITES[membership(connection_settings)]
        objects = {}
        for m in sendable:
            try:
                objects[m.key] = attribute_object(m, identifier, write(m, attribute))
            except Unwritable as exc:
                result.outcomes[m.key] = Outcome("rejected", str(exc))
        if len(objects) < len(sendable):
            sendable = [m for m in sendable if m.key in objects]
        try:
            for chunk in chunks(sendable, self.batch_size):
                self._send_chunk(account, chunk, [objects[m.key] for m in chunk], result)
        except Stop as stop:
            stop.settle(result, sendable)
        except http.TransportError as exc:
            result.mark_all(sendable, Outcome("retry", str(exc)))
        return result

    def _send_chunk(self, account, chunk, objects, result) -> None:
        """One /users/track call; settles its messages, or raises Stop when the rest should not go."""
        response = self._track(account, {"attributes": objects}, result)
        status = response.status_code
        body = http.json_or_empty(response)
        if status < 300:
            rejected = {}
            for error in body.get("errors") or []:
                if isinstance(error, dict) and error.get("input_array", "attributes") == "attributes":
                    rejected[error.get("index")] = self.scrub(account, str(error.get("type") or "")).rstrip(".")
            if not rejected:  # the usual answer
                result.outcomes.update(dict.fromkeys([m.key for m in chunk], ACCEPTED))
                return
            for index, m in enumerate(chunk):
                reason = rejected.get(index)
                outcome = (
                    ACCEPTED if reason is None else Outcome("rejected", sentence("Braze rejected this user", reason))
                )
                result.outcomes[m.key] = outcome
            return
        fault = self._fault(account, response)
        if fault:
            raise Stop(fault=fault)
        if status == 429:
            raise Stop(outcome=Outcome("retry", "Braze is rate limiting requests (HTTP 429).", _wait(response)))
        if status >= 500:
            raise Stop(outcome=Outcome("retry", f"Braze had a server error (HTTP {status})."))
        message = self.scrub(account, str(body.get("message") or "")).rstrip(".")
        details = [self.scrub(account, str(e)).rstrip(".") for e in body.get("errors") or [] if isinstance(e, str)]
        reason = sentence(f"Braze refused the request (HTTP {status})", "; ".join([message, *details]).strip("; "))
        result.mark_all(chunk, Outcome("rejected", reason))

    # --- HTTP and error classes ------------------------------------------------

    def _track(self, account, payload, result: SendResult | None = None):
        headers = {"Authorization": f"Bearer {account.settings.get('api_key', '')}"}
        return http.call(
            "POST",
            f"{self.base_url(account)}/users/track",
            result.attempts if result is not None else None,
            expect_json=True,
            handles=(401, 403, 404),  # worded by _fault: a key without users.track, the wrong instance
            json=payload,
            headers=headers,
        )

    def _fault(self, account, response) -> Fault | None:
        status = response.status_code
        if status == 401:
            host = urlparse(self.base_url(account)).netloc or "not set"
            return Fault("credentials", "Braze rejected the API key.", HINTS["credentials"].format(host=host))
        if status == 403:
            return Fault("credentials", "Braze refused the API key for /users/track (HTTP 403).", HINTS["permission"])
        if status == 404:
            host = urlparse(self.base_url(account)).netloc or "not set"
            message = f"Braze has no /users/track endpoint at {host}."
            return Fault("destination", message, HINTS["endpoint"])
        return None


def _wrong_type(identifier: str) -> str:
    if identifier == "external_id":
        return "This Braze connection matches users by external ID; it accepts only customer IDs."
    if identifier == "email":
        return "This Braze connection matches users by email; it accepts only email addresses."
    return "This Braze connection matches users by device ID alias; it accepts only mobile device IDs."


def _wait(response) -> float | None:
    """Seconds to wait: Retry-After, else X-RateLimit-Reset (the UTC epoch second the window resets)."""
    seconds = http.retry_after(response)
    if seconds is not None:
        return seconds
    try:
        return max(0.0, float(response.headers["X-RateLimit-Reset"]) - time.time())
    except (KeyError, ValueError):
        return None
