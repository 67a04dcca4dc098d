"""AppNexus/Xandr API (https://learn.microsoft.com/en-us/xandr/digital-platform-api/), under ``/xandr/``:
``{base}/xandr/batch-segment`` stands for ``https://api.appnexus.com/batch-segment``.

Covered: the Authentication Service (``POST /auth``), ``GET /user``, ``GET /segment`` and the Batch Segment
Service (request a job and an upload URL, post the file to it, poll the job). Files are BSS Avro object containers
(``xandr_avro``) or use the legacy BSS format with the separators Xandr's own examples use:
``UID,SEG_ID:EXPIRATION;SEG_ID:EXPIRATION`` then, for mobile device IDs, ``^`` and the ID type number (3 = IDFA,
8 = AAID, ...). ``EXPIRATION`` -1 removes the user from the segment; a tab (SEPARATOR4) may introduce a list of
segments to remove the user from. Gzip-compressed files are accepted. Xandr reads each member's files in the
format set up for it; a member registered with a ``file_format`` gets that, one registered without one gets
whichever the file is (an Avro container is told by its first bytes). A file the member's format cannot read fails
its job (``phase`` "error").

Membership expires: a user stays in a segment for ``EXPIRATION`` minutes from the upload (0 means Xandr's maximum,
180 days, which is also the cap), then leaves it. Expiry follows the sandbox's clock (``POST /_sandbox/clock``).

One module of about 700 lines, on purpose: it is one reading of Xandr's reference (sign-in, segments, the Batch
Segment Service and its file formats), each rule beside the page it comes from, so that checking it against the
docs is reading it top to bottom; only the Avro container reader is apart (``sandbox_avro``).
"""

import gzip
import re
import secrets
import time
import zlib

from outputs.partners.xandr import sandbox_avro as xandr_avro
from outputs.sandbox.common import (
    BadJSON,
    Partner,
    control_body,
    found,
    iso_stamp,
    json_response,
    retry_after_header,
    utc_stamp,
)

# The demo account (POST /_sandbox/seed/demo).
DEMO = {"username": "demo", "password": "demo-pass", "member_id": 1234, "segment_id": 5678}

TOKEN_LIFETIME = 2 * 60 * 60  # "the token remains valid for 2 hours"
COMPLETE_AFTER = 1.0  # seconds after the upload, or the second poll, whichever comes first
MAX_FILE_BYTES = 512 * 1024 * 1024  # "Your segment file should not be larger than 0.5GB."
MAX_ERROR_LINES = 200
FILE_FORMATS = ("avro", "legacy")
# A job whose file cannot be read at all ends in phase "error" with an error_code: "an error with the uploading,
# validating, or processing of the file itself ... Common errors are caused by unreadable files" (Batch Segment
# Service, batch_segment_upload_job.error_code). Xandr's page shows only "uploading-error"; this value follows it.
UNREADABLE = "validating-error"
# "The maximum expiration that can be set is 180 days. Users are automatically removed from segments after 180
# days." (Initial BSS account setup); EXPIRATION 0 means that maximum (Legacy BSS file format).
MAX_EXPIRATION_MINUTES = 180 * 24 * 60
DEVICE_CODES = {
    "3": "idfa",
    "4": "sha1udid",
    "5": "md5udid",
    "7": "openudid",
    "8": "aaid",
    "9": "windowsadid",
    "10": "rida",
    "11": "tifa",
    "12": "vida",
    "13": "lgudid",
}
UUID_RE = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")
COUNTERS = (
    "num_valid",
    "num_invalid_format",
    "num_valid_user",
    "num_invalid_user",
    "num_invalid_segment",
    "num_invalid_timestamp",
    "num_unauth_segment",
    "num_past_expiration",
    "num_inactive_segment",
    "num_other_error",
)


def api_error(status, error_id, error, service=None, method=None, description=None):
    return json_response(
        status,
        {
            "response": {
                "error_id": error_id,
                "error": error,
                "error_description": description,
                "error_code": None,
                "service": service,
                "method": method,
                "dbg_info": {"instance": "sandbox.api.appnexus.com", "version": "sandbox"},
            }
        },
    )


