"""Facebook Custom Audiences: hashed emails and phone numbers, raw mobile ad IDs, into a customer-list audience.

POST /{audience_id}/users adds and DELETE removes, at most 10,000 records a request,
one request per schema (EMAIL_SHA256, PHONE_SHA256, MOBILE_ADVERTISER_ID): a batch
holds one identity per message, so single-key requests say exactly what we know,
where multi-key rows would send empty columns. Facebook answers with how many
entries it received and which were invalid (a sample); changes show in the
audience within about 24 hours.

https://developers.facebook.com/docs/marketing-api/reference/custom-audience/users
https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences
https://developers.facebook.com/docs/graph-api/guides/error-handling
https://developers.facebook.com/docs/graph-api/overview/rate-limiting/
"""

from __future__ import annotations

import json
import re
import secrets

from outputs.partners import http, redact
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
    sha256_hex,
    sha256_phone,
)
from outputs.partners.plumbing import TRANSIENT_HINT, Stop, chunks, failing

MAX_RECORDS = 10_000  # per request, per the Custom Audience Users reference
TERMS_URL = "https://www.facebook.com/customaudiences/app/tos/?act={act}"
SCHEMAS = {
    "email": "EMAIL_SHA256",
    "mobile_number": "PHONE_SHA256",
    "ios_idfa": "MOBILE_ADVERTISER_ID",
    "android_aaid": "MOBILE_ADVERTISER_ID",
}
# Graph error codes that mean "slow down": app (4), user (17), page (32) and custom (613) limits, and the
# Business Use Case limits (80000-80014: ads insights, pages, custom audiences, ads management, ...).
THROTTLED = {4, 17, 32, 613, *range(80000, 80015)}
THROTTLE_DEFAULT = 60.0  # seconds, when Facebook throttles without saying for how long
TRANSIENT = {1, 2}
PERMISSION = {10, 294, *range(200, 300)}

HINTS = {
    "expired": "Generate a new system-user token in Business Settings → System users and paste it into this output.",
    "token": "Generate a new system-user token with the ads_management permission in Business Settings → "
    "System users and paste it into this output.",
    "terms": "Someone with admin access to the ad account must accept the Custom Audience terms for ad account "
    "{act} at {url}, then resume this connection.",
    "permission": "In Business Settings, assign ad account {act} and this audience to the system user with full "
    "(admin) control, and give its token the ads_management permission.",
    "business": "Move ad account {act} into a business portfolio (Business Manager) and complete business "
    "verification, then assign it to the system user of this token.",
    "flagged": "Open Audiences in Ads Manager, resolve or appeal the restrictions on this audience, "
    "or create a new audience and connect it instead.",
    "audience": "Check the audience ID of this connection, and that ad account {act} owns the audience "
    "or has it shared with it.",
    "refused": "Facebook refused the request in a way Audience Relay does not know; its answer is above. Check the "
    "settings of this output and connection against it.",
    "transient": TRANSIENT_HINT,
}


def hashed_email(value: str) -> str:
    # As the Marketing API SDK does (CustomAudienceMixin.format_params): strip these characters, dots included,
    # from both ends, then lower-case. Facebook matches on the hash, so any other trimming loses the person.
    return sha256_hex(value.strip(" \t\r\n\0\x0b.").lower())


def madid(value: str) -> str:
    # Mobile advertiser IDs go raw (never hashed), lower-case with their hyphens.
    return value.strip().lower()


def _ad_account(value: str) -> str:
    return "" if re.fullmatch(r"act_\d+", value) else "Must look like act_1234567890 (the ad account ID with act_)."


def _api_version(value: str) -> str:
    return "" if re.fullmatch(r"v\d+\.\d+", value) else "Must look like v21.0."


def _audience(value: str) -> str:
    return "" if value.isdigit() else "Must be the numeric ID of the custom audience."


