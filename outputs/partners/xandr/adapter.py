"""AppNexus / Xandr: mobile advertising IDs into a segment, through the Batch Segment Service.

Xandr takes segment membership as files, not per-user calls: sign in, ask for an
upload job, POST the file to the job's upload URL, then poll the job until its
phase is "completed". Xandr asks for at most one upload a minute and allows up
to 24 hours to process a file, so messages are queued and uploaded at an
interval; a job still running after a short wait is remembered, and the next
attempt checks that job instead of uploading the same entries again. The file is
in the output's format, BSS Avro or legacy BSS (outputs.partners.xandr.files); what its failures are called is
in outputs.partners.xandr.hints. The rest stays one module, a little over 400 lines, so that the steps of an
upload read in the order they happen.

https://learn.microsoft.com/en-us/xandr/digital-platform-api/batch-segment-service
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin

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
    raw,
)
from outputs.partners.plumbing import Stop, failing
from outputs.partners.xandr import files as xandr_files
from outputs.partners.xandr.hints import ENTRY_REASONS, HINTS, auth_fault, missing_segment, still_processing

# EXPIRATION in minutes: 0 keeps the user for Xandr's maximum (180 days); -1 removes the user.
ADD_EXPIRATION = 0
REMOVE_EXPIRATION = -1
# "Users are automatically removed from segments after 180 days" (Initial BSS account setup): members who stay
# in an audience are added again after REFRESH_DAYS, which leaves weeks to spread the refresh over many uploads.
EXPIRES_DAYS = 180
REFRESH_DAYS = 60
MAX_REFRESH_DAYS = 150
# Xandr's processing SLA: after this a job we were waiting for is forgotten and its entries uploaded again.
PENDING_FOR = 24 * 3600


_tokens: dict[str, str] = {}  # account key -> API token, kept for the life of the process
# (account, member, segment) -> {entry: (job, since)}
_pending: dict[tuple, dict[xandr_files.Entry, tuple[str, float]]] = {}
_lock = threading.Lock()


@dataclass
class _Session:
    base: str
    account: Account
    member: int
    file_format: str
    attempts: list = field(default_factory=list)
    token: str = ""


def _positive(value) -> str:
    return "" if value > 0 else "Must be a positive number."


def _refresh_days(value) -> str:
    if 1 <= value <= MAX_REFRESH_DAYS:
        return ""
    return f"Must be between 1 and {MAX_REFRESH_DAYS} days: Xandr drops segment members after {EXPIRES_DAYS} days."


class Xandr(Partner):
    slug = "xandr"
    sandbox_demo = ({"username": "demo", "password": "demo-pass", "member_id": "1234"}, {"segment_id": "5678"})
    name = "AppNexus / Xandr"
    pattern = "direct"
    docs_url = "https://learn.microsoft.com/en-us/xandr/digital-platform-api/batch-segment-service"
    default_base_url = "https://api.appnexus.com"
    # The API, and the upload URLs its Batch Segment Service hands out (https://01.data-api.prod.adnxs.net/…,
    # https://data-api-gslb.adnxs.net/…), which receive the segment file and our token.
    hosts = ("api.appnexus.com", "*.adnxs.net")
    # Device IDs go to Xandr as they are: Xandr matches raw IDs and never hashed ones.
    identity_types = {"ios_idfa": raw, "android_aaid": raw}
    output_settings = (
        Setting("username", "API username", "A Xandr user with API access."),
        Setting("password", "API password", kind="secret"),
        Setting(
            "member_id",
            "Member ID",
            "Your Xandr member (seat) ID.",
            kind="int",
            validate=_positive,
        ),
        Setting(
            "file_format",
            "File format",
            "The format Xandr set up the Batch Segment Service of this member to read (empty: BSS Avro, the one "
            "Xandr prefers: https://learn.microsoft.com/en-us/xandr/digital-platform-api/initial-bss-account-setup). "
            "Legacy BSS needs SEG_ID:EXPIRATION segment fields with the separators , ; : and ^ "
            "(https://learn.microsoft.com/en-us/xandr/digital-platform-api/legacy-bss-file-format).",
            kind="choice",
            required=False,
            default=xandr_files.AVRO,
            choices=((xandr_files.AVRO, "BSS Avro"), (xandr_files.LEGACY, "Legacy BSS (text lines)")),
        ),
    )
    connection_settings = (
        Setting(
            "segment_id", "Segment ID", "The Xandr segment that holds this audience.", kind="int", validate=_positive
        ),
        Setting(
            "refresh_days",
            "Refresh after (days)",
            f"Xandr removes a member from the segment {EXPIRES_DAYS} days after the last upload that added them. "
            "Members still in the audience are uploaded again once their last add is this many days old "
            f"(1 to {MAX_REFRESH_DAYS}; empty: {REFRESH_DAYS}).",
            kind="int",
            required=False,
            default=REFRESH_DAYS,
            validate=_refresh_days,
            backfill_on_change=False,
        ),
    )
    membership_expires_days = EXPIRES_DAYS
    batch_size = 100_000  # device IDs per file; Xandr's limit is 0.5 GB, about 10 million legacy lines
    max_concurrency = 1
    delivery = Delivery(mode="interval", every_minutes=15, every_messages=50_000)
    # How long one send waits for Xandr to process its upload job before answering "retry".
    job_wait = 30.0
    first_poll_delay = 0.2
    max_poll_delay = 5.0

    def refresh_days(self, connection_settings: dict) -> int | None:
        return int(connection_settings.get("refresh_days") or REFRESH_DAYS)

    # --- checks ----------------------------------------------------------------

    def _check_credentials(self, account: Account) -> Check:
        s = self._session(account)
        try:
            self._login(s, fresh=True)
        except Stop as stop:
            return failing("credentials", stop, HINTS["refused"])
        return Check("credentials", "ok", f"Signed in to Xandr as {account.settings.get('username')}.")

    def _verify(self, account: Account, connection_settings: dict) -> list[Check]:
        checks = [self._check_credentials(account)]
        if checks[0].status != "ok":
            return checks
        s = self._session(account)
        try:
            self._login(s)
            checks.append(self._segment_check(s, connection_settings["segment_id"]))
        except Stop as stop:
            checks.append(failing("segment", stop, HINTS["refused"]))
        return checks

    def _segment_check(self, s: _Session, segment: int) -> Check:
        found = self._segment(s, segment)
        label = f"Segment {segment}" + (f" ({found['short_name']})" if found.get("short_name") else "")
        if found.get("state", "active") != "active":
            hint = HINTS["inactive"].format(segment=segment)
            return Check("segment", "warning", f"{label} of member {s.member} is {found['state']}.", hint)
        return Check("segment", "ok", f"{label} exists in member {s.member}.")

    # --- sending ---------------------------------------------------------------

    def _send(self, account: Account, connection_settings: dict, messages: list[Message]) -> SendResult:
        result = SendResult()
        s = self._session(account)
        try:
            self._deliver(s, int(connection_settings["segment_id"]), messages, result)
        except Stop as stop:
            stop.settle(result, messages)
        finally:
            # The session token is no setting of the output, so the base's scrubbing does not know it.
            for attempt in s.attempts:
                attempt.response_excerpt = self.scrub(account, attempt.response_excerpt, s.token)
            result.attempts = s.attempts
        return result

    def _deliver(self, s: _Session, segment: int, messages: list[Message], result: SendResult) -> None:
        entries: dict[xandr_files.Entry, list[Message]] = {}
        for m in messages:
            if m.identity_type not in self.identity_types:
                reason = f"Xandr accepts only iOS (IDFA) and Android (AAID) advertising IDs, not {m.identity_type}."
                result.outcomes[m.key] = Outcome("rejected", reason)
                continue
            expiration = ADD_EXPIRATION if m.action == "add" else REMOVE_EXPIRATION
            uid = self.identity_types[m.identity_type](m.value)
            entries.setdefault(xandr_files.Entry(uid, m.identity_type, expiration), []).append(m)
        if not entries:
            return
        self._login(s)
        found = self._segment(s, segment)
        if found.get("state", "active") != "active":
            message = f"Xandr segment {segment} of member {s.member} is {found['state']}."
            raise Stop(fault=Fault("destination", message, HINTS["inactive"].format(segment=segment)))

        pending = _pending_for(s, segment)
        fresh = {e: msgs for e, msgs in entries.items() if e not in pending}
        for job_id in sorted({pending[e][0] for e in entries if e in pending}):
            mine = {e: msgs for e, msgs in entries.items() if pending.get(e, ("",))[0] == job_id}
            try:
                job = self._job(s, job_id)
            except Stop as stop:
                if not (stop.fault and stop.fault.kind == "destination"):
                    raise
                job = {"phase": "error"}  # Xandr no longer knows the job
            if job.get("phase") == "completed":
                self._record(s, segment, job, mine, result)
            elif job.get("phase") == "error":
                fresh.update(mine)  # Xandr gave up on that file: upload these entries again
            else:
                result.mark_all([m for msgs in mine.values() for m in msgs], still_processing(job_id))
            if job.get("phase") in ("completed", "error"):
                _forget(pending, mine)
        if fresh:
            self._upload(s, segment, fresh, result, pending)

    def _upload(self, s: _Session, segment: int, entries: dict, result: SendResult, pending: dict) -> None:
        job = self._api(s, "POST", "/batch-segment", params={"member_id": s.member}).get("batch_segment_upload_job")
        job = _one(job)
        job_id, upload_url = job.get("job_id"), job.get("upload_url")
        if not job_id or not upload_url:
            raise Stop(Outcome("retry", "Xandr did not return an upload job; the batch will be uploaded again."))
        body = xandr_files.render(s.file_format, segment, entries)
        headers = {"Content-Type": "application/octet-stream"}
        self._api(s, "POST", urljoin(s.base + "/", upload_url), data=body, headers=headers)
        job = self._wait(s, job_id)
        if job.get("phase") == "completed":
            self._record(s, segment, job, entries, result)
        elif job.get("phase") == "error":
            # A file Xandr cannot read at all is most often one in the other format than the member's.
            error, label = job.get("error_code") or "unknown error", xandr_files.LABELS[s.file_format]
            reason = (
                f"Xandr could not process upload job {job_id} ({error}), so the batch will be uploaded again; if "
                f"this repeats, check that the file format of this output ({label}) is the one Xandr set up for "
                f"member {s.member}."
            )
            result.mark_all([m for msgs in entries.values() for m in msgs], Outcome("retry", reason))
        else:
            since = time.time()
            with _lock:
                pending.update({e: (job_id, since) for e in entries})
            result.mark_all([m for msgs in entries.values() for m in msgs], still_processing(job_id))

    def _wait(self, s: _Session, job_id: str) -> dict:
        deadline, delay = time.monotonic() + self.job_wait, self.first_poll_delay
        while True:
            job = self._job(s, job_id)
            remaining = deadline - time.monotonic()
            if job.get("phase") in ("completed", "error") or remaining <= 0:
                return job
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, self.max_poll_delay)

    def _job(self, s: _Session, job_id: str) -> dict:
        response = self._api(s, "GET", "/batch-segment", params={"member_id": s.member, "job_id": job_id})
        return _one(response.get("batch_segment_upload_job"))

    def _record(self, s: _Session, segment: int, job: dict, entries: dict, result: SendResult) -> None:
        """Outcomes from a completed job: device IDs named in its error log are rejected, the rest accepted."""
        if job.get("num_unauth_segment"):
            message = f"Xandr does not allow member {s.member} to add users to segment {segment}."
            raise Stop(fault=Fault("account", message, HINTS["no_access"].format(member=s.member)))
        if job.get("num_invalid_segment") or job.get("num_inactive_segment"):
            message = f"Xandr reports segment {segment} as invalid or inactive for member {s.member}."
            raise Stop(fault=Fault("destination", message, HINTS["segment"].format(member=s.member)))
        errors = xandr_files.named_ids(job.get("error_log_lines") or "")
        for entry, msgs in entries.items():
            counter = errors.get(entry.uid)
            outcome = ACCEPTED
            if counter:
                reason = ENTRY_REASONS.get(counter, f"Xandr rejected this device ID ({counter}).")
                outcome = Outcome("rejected", reason)
            for m in msgs:
                result.outcomes[m.key] = outcome

    # --- the Xandr API ---------------------------------------------------------

    def _session(self, account: Account) -> _Session:
        member = int(account.settings.get("member_id") or 0)
        return _Session(self.base_url(account), account, member, xandr_files.file_format(account.settings))

    def _login(self, s: _Session, fresh: bool = False) -> None:
        key = _account_key(s)
        if not fresh and _tokens.get(key):
            s.token = _tokens[key]
            return
        credentials = {"username": s.account.settings.get("username"), "password": s.account.settings.get("password")}
        response = self._call(s, "POST", "/auth", json={"auth": credentials})
        body = _envelope(response)
        if response.status_code in (401, 403) or str(body.get("error_id", "")).startswith("NOAUTH"):
            raise Stop(fault=auth_fault(body))
        if response.status_code == 404:
            # /auth exists wherever the Xandr API is: a 404 says the base URL leads elsewhere, not a member.
            message = f"Xandr answered HTTP 404 at {s.base}/auth: there is no Xandr API at this base URL."
            raise Stop(fault=Fault("destination", message, HINTS["base_url"]))
        self._raise_for(s, response, body)
        if not body.get("token"):
            raise Stop(Outcome("retry", "Xandr did not return a token when signing in; the batch will be sent again."))
        s.token = body["token"]
        with _lock:
            _tokens[key] = s.token

    def _api(self, s: _Session, method: str, url: str, headers: dict | None = None, **kwargs) -> dict:
        """One authenticated call; on NOAUTH (token expired) sign in again once and repeat it."""
        for first in (True, False):
            response = self._call(s, method, url, headers={**(headers or {}), "Authorization": s.token}, **kwargs)
            body = _envelope(response)
            if response.status_code == 401 or str(body.get("error_id", "")).startswith("NOAUTH"):
                if first and body.get("error_id", "NOAUTH") == "NOAUTH":
                    self._login(s, fresh=True)
                    continue
                raise Stop(fault=auth_fault(body))
            self._raise_for(s, response, body)
            return body
        raise AssertionError("unreachable")

    def _segment(self, s: _Session, segment: int) -> dict:
        try:
            body = self._api(s, "GET", "/segment", params={"id": segment, "member_id": s.member})
        except Stop as stop:
            if stop.fault and stop.fault.kind == "destination":
                stop.fault = missing_segment(s.member, segment)
            raise
        found = _one(body.get("segment") or body.get("segments"))
        if not found:
            raise Stop(fault=missing_segment(s.member, segment))
        return found

    def _call(self, s: _Session, method: str, url: str, **kwargs):
        # Xandr answers JSON everywhere; it words a lapsed token (401, signed in again), a user without access
        # (403) and a missing member or segment (404) itself (_api, _raise_for).
        try:
            return http.call(
                method,
                url if url.startswith("http") else s.base + url,
                s.attempts,
                expect_json=True,
                handles=(401, 403, 404),
                **kwargs,
            )
        except http.TransportError as exc:
            raise Stop(Outcome("retry", str(exc))) from exc  # verification re-raises the cause

    def _raise_for(self, s: _Session, response, body: dict) -> None:
        status, error_id = response.status_code, body.get("error_id") or ""
        error = body.get("error") or body.get("errors") or ""
        error = "; ".join(map(str, error)) if isinstance(error, list) else str(error)
        error = self.scrub(s.account, error, s.token)
        if status == 429 or body.get("error_code") == "RATE_LIMIT_EXCEEDED":
            reason = "Xandr asked us to slow down" + (f": {error}" if error else " (HTTP 429).")
            raise Stop(Outcome("retry", reason.rstrip(".") + ".", http.retry_after(response, 60.0)))
        if status >= 500 or error_id == "SYSTEM":
            raise Stop(Outcome("retry", f"Xandr answered with HTTP {status}, a temporary error."))
        if status == 403 or error_id == "UNAUTH":
            message = f"Xandr does not allow this user to upload segment data for member {s.member}."
            raise Stop(fault=Fault("account", message, HINTS["no_access"].format(member=s.member)))
        if status == 404 or error_id == "NOTFOUND":
            message = f"Xandr could not find member {s.member} or the object asked for."
            raise Stop(fault=Fault("destination", message, HINTS["no_access"].format(member=s.member)))
        if status >= 400 or error_id or body.get("status") == "ERROR":
            detail = error or error_id or f"HTTP {status}"
            raise Stop(Outcome("rejected", f"Xandr rejected the request: {detail.rstrip('.')}."))


def _account_key(s: _Session) -> str:
    settings = s.account.settings
    parts = (s.base, str(settings.get("username")), str(settings.get("password")), str(s.member))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _pending_scope(s: _Session, segment: int) -> tuple:
    return (_account_key(s), s.member, segment)


def _forget(pending: dict, entries: dict) -> None:
    with _lock:
        for entry in entries:
            pending.pop(entry, None)


def _pending_for(s: _Session, segment: int) -> dict:
    cutoff = time.time() - PENDING_FOR
    with _lock:
        pending = _pending.setdefault(_pending_scope(s, segment), {})
        for entry in [entry for entry, (_, since) in pending.items() if since < cutoff]:
            del pending[entry]
    return pending


def _envelope(response) -> dict:
    body = http.json_or_empty(response).get("response")
    return body if isinstance(body, dict) else {}


def _one(value) -> dict:
    # Some logins (data providers) get a one-element list where others get the object.
    if isinstance(value, list):
        value = value[0] if value else {}
    return value if isinstance(value, dict) else {}