def ok(payload):
    body = {"status": "OK", **payload, "dbg_info": {"instance": "sandbox.api.appnexus.com", "version": "sandbox"}}
    return json_response(200, {"response": body})


class Job:
    __slots__ = (
        "id",
        "job_id",
        "member_id",
        "created",
        "uploaded",
        "polls",
        "phase",
        "counters",
        "segments",
        "error_lines",
        "added",
        "removed",
        "error_code",
    )

    def __init__(self, number, job_id, member_id):
        self.id, self.job_id, self.member_id = number, job_id, member_id
        self.created = time.time()
        self.uploaded = None
        self.polls = 0
        self.phase = "starting"
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.segments = set()
        self.error_lines = []
        self.added = {}
        self.removed = {}
        self.error_code = None

    def describe(self, base, full=True):
        out = {
            "id": self.id,
            "job_id": self.job_id,
            "member_id": self.member_id,
            "phase": self.phase,
            "created_on": utc_stamp(self.created),
            "last_modified": utc_stamp(self.uploaded or self.created),
            "start_time": utc_stamp(self.created),
            "uploaded_time": utc_stamp(self.uploaded) if self.uploaded else None,
            "upload_url": f"{base}/xandr/segment-upload/{self.job_id}",
        }
        if self.phase == "completed":
            out.update(
                {
                    "validated_time": utc_stamp(self.uploaded),
                    "completed_time": utc_stamp(self.uploaded + COMPLETE_AFTER),
                    "error_code": None,
                    "time_to_process": "0.01",
                    "percent_complete": 100,
                    **self.counters,
                    "error_log_lines": "\n".join(self.error_lines) if self.error_lines else None,
                    "segment_log_lines": self._segment_log(),
                }
            )
        elif self.phase == "error":
            out.update({"validated_time": None, "completed_time": None, "error_code": self.error_code})
            out.update({"time_to_process": "0.00", "percent_complete": 0, **self.counters})
            out.update({"error_log_lines": None, "segment_log_lines": None})
        elif self.phase in ("validating", "processing"):
            out.update({"validated_time": None, "completed_time": None, "error_code": None})
            out["percent_complete"] = 50 if self.phase == "processing" else 10
        return out

    def _segment_log(self):
        if not self.added and not self.removed:
            return None
        added = " ".join(f"{s}:{n}" for s, n in sorted(self.added.items(), key=lambda kv: -kv[1]))
        removed = " ".join(f"{s}:{n}" for s, n in sorted(self.removed.items(), key=lambda kv: -kv[1]))
        return f"added: {added} removed: {removed}".strip()