class FacebookCustomAudiences(Partner):
    slug = "facebook"
    sandbox_demo = ({"access_token": "EAAdemo", "ad_account_id": "act_1001"}, {"audience_id": "23850000000000001"})
    name = "Facebook Custom Audiences"
    pattern = "direct"
    docs_url = "https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences"
    default_base_url = "https://graph.facebook.com"
    hosts = ("graph.facebook.com",)
    identity_types = {"email": hashed_email, "mobile_number": sha256_phone, "ios_idfa": madid, "android_aaid": madid}
    output_settings = (
        Setting(
            "access_token",
            "Access token",
            "A system-user token with the ads_management permission (Business Settings → System users).",
            kind="secret",
        ),
        Setting(
            "ad_account_id",
            "Ad account ID",
            "The ad account that owns the audiences, e.g. act_1234567890.",
            validate=_ad_account,
        ),
        Setting(
            "api_version",
            "Graph API version",
            "Leave as is unless told otherwise.",
            required=False,
            default="v21.0",
            validate=_api_version,
        ),
    )
    connection_settings = (
        Setting(
            "audience_id",
            "Custom audience ID",
            "The ID of a customer-list custom audience (Audiences in Ads Manager).",
            validate=_audience,
        ),
    )
    batch_size = MAX_RECORDS
    max_concurrency = 3
    # approximate_count_lower_bound counts matched people, fuzzed, and lags uploads by up to a day.
    count_is_estimate = True

    # --- checks ----------------------------------------------------------------

    def _check_credentials(self, account: Account) -> Check:
        act = account.settings.get("ad_account_id")
        try:
            found = self._get(account, act, "id,name,tos_accepted")
        except Stop as stop:
            return failing("credentials", stop, HINTS["refused"])
        name = f" ({found['name']})" if found.get("name") else ""
        return Check("credentials", "ok", f"The token can read ad account {act}{name}.")

    def _verify(self, account: Account, connection_settings: dict) -> list[Check]:
        act = account.settings.get("ad_account_id")
        try:
            found = self._get(account, act, "id,name,tos_accepted,business")
        except Stop as stop:
            return [failing("credentials", stop, HINTS["refused"])]
        checks = [Check("credentials", "ok", f"The token can read ad account {act}.")]
        if not found.get("business"):
            detail = f"Ad account {act} does not belong to a business portfolio."
            checks.append(Check("business", "failing", detail, HINTS["business"].format(act=act)))
        tos = found.get("tos_accepted")
        if isinstance(tos, dict):
            if str(tos.get("custom_audience_tos")) == "1":
                checks.append(Check("terms", "ok", f"The Custom Audience terms are accepted for ad account {act}."))
            else:
                checks.append(Check("terms", "failing", *_terms(act)))
        checks.append(self._audience_check(account, connection_settings["audience_id"]))
        return checks

    def _audience_check(self, account: Account, audience_id: str) -> Check:
        act = account.settings.get("ad_account_id")
        fields = "id,name,operation_status,permission_for_actions,approximate_count_lower_bound"
        try:
            found = self._get(account, audience_id, fields)
        except Stop as stop:
            return failing("audience", stop, HINTS["refused"])
        label = f"Audience {found.get('name') or audience_id} ({audience_id})"
        status = found.get("operation_status") or {}
        if isinstance(status, dict) and str(status.get("code")) == "471":
            return Check("audience", "failing", f"{label} is flagged and blocks uploads.", HINTS["flagged"])
        permissions = found.get("permission_for_actions") or {}
        if isinstance(permissions, dict) and permissions.get("can_edit") is False:
            detail = f"This token may not change the members of audience {audience_id}."
            return Check("audience", "failing", detail, HINTS["permission"].format(act=act))
        size = _count(found)
        detail = f"{label} exists and accepts uploads"
        if size is not None:
            detail += f"; Facebook estimates at least {size:,} people (an approximate lower bound, not an exact count)"
        if isinstance(status, dict) and status.get("code") not in (None, 200, "200"):
            return Check("audience", "warning", f"{detail}. Facebook says: {status.get('description')}.")
        return Check("audience", "ok", detail + ".")

    def _partner_count(self, account: Account, connection_settings: dict) -> int | None:
        try:
            return _count(self._get(account, connection_settings["audience_id"], "approximate_count_lower_bound"))
        except Stop:
            return None

    # --- sending ---------------------------------------------------------------

    def _send(self, account: Account, connection_settings: dict, messages: list[Message]) -> SendResult:
        result = SendResult()
        groups: dict[tuple[str, str], list[Message]] = {}
        for m in messages:
            schema = SCHEMAS.get(m.identity_type)
            if schema is None:
                reason = f"Facebook Custom Audiences does not take {m.identity_type} identities."
                result.outcomes[m.key] = Outcome("rejected", reason)
            else:
                groups.setdefault((m.action, schema), []).append(m)
        requests = [
            (action, schema, chunk)
            for (action, schema), group in groups.items()
            for chunk in chunks(group, MAX_RECORDS)
        ]
        try:
            for action, schema, chunk in requests:
                try:
                    self._send_chunk(account, connection_settings, action, schema, chunk, result)
                except Stop as stop:
                    if stop.fault or stop.outcome.status == "retry":
                        raise  # a person must act, or Facebook is busy: the rest of the batch waits too
                    result.mark_all(chunk, stop.outcome)  # a refusal concerns this request only
        except Stop as stop:
            stop.settle(result, messages)
        return result

    def _send_chunk(
        self, account, connection_settings, action, schema, chunk: list[Message], result: SendResult
    ) -> None:
        values = [self.identity_types[m.identity_type](m.value) for m in chunk]
        session = {
            "session_id": secrets.randbits(53),  # ours to choose, unique per upload; one request is one session
            "batch_seq": 1,
            "last_batch_flag": True,
            "estimated_num_total": len(values),
        }
        data = {
            "payload": json.dumps({"schema": schema, "data": values}),
            "session": json.dumps(session),
            "access_token": account.settings.get("access_token"),
        }
        url = self._url(account, f"{connection_settings['audience_id']}/users")
        method = "POST" if action == "add" else "DELETE"
        body = self._request(account, method, url, result.attempts, connection_settings["audience_id"], data=data)

        samples = body.get("invalid_entry_samples") or {}
        if isinstance(samples, list):
            samples = {str(s): "" for s in samples}
        invalid = _int(body.get("num_invalid_entries")) or 0
        unnamed = max(0, invalid - sum(1 for v in values if v in samples))
        for m, value in zip(chunk, values, strict=True):
            if value in samples:
                why = str(samples[value] or "").rstrip(".")
                result.outcomes[m.key] = Outcome(
                    "rejected", "Facebook marked this entry invalid" + (f" ({why})." if why else ".")
                )
            elif unnamed:
                entries = "entry" if unnamed == 1 else "entries"
                note = f"Facebook reported {unnamed} invalid {entries} in this request without naming them."
                result.outcomes[m.key] = Outcome("accepted", note)
            else:
                result.outcomes[m.key] = ACCEPTED

    # --- the Graph API ---------------------------------------------------------

    def _url(self, account: Account, path: str) -> str:
        version = account.settings.get("api_version") or "v21.0"
        return f"{self.base_url(account)}/{version}/{path}"

    def _get(self, account: Account, node: str, fields: str) -> dict:
        params = {"fields": fields, "access_token": account.settings.get("access_token")}
        return self._request(account, "GET", self._url(account, node), None, node, params=params)

    def _request(self, account: Account, method: str, url: str, attempts, node: str, **kwargs) -> dict:
        try:
            # Graph errors say by their code what a 401/403/404 is about (_classify): an expired token, a
            # missing permission, an audience that is gone.
            response = http.call(method, url, attempts, expect_json=True, handles=(401, 403, 404), **kwargs)
        except http.TransportError as exc:
            raise Stop(Outcome("retry", str(exc))) from exc  # verification re-raises the cause
        body = http.json_or_empty(response)
        error = body.get("error")
        if response.ok and not isinstance(error, dict):
            return body
        raise Stop(*_classify(account, response, error if isinstance(error, dict) else {}, node))


