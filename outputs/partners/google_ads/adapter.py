"""Google Ads Customer Match: members into a Customer Match user list, through offline user data jobs (REST).

Customer Match takes members in jobs, not per-user calls: exchange the refresh token for an access token, create a
job for the list, add operations to it (at most 100,000 identifiers a request; we send 10,000, as Google
recommends), run it, then read its status with GoogleAdsService search until it is SUCCESS or FAILED. Adds and
removes go in separate jobs (Google advises against mixing them). Processing can take hours, so messages are queued
and uploaded at an interval; a job still running after a short wait is remembered, and the next attempt reads that
job instead of uploading the same identifiers again. Operations Google refuses are named one by one in the answer's
partial failure error and rejected; the
rest of the job goes on. Which identities go and how they are shaped is data in identifiers.py; how Google's answers
are read is errors.py, and what its failures are called is hints.py.

https://developers.google.com/google-ads/api/docs/remarketing/audience-segments/customer-match/get-started
https://developers.google.com/google-ads/api/rest/reference/rest/v18/customers.offlineUserDataJobs/addOperations
https://developers.google.com/google-ads/api/docs/oauth/internals
https://developers.google.com/google-ads/api/docs/common-errors
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field

from outputs.partners import http
from outputs.partners.base import (
    ACCEPTED,
    Account,
    Check,
    Delivery,
    Fault,
    Message,
    Outcome,
    Partner,
    SendResult,
    Setting,
)
from outputs.partners.google_ads.errors import classify, integer, missing_list, refused_operations
from outputs.partners.google_ads.hints import HINTS, still_processing
from outputs.partners.google_ads.identifiers import IDENTIFIERS, KEY_LABELS, KEY_TYPES, list_key_type, shaper
from outputs.partners.plumbing import Stop, chunks, failing, sentence

API_VERSION = "v24"
TOKEN_URL = "https://oauth2.googleapis.com/token"
MAX_IDENTIFIERS = 100_000  # per addOperations request, across all its operations
PER_REQUEST = 10_000  # what Google recommends a request carry
PENDING_FOR = 48 * 3600  # after this a job we were waiting for is forgotten and its identifiers uploaded again

MATCH_RATES = {
    "MATCH_RANGE_LESS_THAN_20": "less than 20%",
    "MATCH_RANGE_20_TO_30": "20–30%",
    "MATCH_RANGE_31_TO_40": "31–40%",
    "MATCH_RANGE_41_TO_50": "41–50%",
    "MATCH_RANGE_51_TO_60": "51–60%",
    "MATCH_RANGE_61_TO_70": "61–70%",
    "MATCH_RANGE_71_TO_80": "71–80%",
    "MATCH_RANGE_81_TO_90": "81–90%",
    "MATCH_RANGE_91_TO_100": "91–100%",
}
_tokens: dict[str, tuple[str, float]] = {}  # account key -> (access token, when it lapses)
_pending: dict[tuple, dict[tuple, tuple[str, float]]] = {}  # (account, list) -> {(action, field, value): (job, since)}
_lock = threading.Lock()


@dataclass
class _Session:
    account: Account
    api: str  # https://googleads.googleapis.com/v24
    token_url: str
    customer: str  # digits only
    attempts: list = field(default_factory=list)
    token: str = ""

    @property
    def shown(self) -> str:
        c = self.customer
        return f"{c[:3]}-{c[3:6]}-{c[6:]}" if len(c) == 10 else c


def _customer_id(value: str) -> str:
    return (
        "" if re.fullmatch(r"\d{3}-?\d{3}-?\d{4}", value) else "Must be a 10-digit customer ID, such as 123-456-7890."
    )


def _user_list(value: str) -> str:
    return "" if value.isdigit() else "Must be the numeric ID of the user list."


def _api_version(value: str) -> str:
    return "" if re.fullmatch(r"v\d+", value) else "Must look like v24."


def _digits(value) -> str:
    return "".join(ch for ch in str(value or "") if ch.isdigit())


class GoogleAdsCustomerMatch(Partner):
    slug = "google_ads"
    name = "Google Ads Customer Match"
    pattern = "direct"
    docs_url = (
        "https://developers.google.com/google-ads/api/docs/remarketing/audience-segments/customer-match/get-started"
    )
    default_base_url = "https://googleads.googleapis.com"
    hosts = ("googleads.googleapis.com", "oauth2.googleapis.com")
    sandbox_demo = (
        {
            "developer_token": "demo-developer-token",
            "client_id": "demo-client.apps.googleusercontent.com",
            "client_secret": "demo-client-secret",
            "refresh_token": "1//demo-refresh-token",
            "customer_id": "123-456-7890",
        },
        {"user_list_id": "5550001"},
    )
    identity_types = {t: shaper(steps) for t, (_, steps) in IDENTIFIERS.items()}
    output_settings = (
        Setting(
            "developer_token",
            "Developer token",
            "From API Center of your Google Ads manager account (Basic or Standard access).",
            kind="secret",
        ),
        Setting("client_id", "OAuth client ID", "The OAuth 2.0 client the refresh token was issued to."),
        Setting("client_secret", "OAuth client secret", kind="secret"),
        Setting(
            "refresh_token",
            "Refresh token",
            "Issued for the scope https://www.googleapis.com/auth/adwords to a Google account with access to the "
            "customer.",
            kind="secret",
        ),
        Setting(
            "customer_id",
            "Customer ID",
            "The Google Ads account that owns the lists, e.g. 123-456-7890.",
            validate=_customer_id,
        ),
        Setting(
            "login_customer_id",
            "Login customer ID",
            "The manager account through which the refresh token's user reaches the customer (empty: direct access).",
            required=False,
            default="",
            validate=_customer_id,
        ),
        Setting(
            "api_version",
            "Google Ads API version",
            "Leave as is unless told otherwise.",
            required=False,
            default=API_VERSION,
            validate=_api_version,
        ),
    )
    connection_settings = (
        Setting(
            "user_list_id", "User list ID", "The ID of a Customer Match list (Audience manager).", validate=_user_list
        ),
        Setting(
            "upload_key_type",
            "Upload key type",
            "What the list matches on, as it was created: contact info (emails, phone numbers), CRM IDs or mobile "
            "advertising IDs. A list holds one kind.",
            kind="choice",
            required=False,
            default="CONTACT_INFO",
            choices=tuple((k, KEY_LABELS[k]) for k in KEY_TYPES),
        ),
        Setting(
            "consent",
            "Consent",
            "Sent with each job as ad_user_data and ad_personalization consent; required for members in the EEA.",
            kind="choice",
            required=False,
            default="UNSPECIFIED",
            choices=(("UNSPECIFIED", "Not specified"), ("GRANTED", "Granted"), ("DENIED", "Denied")),
            backfill_on_change=False,
        ),
    )
    batch_size = 100_000
    max_concurrency = 1
    delivery = Delivery(mode="interval", every_minutes=30, every_messages=100_000)
    # user_list.size_for_display: Google's estimate of active matched users, rounded, updated with a delay.
    count_is_estimate = True
    # How long one send waits for Google to process its job before answering "retry".
    job_wait = 30.0
    first_poll_delay = 0.2
    max_poll_delay = 5.0

    def accepted_types(self, connection_settings: dict) -> set[str]:
        return set(KEY_TYPES[connection_settings.get("upload_key_type") or "CONTACT_INFO"])

    # --- checks ----------------------------------------------------------------

    def _check_credentials(self, account: Account) -> Check:
        s = self._session(account)
        try:
            self._login(s, fresh=True)
            customer = self._search_one(s, "SELECT customer.id, customer.descriptive_name FROM customer")
        except Stop as stop:
            return failing("credentials", stop, HINTS["refused"])
        name = (customer.get("customer") or {}).get("descriptiveName")
        return Check(
            "credentials", "ok", f"The refresh token can read customer {s.shown}" + (f" ({name})." if name else ".")
        )

    def _verify(self, account: Account, connection_settings: dict) -> list[Check]:
        checks = [self._check_credentials(account)]
        if checks[0].status != "ok":
            return checks
        s = self._session(account)
        try:
            self._login(s)
            checks.append(self._list_check(s, connection_settings))
        except Stop as stop:
            checks.append(failing("user list", stop, HINTS["refused"]))
        if checks[-1].status != "ok":
            return checks
        try:
            # validateOnly: Google checks the terms, the account's eligibility and the list, and creates nothing.
            self._create_job(s, connection_settings, validate_only=True)
            checks.append(Check("customer match", "ok", f"Customer {s.shown} may upload members to this list."))
        except Stop as stop:
            checks.append(failing("customer match", stop, HINTS["refused"]))
        return checks

    def _list_check(self, s: _Session, connection_settings: dict) -> Check:
        list_id, key_type = connection_settings["user_list_id"], list_key_type(connection_settings)
        found = self._list(s, list_id)
        if not found:
            raise Stop(fault=missing_list(s, list_id))
        label = f"User list {found.get('name') or list_id} ({list_id})"
        kind = found.get("type")
        actual = (found.get("crmBasedUserList") or {}).get("uploadKeyType")
        if kind != "CRM_BASED" or actual != key_type:
            what = (
                f"a {kind} list"
                if kind != "CRM_BASED"
                else f"a Customer Match list of {KEY_LABELS.get(actual, actual)}"
            )
            detail = f"{label} is {what}; this connection uploads {KEY_LABELS[key_type]}."
            return Check("user list", "failing", detail, HINTS["list_type"].format(key_type=key_type))
        size = integer(found.get("sizeForDisplay"))
        detail = f"{label} is a Customer Match list of {KEY_LABELS[key_type]}"
        if size is None:
            detail += "; Google has not estimated its size yet"
        else:
            detail += f"; Google estimates about {size:,} people (rounded, active matched users only)"
        return Check("user list", "ok", detail + ".")

    def _partner_count(self, account: Account, connection_settings: dict) -> int | None:
        s = self._session(account)
        try:
            self._login(s)
            found = self._list(s, connection_settings["user_list_id"])
        except Stop:
            return None
        return integer(found.get("sizeForDisplay")) if found else None

    # --- sending ---------------------------------------------------------------

    def _send(self, account: Account, connection_settings: dict, messages: list[Message]) -> SendResult:
        result = SendResult()
        s = self._session(account)
        try:
            self._deliver(s, connection_settings, messages, result)
        except Stop as stop:
            stop.settle(result, messages)
        finally:
            # The access token is no setting of the output, so the base's scrubbing does not know it.
            for attempt in s.attempts:
                attempt.response_excerpt = self.scrub(account, attempt.response_excerpt, s.token)
            result.attempts = s.attempts
        return result

    def _deliver(self, s: _Session, connection_settings: dict, messages: list[Message], result: SendResult) -> None:
        key_type = list_key_type(connection_settings)
        accepted = KEY_TYPES[key_type]
        groups: dict[str, dict[tuple, list[Message]]] = {"add": {}, "remove": {}}
        for m in messages:
            if m.identity_type not in accepted:
                reason = f"The user list of this connection takes {KEY_LABELS[key_type]}, not {m.identity_type}."
                result.outcomes[m.key] = Outcome("rejected", reason)
                continue
            field_name = IDENTIFIERS[m.identity_type][0]
            entry = (m.action, field_name, self.identity_types[m.identity_type](m.value))
            groups[m.action].setdefault(entry, []).append(m)
        if not any(groups.values()):
            return
        self._login(s)
        pending = _pending_for(s, connection_settings["user_list_id"])
        for entries in groups.values():
            if entries:
                fresh = self._check_pending(s, entries, pending, result)
                if fresh:
                    self._upload(s, connection_settings, fresh, result, pending)

    def _check_pending(self, s: _Session, entries: dict, pending: dict, result: SendResult) -> dict:
        """Outcomes for entries of jobs we were waiting for; returns the entries to upload in a new job."""
        fresh = {e: msgs for e, msgs in entries.items() if e not in pending}
        for job in sorted({pending[e][0] for e in entries if e in pending}):
            mine = {e: msgs for e, msgs in entries.items() if pending.get(e, ("",))[0] == job}
            found = self._job(s, job)
            status = found.get("status")
            if status == "SUCCESS":
                _accept(found, mine, result)
            elif status in ("PENDING", "RUNNING"):
                result.mark_all([m for msgs in mine.values() for m in msgs], still_processing(_job_id(job)))
            else:
                fresh.update(mine)  # failed, or Google no longer knows it: upload these again
            if status not in ("PENDING", "RUNNING"):
                with _lock:
                    for e in mine:
                        pending.pop(e, None)
        return fresh

    def _upload(self, s: _Session, connection_settings: dict, entries: dict, result: SendResult, pending: dict) -> None:
        job = self._create_job(s, connection_settings)
        in_job: dict[tuple, list[Message]] = {}
        for chunk in chunks(list(entries), PER_REQUEST):
            operations = [{"create" if a == "add" else "remove": {"userIdentifiers": [{f: v}]}} for a, f, v in chunk]
            body = self._api(
                s, "POST", f"{job}:addOperations", {"operations": operations, "enablePartialFailure": True}
            )
            refused = refused_operations(body)
            for index, entry in enumerate(chunk):
                if index in refused:
                    for m in entries[entry]:
                        result.outcomes[m.key] = Outcome("rejected", refused[index])
                else:
                    in_job[entry] = entries[entry]
        if not in_job:
            return  # nothing to run: a job never run is dropped by Google
        self._api(s, "POST", f"{job}:run", {})
        found = self._wait(s, job)
        status = found.get("status")
        if status == "SUCCESS":
            _accept(found, in_job, result)
        elif status == "FAILED":
            why = found.get("failureReason") or "no reason given"
            reason = (
                f"Google Ads could not process upload job {_job_id(job)} ({why}); the batch will be uploaded again."
            )
            result.mark_all([m for msgs in in_job.values() for m in msgs], Outcome("retry", reason))
        else:
            since = time.time()
            with _lock:
                pending.update({e: (job, since) for e in in_job})
            result.mark_all([m for msgs in in_job.values() for m in msgs], still_processing(_job_id(job)))

    def _create_job(self, s: _Session, connection_settings: dict, validate_only: bool = False) -> str:
        list_name = f"customers/{s.customer}/userLists/{connection_settings['user_list_id']}"
        metadata = {"userList": list_name}
        consent = connection_settings.get("consent") or "UNSPECIFIED"
        if consent != "UNSPECIFIED":
            metadata["consent"] = {"adUserData": consent, "adPersonalization": consent}
        body = {"job": {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": metadata}}
        if validate_only:
            body["validateOnly"] = True
        answer = self._api(
            s,
            "POST",
            f"customers/{s.customer}/offlineUserDataJobs:create",
            body,
            list_id=True,
            connection_settings=connection_settings,
        )
        if not validate_only and not answer.get("resourceName"):
            raise Stop(Outcome("retry", "Google Ads did not return an upload job; the batch will be uploaded again."))
        return answer.get("resourceName", "")

    def _wait(self, s: _Session, job: str) -> dict:
        deadline, delay = time.monotonic() + self.job_wait, self.first_poll_delay
        while True:
            found = self._job(s, job)
            remaining = deadline - time.monotonic()
            if found.get("status") not in ("PENDING", "RUNNING") or remaining <= 0:
                return found
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, self.max_poll_delay)

    def _job(self, s: _Session, job: str) -> dict:
        # "The processing results of the job can only be read using GoogleAdsService.Search/SearchStream."
        query = (
            "SELECT offline_user_data_job.id, offline_user_data_job.status, offline_user_data_job.failure_reason, "
            "offline_user_data_job.operation_metadata.match_rate_range FROM offline_user_data_job "
            f"WHERE offline_user_data_job.id = {_job_id(job)}"
        )
        return self._search_one(s, query).get("offlineUserDataJob") or {}

    def _list(self, s: _Session, list_id: str) -> dict:
        query = (
            "SELECT user_list.id, user_list.name, user_list.type, user_list.crm_based_user_list.upload_key_type, "
            f"user_list.size_for_display FROM user_list WHERE user_list.id = {int(list_id)}"
        )
        return self._search_one(s, query).get("userList") or {}

    def _search_one(self, s: _Session, query: str) -> dict:
        rows = self._api(s, "POST", f"customers/{s.customer}/googleAds:search", {"query": query}).get("results")
        return rows[0] if isinstance(rows, list) and rows and isinstance(rows[0], dict) else {}

    # --- OAuth and the API -----------------------------------------------------

    def _session(self, account: Account) -> _Session:
        version = account.settings.get("api_version") or API_VERSION
        base = self.base_url(account)
        token_url = f"{base}/token" if account.base_url else TOKEN_URL
        return _Session(account, f"{base}/{version}", token_url, _digits(account.settings.get("customer_id")))

    def _login(self, s: _Session, fresh: bool = False) -> None:
        key = _account_key(s)
        with _lock:
            token, until = _tokens.get(key, ("", 0.0))
        if not fresh and token and until > time.time():
            s.token = token
            return
        settings = s.account.settings
        data = {
            "grant_type": "refresh_token",
            "client_id": settings.get("client_id"),
            "client_secret": settings.get("client_secret"),
            "refresh_token": settings.get("refresh_token"),
        }
        response = self._call(s, "POST", s.token_url, data=data)
        body = http.json_or_empty(response)
        error, said = str(body.get("error") or ""), str(body.get("error_description") or "")
        if response.status_code == 429 or response.status_code >= 500:
            raise Stop(
                Outcome(
                    "retry",
                    f"Google's token endpoint answered with HTTP {response.status_code}, a temporary error.",
                    http.retry_after(response),
                )
            )
        if error == "invalid_grant":
            message = sentence("Google refused the refresh token of this output", said)
            raise Stop(fault=Fault("credentials", message, HINTS["expired"].format(customer=s.shown)))
        if error in ("invalid_client", "unauthorized_client"):
            message = "Google did not accept the OAuth client ID and secret of this output."
            raise Stop(fault=Fault("credentials", message, HINTS["client"]))
        if response.status_code >= 400 or not body.get("access_token"):
            message = sentence("Google's token endpoint refused the credentials of this output", said or error)
            raise Stop(fault=Fault("credentials", message, HINTS["refused"]))
        s.token = body["access_token"]
        lapses = time.time() + max(0.0, float(integer(body.get("expires_in")) or 3600) - 60)
        with _lock:
            _tokens[key] = (s.token, lapses)

    def _api(
        self,
        s: _Session,
        method: str,
        path: str,
        json: dict,
        list_id: bool = False,
        connection_settings: dict | None = None,
    ) -> dict:
        """One call to the Google Ads API; an access token Google no longer takes is exchanged again, once."""
        for first in (True, False):
            headers = {
                "Authorization": f"Bearer {s.token}",
                "developer-token": s.account.settings.get("developer_token"),
            }
            login = _digits(s.account.settings.get("login_customer_id"))
            if login:
                headers["login-customer-id"] = login
            response = self._call(s, method, f"{s.api}/{path}", json=json, headers=headers)
            body = http.json_or_empty(response)
            if response.ok and not isinstance(body.get("error"), dict):
                return body
            if response.status_code == 401 and first:
                self._login(s, fresh=True)
                continue
            raise Stop(*classify(self, s, response, body, connection_settings if list_id else None))
        raise AssertionError("unreachable")

    def _call(self, s: _Session, method: str, url: str, **kwargs):
        # Google's errors say by their codes what a 401/403/404 is about (_classify): a lapsed token, a missing
        # scope or developer token, a customer the user cannot reach.
        try:
            return http.call(method, url, s.attempts, expect_json=True, handles=(401, 403, 404), **kwargs)
        except http.TransportError as exc:
            raise Stop(Outcome("retry", str(exc))) from exc  # verification re-raises the cause


def _accept(job: dict, entries: dict, result: SendResult) -> None:
    rate = MATCH_RATES.get((job.get("operationMetadata") or {}).get("matchRateRange"))
    outcome = Outcome("accepted", f"Google Ads matched {rate} of its upload job.") if rate else ACCEPTED
    for msgs in entries.values():
        for m in msgs:
            result.outcomes[m.key] = outcome


def _job_id(job: str) -> str:
    return job.rpartition("/")[2]


def _account_key(s: _Session) -> str:
    settings = s.account.settings
    parts = (
        s.token_url,
        str(settings.get("client_id")),
        str(settings.get("client_secret")),
        str(settings.get("refresh_token")),
    )
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _pending_for(s: _Session, list_id) -> dict:
    cutoff = time.time() - PENDING_FOR
    with _lock:
        pending = _pending.setdefault((_account_key(s), s.api, s.customer, str(list_id)), {})
        for entry in [e for e, (_, since) in pending.items() if since < cutoff]:
            del pending[entry]
    return pending