class Xandr(Partner):
    name = "xandr"

    def reset(self):
        super().reset()
        self.accounts = {}  # username -> {"password", "member_id", "revoked"}
        self.file_formats = {}  # member id -> the format its files must use; none set: either
        self.tokens = {}  # token -> {"username", "member_id", "expires"}
        # segment id -> {"member_id", "members": {device id: (uid type, expires at, on the sandbox's clock)}}
        self.segments = {}
        self.jobs = {}  # job id -> Job
        self.job_numbers = 0

    def dump(self):
        return {
            "accounts": self.accounts,
            "tokens": self.tokens,
            "segments": [
                {
                    **{k: v for k, v in s.items() if k != "members"},
                    "id": i,
                    "members": [[u, *m] for u, m in s["members"].items()],
                }
                for i, s in self.segments.items()
            ],
            "jobs": [
                {**{k: getattr(j, k) for k in Job.__slots__}, "segments": sorted(j.segments)}
                for j in self.jobs.values()
            ],
            "job_numbers": self.job_numbers,
        }

    def load(self, state):
        segments = {}
        for saved in state["segments"]:
            members = {uid: (uid_type, float(expires)) for uid, uid_type, expires in saved["members"]}
            segments[int(saved["id"])] = {**{k: v for k, v in saved.items() if k != "id"}, "members": members}
        jobs = {}
        for saved in state["jobs"]:
            job = jobs[saved["job_id"]] = Job(saved["id"], saved["job_id"], saved["member_id"])
            for k in Job.__slots__:
                setattr(job, k, saved[k])
            job.segments = {int(i) for i in saved["segments"]}
            job.added = {int(i): n for i, n in saved["added"].items()}  # JSON keys are strings
            job.removed = {int(i): n for i, n in saved["removed"].items()}
        self.accounts = {name: dict(a) for name, a in state["accounts"].items()}
        self.tokens = {token: dict(t) for token, t in state["tokens"].items()}
        self.segments, self.jobs, self.job_numbers = segments, jobs, int(state["job_numbers"])

    # --- control -------------------------------------------------------------------------------------------
    def add_account(self, username, password, member_id, file_format=None):
        if not isinstance(username, str) or not username or not isinstance(password, str) or not password:
            raise ValueError("'username' and 'password' are required strings.")
        member_id = _int(member_id, "member_id")
        if file_format is not None and file_format not in FILE_FORMATS:
            raise ValueError(f"'file_format' must be one of {', '.join(FILE_FORMATS)}, or left out for either.")
        with self.lock:
            self.accounts[username] = {"password": password, "member_id": member_id, "revoked": False}
            if file_format:
                self.file_formats[member_id] = file_format
            else:
                self.file_formats.pop(member_id, None)
        return {"username": username, "member_id": member_id, "file_format": file_format}

    def add_segment(self, member_id, segment_id, short_name=None):
        member_id, segment_id = _int(member_id, "member_id"), _int(segment_id, "segment_id")
        with self.lock:
            existing = self.segments.get(segment_id)
            members = existing["members"] if existing and existing["member_id"] == member_id else {}
            self.segments[segment_id] = {
                "member_id": member_id,
                "members": members,
                "short_name": short_name or f"Segment {segment_id}",
                "created": time.time(),
            }
        return {"member_id": member_id, "segment_id": segment_id}

    def inspect(self, segment_id, base):
        try:
            segment_id = int(segment_id)
        except ValueError:
            return None
        with self.lock:
            segment = self.segments.get(segment_id)
            if segment is None:
                return None
            jobs = [j.describe(base) for j in self.jobs.values() if segment_id in j.segments]
            members = self._live(segment)
            return {
                "segment_id": segment_id,
                "member_id": segment["member_id"],
                "count": len(members),
                "members": sorted(members),
                "expires": {uid: iso_stamp(expires) for uid, (_, expires) in sorted(members.items())},
                "jobs": jobs,
            }

    def _live(self, segment):
        """The segment's members once those whose expiration passed are gone (the caller holds the lock)."""
        now = self.sandbox.now()
        members = segment["members"]
        for uid in [uid for uid, (_, expires) in members.items() if expires <= now]:
            del members[uid]
        return members

    def revoke(self, credential):
        """A username (its password stops working and its tokens end) or a single token."""
        with self.lock:
            if credential in self.accounts:
                self.accounts[credential]["revoked"] = True
                for token in [t for t, v in self.tokens.items() if v["username"] == credential]:
                    del self.tokens[token]
                return True
            return self.tokens.pop(credential, None) is not None

    def control_routes(self):
        return [
            (
                "POST",
                r"accounts",
                control_body(
                    lambda b: self.add_account(
                        b.get("username"), b.get("password"), b.get("member_id"), b.get("file_format")
                    )
                ),
            ),
            (
                "POST",
                r"segments",
                control_body(lambda b: self.add_segment(b.get("member_id"), b.get("segment_id"), b.get("short_name"))),
            ),
            (
                "GET",
                r"segments/(?P<ident>[^/]+)",
                lambda r, ident: found(self.inspect(ident, r.base_url()), "segment", ident),
            ),
        ]

    def seed_demo(self, base):
        if DEMO["username"] not in self.accounts:
            self.add_account(DEMO["username"], DEMO["password"], DEMO["member_id"])
        if DEMO["segment_id"] not in self.segments:
            self.add_segment(DEMO["member_id"], DEMO["segment_id"], "Audience Relay demo")
        return {**DEMO, "base_url": f"{base}/xandr"}

    def demo_summary(self, demo):
        return (
            f"user {demo['username']}, password {demo['password']}, member {demo['member_id']}, "
            f"segment {demo['segment_id']}"
        )

    def index(self, base):
        return {"prefix": f"{base}/xandr", "stands_for": "https://api.appnexus.com"}

    def error_response(self, status, retry_after=None):
        if status == 401:
            response = api_error(401, "NOAUTH", "Authentication failed - not logged in")
        elif status == 403:
            response = api_error(403, "UNAUTH", "You do not have permission to perform this action")
        elif status == 429:
            response = api_error(429, "SYSTEM", "You have exceeded your request limit, please wait and try again")
        elif status >= 500:
            response = api_error(status, "SYSTEM", "A system error has occurred. Please try again later.")
        else:
            response = api_error(status, "SYNTAX", "The request could not be processed.")
        response.headers.extend(retry_after_header(retry_after))
        return response

    # --- routing -----------------------------------------------------------------------------------------
    def handle(self, request):
        path = request.path.rstrip("/") or "/"
        method = request.method
        if path == "/auth":
            return self._auth(request) if method == "POST" else api_error(405, "SYNTAX", "Method not allowed", "auth")
        if path.startswith("/segment-upload/"):
            if method != "POST":
                return api_error(405, "SYNTAX", "Method not allowed", "segment-upload")
            return self._upload(request, path[len("/segment-upload/") :])
        service = path.strip("/").split("/")[0]
        session = self._session(request)
        if session is None:
            return api_error(401, "NOAUTH", "Authentication failed - not logged in", service, method)
        if path == "/user":
            return ok(
                {
                    "user": {
                        "id": zlib.crc32(session["username"].encode()) % 100000,
                        "username": session["username"],
                        "user_type": "member",
                        "member_id": session["member_id"],
                        "state": "active",
                    }
                }
            )
        if path == "/segment" and method == "GET":
            return self._get_segment(request, session)
        if path == "/batch-segment":
            if method == "POST":
                return self._new_job(request, session)
            if method == "GET":
                return self._get_job(request, session)
        return api_error(404, "NOTFOUND", f"Unknown service or method: {method} {path}", service, method)

    def _session(self, request):
        token = (request.headers.get("Authorization") or "").strip()
        if not token:
            return None
        session = self.tokens.get(token)
        if session is None or session["expires"] < time.time():
            return None
        return session

    def _auth(self, request):
        try:
            body = request.json()
        except BadJSON:
            return api_error(400, "SYNTAX", "Invalid JSON in request body", "auth", "POST")
        auth = body.get("auth") if isinstance(body, dict) else None
        if not isinstance(auth, dict):
            return api_error(400, "SYNTAX", "Missing 'auth' object with 'username' and 'password'", "auth", "POST")
        username, password = auth.get("username"), auth.get("password")
        with self.lock:
            account = self.accounts.get(username) if isinstance(username, str) else None
            if account is None or account["revoked"] or account["password"] != password:
                return api_error(401, "NOAUTH", "No match found for user/pass", "auth", "POST")
            token = f"hbapi:{account['member_id']}:{secrets.token_hex(12)}"
            self.tokens[token] = {
                "username": username,
                "member_id": account["member_id"],
                "expires": time.time() + TOKEN_LIFETIME,
            }
        return ok({"token": token})

    def _member(self, request, session, service):
        raw = request.query_params().get("member_id")
        if raw is None:
            return None, api_error(400, "SYNTAX", "member_id is required", service, request.method)
        try:
            member_id = int(raw)
        except ValueError:
            return None, api_error(400, "SYNTAX", f"member_id must be an integer, not '{raw}'", service, request.method)
        if member_id != session["member_id"]:
            return None, api_error(
                403, "UNAUTH", f"You do not have access to member {member_id}", service, request.method
            )
        return member_id, None

    def _get_segment(self, request, session):
        params = request.query_params()
        member_id = session["member_id"]
        if "member_id" in params:
            member_id, error = self._member(request, session, "segment")
            if error:
                return error
        raw = params.get("id")
        with self.lock:
            if raw is None:
                segments = [self._segment_body(i, s) for i, s in self.segments.items() if s["member_id"] == member_id]
                return ok({"count": len(segments), "start_element": 0, "num_elements": 100, "segments": segments})
            try:
                segment_id = int(raw)
            except ValueError:
                return api_error(400, "SYNTAX", f"id must be an integer, not '{raw}'", "segment", "GET")
            segment = self.segments.get(segment_id)
            if segment is None or segment["member_id"] != member_id:
                return api_error(404, "NOTFOUND", "segment not found", "segment", "GET")
            return ok(
                {
                    "count": 1,
                    "start_element": 0,
                    "num_elements": 100,
                    "segment": self._segment_body(segment_id, segment),
                }
            )

    @staticmethod
    def _segment_body(segment_id, segment):
        return {
            "id": segment_id,
            "member_id": segment["member_id"],
            "code": None,
            "state": "active",
            "short_name": segment["short_name"],
            "description": None,
            "expire_minutes": None,
            "last_modified": utc_stamp(segment["created"]),
        }

    def _new_job(self, request, session):
        member_id, error = self._member(request, session, "batch-segment")
        if error:
            return error
        with self.lock:
            self.job_numbers += 1
            job = Job(
                self.job_numbers,
                secrets.token_urlsafe(22).replace("-", "x").replace("_", "y") + str(int(time.time())),
                member_id,
            )
            self.jobs[job.job_id] = job
            described = job.describe(request.base_url())
        return ok(
            {
                "id": job.id,
                "batch_segment_upload_job": {
                    k: described[k] for k in ("id", "job_id", "member_id", "last_modified", "upload_url", "phase")
                },
                "start_element": 0,
                "count": 1,
                "num_elements": 100,
            }
        )

    def _get_job(self, request, session):
        member_id, error = self._member(request, session, "batch-segment")
        if error:
            return error
        job_id = request.query_params().get("job_id")
        base = request.base_url()
        with self.lock:
            if job_id is None:
                jobs = [j.describe(base) for j in self.jobs.values() if j.member_id == member_id]
                return ok(
                    {"count": len(jobs), "start_element": 0, "num_elements": 100, "batch_segment_upload_job": jobs}
                )
            job = self.jobs.get(job_id)
            if job is None or job.member_id != member_id:
                return api_error(
                    404, "NOTFOUND", f"batch_segment_upload_job {job_id} not found", "batch-segment", "GET"
                )
            if job.phase in ("validating", "processing"):
                job.polls += 1
                if job.polls >= 2 or time.time() - job.uploaded >= COMPLETE_AFTER:
                    job.phase = "completed"
                else:
                    job.phase = "processing"
            return ok(
                {
                    "id": job.id,
                    "count": 1,
                    "start_element": 0,
                    "num_elements": 100,
                    "batch_segment_upload_job": job.describe(base),
                }
            )

    def _upload(self, request, job_id):
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            return json_response(
                404,
                {
                    "response": {
                        "status": "ERROR",
                        "error_code": "NOT_FOUND",
                        "errors": [f"Unknown upload job {job_id}"],
                    }
                },
            )
        if job.phase != "starting":
            return json_response(
                400,
                {
                    "response": {
                        "status": "ERROR",
                        "error_code": "UPLOAD_EXISTS",
                        "errors": ["A file was already uploaded for this job"],
                    }
                },
            )
        body = request.body
        if len(body) > MAX_FILE_BYTES:
            return json_response(
                413,
                {
                    "response": {
                        "status": "ERROR",
                        "error_code": "FILESIZE_LIMIT_EXCEEDED",
                        "errors": ["Member exceeds maximum byte size allowed for a file"],
                    }
                },
            )
        if body[:2] == b"\x1f\x8b":
            try:
                body = gzip.decompress(body)
            except (OSError, EOFError):
                return json_response(
                    400,
                    {
                        "response": {
                            "status": "ERROR",
                            "error_code": "INVALID_FILE",
                            "errors": ["The gzip file could not be read"],
                        }
                    },
                )
        with self.lock:
            fmt = self.file_formats.get(job.member_id)
        fmt = fmt or ("avro" if xandr_avro.is_avro(body) else "legacy")
        items = None  # None: the file cannot be read in the member's format
        if fmt == "avro":
            try:
                items = xandr_avro.read(body)
            except xandr_avro.UnreadableFile:
                pass
        elif not xandr_avro.is_avro(body):
            items = _legacy_items(body.decode("latin-1"))
        with self.lock:
            if job.phase != "starting":
                return json_response(
                    400,
                    {
                        "response": {
                            "status": "ERROR",
                            "error_code": "UPLOAD_EXISTS",
                            "errors": ["A file was already uploaded for this job"],
                        }
                    },
                )
            job.uploaded = time.time()
            if items is None:
                job.phase, job.error_code = "error", UNREADABLE
            else:
                self._process(job, items)
                job.phase = "validating"
        return json_response(200, {"response": {"segment_upload": {"job_id": job.job_id}, "status": "OK"}})

    # --- the file ------------------------------------------------------------------------------------------
    def _process(self, job, items):
        """Apply a file's lines (legacy) or records (Avro), each given as (its text, its parsed form or None)."""
        counters = job.counters
        seen_lines = set()
        invalid_segments, unauth_segments = set(), set()
        for line, parsed in items:
            if line in seen_lines:  # "Duplicate lines will also be considered an invalid format."
                counters["num_invalid_format"] += 1
                self._log(job, "num_invalid_format", line)
                continue
            seen_lines.add(line)
            if parsed is None:
                counters["num_invalid_format"] += 1
                self._log(job, "num_invalid_format", line)
                continue
            uid, uid_type, entries = parsed
            if not _valid_uid(uid, uid_type):
                counters["num_invalid_user"] += 1
                self._log(job, "num_invalid_user", line)
                continue
            counters["num_valid_user"] += 1
            for segment_id, expiration in entries:
                segment = self.segments.get(segment_id)
                if segment is None:
                    invalid_segments.add(segment_id)
                    self._log(job, "num_invalid_segment", line)
                    continue
                if segment["member_id"] != job.member_id:
                    unauth_segments.add(segment_id)
                    self._log(job, "num_unauth_segment", line)
                    continue
                if expiration < -1:
                    counters["num_past_expiration"] += 1
                    continue
                job.segments.add(segment_id)
                counters["num_valid"] += 1
                members = self._live(segment)
                if expiration == -1:
                    if members.pop(uid, None) is None:
                        self.duplicates += 1
                    job.removed[segment_id] = job.removed.get(segment_id, 0) + 1
                else:
                    if uid in members:
                        self.duplicates += 1
                    # Adding again restarts the expiration: this is how a member stays in a segment past 180 days.
                    minutes = min(expiration or MAX_EXPIRATION_MINUTES, MAX_EXPIRATION_MINUTES)
                    members[uid] = (uid_type, self.sandbox.now() + minutes * 60)
                    job.added[segment_id] = job.added.get(segment_id, 0) + 1
        counters["num_invalid_segment"] = len(invalid_segments)
        counters["num_unauth_segment"] = len(unauth_segments)

    @staticmethod
    def _log(job, kind, line):
        if len(job.error_lines) < MAX_ERROR_LINES:
            job.error_lines.append(f"{kind}-{line}")