def _classify(account: Account, response, error: dict, node: str) -> tuple[Outcome | None, Fault | None]:
    """A Graph error as a retry, a rejection or a fault, by its code and subcode."""
    act = account.settings.get("ad_account_id") or "act_"
    token = account.settings.get("access_token")
    status = response.status_code
    code, subcode = _int(error.get("code")), _int(error.get("error_subcode"))
    # Graph prefixes messages with their code, "(#2663) Terms of service…": the sentence reads better without.
    text = redact.secrets(str(error.get("error_user_msg") or error.get("message") or ""), token)
    text = re.sub(r"^\(#\d+\)\s*", "", text).strip()
    lowered = text.lower() + " " + str(error.get("error_user_title") or "").lower()

    if status == 429 or code in THROTTLED:
        minutes = _regain_minutes(response)
        reason = "Facebook asked us to slow down" + (f" for {_minutes(minutes)}" if minutes else "")
        reason += f": {_first_sentences(text)}" if text else " (HTTP 429)."
        return Outcome("retry", reason, minutes * 60.0 if minutes else THROTTLE_DEFAULT), None
    if status >= 500 or code in TRANSIENT or error.get("is_transient"):
        return Outcome("retry", f"Facebook answered with HTTP {status}, a temporary error."), None
    if code in (190, 102) or status == 401 or (error.get("type") == "OAuthException" and code is None):
        if subcode == 463 or "expired" in lowered:
            return None, Fault("credentials", "The Facebook access token has expired.", HINTS["expired"])
        if subcode == 460:
            message = "The Facebook access token stopped working because its user changed their password."
            return None, Fault("credentials", message, HINTS["expired"])
        return None, Fault("credentials", "Facebook did not accept the access token of this output.", HINTS["token"])
    if subcode == 1870090 or code in (2655, 2663) or "terms" in lowered:
        return None, Fault("account", *_terms(act))
    if subcode == 1713230 or "integrity restrictions" in lowered:
        message = f"Facebook has blocked uploads to audience {node}: it is flagged for restricted content."
        return None, Fault("destination", message, HINTS["flagged"])
    if "business" in lowered and (code in PERMISSION or status == 403):
        message = f"Facebook requires ad account {act} to belong to a verified business for custom audiences."
        return None, Fault("account", message, HINTS["business"].format(act=act))
    if code in PERMISSION or status == 403:
        message = f"The Facebook token has no permission to manage audiences of ad account {act}."
        return None, Fault("account", message, HINTS["permission"].format(act=act))
    if status == 404 or code == 803 or subcode == 33 or "does not exist" in lowered:
        message = f"Facebook audience {node} does not exist, or this token cannot see it."
        return None, Fault("destination", message, HINTS["audience"].format(act=act))
    detail = text.rstrip(".") or f"HTTP {status}"
    return Outcome("rejected", f"Facebook rejected the request: {detail}."), None


def _regain_minutes(response) -> int:
    """The longest estimated_time_to_regain_access (minutes) in X-Business-Use-Case-Usage; 0 when none.

    Facebook sends no Retry-After: the header maps each business object to its use cases' usage, e.g.
    {"1001": [{"type": "custom_audience", "call_count": 100, "estimated_time_to_regain_access": 12}]}.
    """
    try:
        usage = json.loads(response.headers.get("X-Business-Use-Case-Usage") or "{}")
    except ValueError:
        return 0
    entries = [e for v in usage.values() if isinstance(v, list) for e in v] if isinstance(usage, dict) else []
    minutes = [_int(e.get("estimated_time_to_regain_access")) for e in entries if isinstance(e, dict)]
    return max([m for m in minutes if m and m > 0], default=0)


def _minutes(count: int) -> str:
    return "1 minute" if count == 1 else f"{count} minutes"


def _first_sentences(text: str) -> str:
    # Facebook's throttle messages end with a pointer to its docs: the sentence a person acts on comes before.
    kept = text.split(" For more info")[0].strip()
    return kept if kept.endswith(".") else kept + "."


def _terms(act: str) -> tuple[str, str]:
    message = f"The Custom Audience terms are not accepted for ad account {act}."
    url = TERMS_URL.format(act=act.removeprefix("act_"))
    return message, HINTS["terms"].format(act=act, url=url)


def _count(audience: dict) -> int | None:
    # Facebook answers -1 when an audience is too small to estimate.
    count = _int(audience.get("approximate_count_lower_bound"))
    return count if count is not None and count >= 0 else None


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