def _legacy_items(text):
    lines = (raw_line.strip("\r\n") for raw_line in text.splitlines())
    return [(line, _parse_line(line)) for line in lines if line.strip()]


def _parse_line(line):
    """``UID,SEG:EXP;SEG:EXP[\\tSEG;SEG][^TYPE]`` -> (uid, uid type, [(segment id, expiration)]) or None."""
    uid_type = "xandr"
    if "^" in line:
        line, _, code = line.rpartition("^")
        uid_type = DEVICE_CODES.get(code.strip())
        if uid_type is None:
            return None
    uid, sep, rest = line.partition(",")
    uid = uid.strip()
    if not sep or not uid or not rest:
        return None
    adds, _, removes = rest.partition("\t")
    entries = []
    for block in adds.split(";"):
        if not block:
            continue
        fields = block.split(":")
        if len(fields) != 2:
            return None
        try:
            entries.append((int(fields[0]), int(fields[1])))
        except ValueError:
            return None
    for block in removes.split(";"):
        if not block:
            continue
        try:
            entries.append((int(block.split(":")[0]), -1))
        except ValueError:
            return None
    return (uid, uid_type, entries) if entries else None


def _valid_uid(uid, uid_type):
    if uid_type in ("idfa", "aaid"):
        return UUID_RE.match(uid) is not None
    if uid_type == "xandr":
        return uid.isdigit() and 0 < int(uid) < 2**64
    return True


def _int(value, field):
    if isinstance(value, bool):
        raise ValueError(f"'{field}' must be an integer.")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"'{field}' must be an integer, not {value!r}.") from None
