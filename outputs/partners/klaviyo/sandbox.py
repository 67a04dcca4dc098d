"""Klaviyo's REST API (https://developers.klaviyo.com/en/reference/api_overview) under ``/klaviyo/``:
``{base}/klaviyo/api/...`` stands for ``https://a.klaviyo.com/api/...``.

Written from the API reference and its OpenAPI documents (github.com/klaviyo/openapi), each rule beside the page it
comes from; docs/partners/klaviyo.md lists them with their sources.

- Every request carries ``Authorization: Klaviyo-API-Key <private key>`` and a ``revision: YYYY-MM-DD[.suffix]``
  header ("API endpoint revision", required on every endpoint).
- Bodies and errors are JSON:API (``application/vnd.api+json``): ``{"errors": [{"id", "status", "code", "title",
  "detail", "source": {"pointer"}}]}``.
- Each endpoint has its documented scopes and rate limits (burst per second, steady per minute, per account, fixed
  windows); a request over either gets 429 ``throttled`` with ``Retry-After``, others carry ``RateLimit-*`` headers.

One module of about 600 lines, on purpose: one reading of the reference, each endpoint beside the limits, scopes and
error answers its page gives, so that a rule and its source are read together.
"""

import json
import re
import time
import uuid

from outputs.sandbox.common import (
    BadJSON,
    Partner,
    control_body,
    empty_response,
    found,
    json_response,
    retry_after_header,
)

# The demo account (POST /_sandbox/seed/demo).
DEMO = {"api_key": "pk_demo_0123456789abcdef0123456789abcdef", "list_id": "Y6nRLr", "name": "Audience Relay demo"}

JSONAPI = "application/vnd.api+json"
REVISION_RE = re.compile(r"^(\d{4}-\d{2}-\d{2})(\.[a-z]+)?$")
FIRST_REVISION = "2022-10-17"  # the first revision of the /api endpoints
MAX_LIST_MEMBERS = 1000  # Add/Remove Profiles to/from List: "a maximum of 1000 profiles per call"
MAX_IMPORT = 10_000  # Bulk Import Profiles: "up to 10,000 profiles per request"
MAX_IMPORT_BYTES = 5 * 1024 * 1024  # "The maximum allowed payload size is 5MB"
MAX_SUBSCRIBE = 1000  # Bulk Subscribe Profiles: "Maximum number of profiles can be submitted for subscription: 1000"
MAX_PAGE = 100  # Get Profiles: page[size] "Default: 20. Min: 1. Max: 100."
MAX_FILTER_VALUES = 100  # chosen: Klaviyo documents no limit on an any() filter's values
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]{2,}$")
E164_RE = re.compile(r"^\+[1-9]\d{6,14}$")

# (burst per second, steady per minute) from each endpoint's reference page.
LIMITS = {
    "get_lists": (75, 750),
    "get_list": (75, 750),
    "get_list_count": (1, 15),  # Get List with additional-fields[list]=profile_count
    "list_members": (10, 150),  # Add / Remove Profiles to/from List
    "bulk_import": (10, 150),
    "bulk_import_job": (10, 150),
    "bulk_subscribe": (75, 750),
    "get_profiles": (75, 750),
}
SCOPES = {
    "get_lists": {"lists:read"},
    "get_list": {"lists:read"},
    "get_list_count": {"lists:read"},
    "list_members": {"lists:write", "profiles:write"},
    "bulk_import": {"lists:write", "profiles:write"},
    "bulk_import_job": {"lists:read", "profiles:read"},
    "bulk_subscribe": {"lists:write", "profiles:write", "subscriptions:write"},
    "get_profiles": {"profiles:read"},
}
TITLES = {
    400: ("invalid", "Invalid input."),
    401: ("not_authenticated", "Authentication credentials were not provided."),
    403: ("permission_denied", "You do not have permission to perform this action."),
    404: ("not_found", "Not found."),
    405: ("method_not_allowed", "Method not allowed."),
    415: ("unsupported_media_type", "Unsupported media type."),
    429: ("throttled", "Request was throttled."),
}


def error(status, detail=None, pointer=None, code=None, title=None, headers=None):
    default_code, default_title = TITLES.get(status, ("error", "A server error occurred."))
    item = {
        "id": str(uuid.uuid4()),
        "status": status,
        "code": code or default_code,
        "title": title or default_title,
        "detail": detail or title or default_title,
        "source": {"pointer": pointer or "/data/"},
    }
    return json_response(status, {"errors": [item]}, headers, content_type=JSONAPI)


def _has(scopes, needed):
    """A key's scopes cover `needed`: `x:write` and `x:full` include `x:read`, `x:full` includes `x:write`."""
    if scopes is None:
        return True
    for scope in needed:
        resource, _, level = scope.partition(":")
        allowed = {f"{resource}:full"} | ({f"{resource}:write"} if level == "read" else set())
        if scope not in scopes and not (allowed & scopes):
            return False
    return True


class Klaviyo(Partner):
    name = "klaviyo"

    def reset(self):
        super().reset()
        self.keys = {}  # private key -> {"scopes": set | None, "revoked": bool}
        self.lists = {}  # list id -> {"name", "opt_in_process", "members": [profile id, ...], "pending": [...]}
        self.profiles = {}  # profile id -> {"email", "phone_number", "external_id", "subscriptions": {...}}
        self.jobs = {}  # bulk import job id -> job attributes
        self.by_identifier = {}  # ("email", value) -> profile id
        self.limits = None  # None: each endpoint's documented limits; else (burst, steady) for every endpoint
        self.windows = {}  # rate class -> [second, count in second, minute, count in minute]

    def dump(self):
        return {
            "keys": {
                k: {"scopes": None if v["scopes"] is None else sorted(v["scopes"]), "revoked": v["revoked"]}
                for k, v in self.keys.items()
            },
            "lists": self.lists,
            "profiles": self.profiles,
            "jobs": self.jobs,
        }

    def load(self, state):
        keys = {
            k: {"scopes": None if v["scopes"] is None else set(v["scopes"]), "revoked": bool(v["revoked"])}
            for k, v in state["keys"].items()
        }
        lists = {
            i: {**v, "members": list(v["members"]), "pending": list(v["pending"])} for i, v in state["lists"].items()
        }
        self.keys, self.lists = keys, lists
        self.profiles, self.jobs = dict(state["profiles"]), dict(state["jobs"])
        self.by_identifier = {
            (field, profile[field]): profile_id
            for profile_id, profile in self.profiles.items()
            for field in ("email", "phone_number", "external_id")
            if profile.get(field)
        }

    # --- control ---------------------------------------------------------------------------------------------
    def add_key(self, api_key, scopes=None):
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("'api_key' is required.")
        if scopes is not None and (not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)):
            raise ValueError("'scopes' must be a list of scopes such as 'lists:write'.")
        with self.lock:
            self.keys[api_key] = {"scopes": None if scopes is None else set(scopes), "revoked": False}
        return {"api_key": api_key, "scopes": "full access" if scopes is None else sorted(scopes)}

    def add_list(self, list_id, name=None, opt_in_process="single_opt_in"):
        if not isinstance(list_id, str) or not list_id:
            raise ValueError("'list_id' is required.")
        if opt_in_process not in ("single_opt_in", "double_opt_in"):
            raise ValueError("'opt_in_process' must be 'single_opt_in' or 'double_opt_in'.")
        with self.lock:
            self.lists[list_id] = {
                "name": name or list_id,
                "opt_in_process": opt_in_process,
                "members": [],
                "pending": [],
                "created": time.time(),
            }
        return {"list_id": list_id, "opt_in_process": opt_in_process}

    def delete_list(self, list_id):
        with self.lock:
            return self.lists.pop(list_id, None) is not None

    def list_state(self, list_id):
        with self.lock:
            klist = self.lists.get(list_id)
            if klist is None:
                return None
            return {
                "profile_count": len(klist["members"]),
                "members": {p: self._identifiers(p) for p in klist["members"]},
                "pending": {p: self._identifiers(p) for p in klist["pending"]},
            }

    def confirm(self, list_id, email):
        """The person clicks the double opt-in confirmation: a pending profile joins the list."""
        with self.lock:
            klist = self.lists.get(list_id)
            profile_id = self._find("email", email)
            if klist is None or profile_id not in klist["pending"]:
                raise ValueError(f"{email} has no pending confirmation for list '{list_id}'.")
            klist["pending"].remove(profile_id)
            klist["members"].append(profile_id)
        return {"list_id": list_id, "confirmed": email}

    def set_limits(self, burst, steady):
        if burst is None and steady is None:
            with self.lock:
                self.limits, self.windows = None, {}
            return {"limits": "documented"}
        for value, name in ((burst, "burst"), (steady, "steady")):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"'{name}' must be a positive integer (or both null for the documented limits).")
        with self.lock:
            self.limits, self.windows = (burst, steady), {}
        return {"burst": burst, "steady": steady}

    def revoke(self, credential):
        with self.lock:
            key = self.keys.get(credential)
            if key is None:
                return False
            key["revoked"] = True
            return True

    def control_routes(self):
        return [
            ("POST", r"keys", control_body(lambda b: self.add_key(b.get("api_key"), b.get("scopes")))),
            (
                "POST",
                r"lists",
                control_body(
                    lambda b: self.add_list(b.get("list_id"), b.get("name"), b.get("opt_in_process") or "single_opt_in")
                ),
            ),
            ("GET", r"lists/(?P<list_id>[^/]+)", lambda r, list_id: found(self.list_state(list_id), "list", list_id)),
            ("DELETE", r"lists/(?P<list_id>[^/]+)", lambda r, list_id: self._deleted(list_id)),
            ("POST", r"confirm", control_body(lambda b: self.confirm(b.get("list_id"), b.get("email")))),
            ("POST", r"rate_limits", control_body(lambda b: self.set_limits(b.get("burst"), b.get("steady")))),
        ]

    def _deleted(self, list_id):
        if not self.delete_list(list_id):
            return json_response(404, {"error": f"No list '{list_id}' in the sandbox."})
        return json_response(200, {"deleted": list_id})

    def seed_demo(self, base):
        if DEMO["api_key"] not in self.keys:
            self.add_key(DEMO["api_key"])
        if DEMO["list_id"] not in self.lists:
            self.add_list(DEMO["list_id"], DEMO["name"])
        return {**DEMO, "base_url": f"{base}/klaviyo"}

    def demo_summary(self, demo):
        return f"private API key {demo['api_key']}, list {demo['list_id']}"

    def index(self, base):
        return {"prefix": f"{base}/klaviyo", "stands_for": "https://a.klaviyo.com"}

    def error_response(self, status, retry_after=None):
        detail = None
        if status == 429:
            wait = 1 if retry_after is None else max(0, round(float(retry_after)))
            detail = f"Request was throttled. Expected available in {wait} second{'' if wait == 1 else 's'}."
        return error(status, detail, headers=retry_after_header(retry_after))

    # --- admission: key, revision ----------------------------------------------------------------------------
    def admit(self, request):
        scheme, _, key = (request.headers.get("Authorization") or "").strip().partition(" ")
        key = key.strip() if scheme == "Klaviyo-API-Key" else ""
        record = self.keys.get(key)
        if not key:
            return error(401)
        if record is None or record["revoked"]:
            return error(401, "Incorrect authentication credentials.", title="Incorrect authentication credentials.")
        revision = request.headers.get("revision")
        if not revision:
            return error(400, "The revision header is required.", code="invalid", pointer="/header/revision")
        match = REVISION_RE.match(revision.strip())
        if not match:
            return error(
                400, f"'{revision}' is not a valid revision: expected YYYY-MM-DD[.suffix].", pointer="/header/revision"
            )
        if match.group(1) < FIRST_REVISION:
            return error(404, "No valid revisions found for method", pointer="/header/revision")
        request.ctx["klaviyo_scopes"] = record["scopes"]
        return None

    def _rate(self, name):
        """Count a request of rate class `name` in its burst and steady windows; (allowed, headers)."""
        burst, steady = self.limits or LIMITS[name]
        now = time.time()
        second, minute = int(now), int(now // 60)
        with self.lock:
            w = self.windows.get(name)
            if w is None or w[2] != minute:
                w = self.windows[name] = [second, 0, minute, 0]
            if w[0] != second:
                w[0], w[1] = second, 0
            if w[1] >= burst:
                return False, [("Retry-After", "1")]
            if w[3] >= steady:
                return False, [("Retry-After", str(max(1, 60 - int(now % 60))))]
            w[1] += 1
            w[3] += 1
            remaining = steady - w[3]
        reset = str(max(1, 60 - int(now % 60)))
        return True, [
            ("RateLimit-Limit", str(steady)),
            ("RateLimit-Remaining", str(remaining)),
            ("RateLimit-Reset", reset),
        ]

    # --- the API ----------------------------------------------------------------------------------------------
    def handle(self, request):
        path = request.path.rstrip("/")
        params = request.query_params()
        routes = (
            ("GET", r"/api/lists", "get_lists", self._get_lists),
            ("GET", r"/api/lists/([^/]+)", "get_list", self._get_list),
            ("POST", r"/api/lists/([^/]+)/relationships/profiles", "list_members", self._add_members),
            ("DELETE", r"/api/lists/([^/]+)/relationships/profiles", "list_members", self._remove_members),
            ("POST", r"/api/profile-bulk-import-jobs", "bulk_import", self._bulk_import),
            ("GET", r"/api/profile-bulk-import-jobs/([^/]+)", "bulk_import_job", self._get_job),
            ("POST", r"/api/profile-subscription-bulk-create-jobs", "bulk_subscribe", self._bulk_subscribe),
            ("GET", r"/api/profiles", "get_profiles", self._get_profiles),
        )
        for method, pattern, name, handler in routes:
            match = re.fullmatch(pattern, path)
            if match is None:
                continue
            if request.method != method:
                if any(m == request.method and re.fullmatch(p, path) for m, p, _, _ in routes):
                    continue
                return error(405, f'Method "{request.method}" not allowed.')
            if name == "get_list" and "profile_count" in params.get("additional-fields[list]", ""):
                name = "get_list_count"
            allowed, headers = self._rate(name)
            if not allowed:
                wait = int(headers[0][1])
                detail = f"Request was throttled. Expected available in {wait} second{'' if wait == 1 else 's'}."
                return error(429, detail, headers=headers)
            if not _has(request.ctx["klaviyo_scopes"], SCOPES[name]):
                return error(403, headers=headers)
            if method in ("POST", "DELETE") and not (request.headers.get("Content-Type") or "").startswith(
                ("application/vnd.api+json", "application/json")
            ):
                return error(415, "Use the content type application/vnd.api+json.", headers=headers)
            response = handler(request, *match.groups())
            response.headers.extend(headers)
            return response
        return error(404, f"No endpoint at {request.path}.")

    def _body(self, request):
        try:
            body = request.json()
        except BadJSON:
            raise _Invalid("JSON parse error.", "/data/") from None
        if not isinstance(body, dict) or "data" not in body:
            raise _Invalid("'data' is a required property.", "/data/")
        return body["data"]

    def _list_or_404(self, list_id):
        klist = self.lists.get(list_id)
        if klist is None:
            raise _Missing(f"A list with id {list_id} does not exist.")
        return klist

    def _get_lists(self, request):
        with self.lock:
            data = [self._list_resource(i, v, False) for i, v in self.lists.items()]
        return json_response(
            200, {"data": data, "links": {"self": "/api/lists", "next": None, "prev": None}}, content_type=JSONAPI
        )

    def _get_list(self, request, list_id):
        count = "profile_count" in request.query_params().get("additional-fields[list]", "")
        with self.lock:
            klist = self.lists.get(list_id)
            if klist is None:
                return error(404, f"A list with id {list_id} does not exist.")
            return json_response(200, {"data": self._list_resource(list_id, klist, count)}, content_type=JSONAPI)

    @staticmethod
    def _list_resource(list_id, klist, count):
        attributes = {"name": klist["name"], "opt_in_process": klist["opt_in_process"]}
        if count:
            attributes["profile_count"] = len(klist["members"])
        return {"type": "list", "id": list_id, "attributes": attributes, "links": {"self": f"/api/lists/{list_id}"}}

    def _members_request(self, request, list_id):
        data = self._body(request)
        if not isinstance(data, list):
            raise _Invalid("'data' must be an array of profile identifiers.", "/data")
        if len(data) > MAX_LIST_MEMBERS:
            raise _Invalid(
                f"At most {MAX_LIST_MEMBERS} profiles may be given per call; {len(data)} were given.", "/data"
            )
        ids = []
        for i, item in enumerate(data):
            if not isinstance(item, dict) or item.get("type") != "profile" or not isinstance(item.get("id"), str):
                raise _Invalid('Each item must be {"type": "profile", "id": ...}.', f"/data/{i}")
            ids.append(item["id"])
        return ids

    def _add_members(self, request, list_id):
        try:
            ids = self._members_request(request, list_id)
            with self.lock:
                klist = self._list_or_404(list_id)
                for i, profile_id in enumerate(ids):
                    if profile_id not in self.profiles:
                        raise _Invalid(f"Profile {profile_id} does not exist.", f"/data/{i}/id")
                present = set(klist["members"])
                for profile_id in ids:
                    if profile_id in present:
                        self.duplicates += 1
                    else:
                        klist["members"].append(profile_id)
                        present.add(profile_id)
        except _Answer as exc:
            return exc.response()
        return empty_response(204)

    def _remove_members(self, request, list_id):
        try:
            ids = self._members_request(request, list_id)
            with self.lock:
                klist = self._list_or_404(list_id)
                gone = set(ids)
                before = len(klist["members"])
                klist["members"] = [p for p in klist["members"] if p not in gone]
                klist["pending"] = [p for p in klist["pending"] if p not in gone]
                self.duplicates += len(gone) - (before - len(klist["members"]))
        except _Answer as exc:
            return exc.response()
        return empty_response(204)

    def _profile_key(self, attributes, pointer, allow_external=True):
        """The identifier a profile is matched by, checked: (field, value)."""
        for field in ("email", "phone_number", "external_id"):
            value = attributes.get(field)
            if value is None or (field == "external_id" and not allow_external):
                continue
            if not isinstance(value, str) or not value:
                raise _Invalid(f"'{field}' must be a non-empty string.", f"{pointer}/{field}")
            if field == "email" and not EMAIL_RE.match(value):
                raise _Invalid(f"Invalid email address: {value}", f"{pointer}/email")
            if field == "phone_number" and not E164_RE.match(value):
                raise _Invalid(
                    f"Invalid phone number format (Example of a valid format: +12345678901): {value}",
                    f"{pointer}/phone_number",
                )
            return field, value.lower() if field == "email" else value
        wanted = "email, phone_number or external_id" if allow_external else "email or phone_number"
        raise _Invalid(f"One of {wanted} is required.", pointer)

    def _find(self, field, value):
        return self.by_identifier.get((field, value.lower() if field == "email" else value))

    def _upsert(self, field, value):
        """The profile `field` = `value` identifies, created when there is none (the import's upsert)."""
        profile_id = self.by_identifier.get((field, value))
        if profile_id is None:
            profile_id = "01" + uuid.uuid4().hex[:24].upper()
            self.profiles[profile_id] = {"email": None, "phone_number": None, "external_id": None, "subscriptions": {}}
            self.profiles[profile_id][field] = value
            self.by_identifier[(field, value)] = profile_id
        return profile_id

    def _job_profiles(self, request, kind, limit, verb):
        """A bulk job's body and its profiles, refused as Klaviyo does: wrong type, none, or more than the limit."""
        data = self._body(request)
        if not isinstance(data, dict) or data.get("type") != kind:
            raise _Invalid(f"'type' must be '{kind}'.", "/data/type")
        profiles = ((data.get("attributes") or {}).get("profiles") or {}).get("data")
        if not isinstance(profiles, list) or not profiles:
            raise _Invalid("'profiles' is a required property.", "/data/attributes/profiles/data")
        if len(profiles) > limit:
            raise _Invalid(f"At most {limit:,} profiles may be {verb} per request.", "/data/attributes/profiles/data")
        return data, profiles

    def _bulk_import(self, request):
        try:
            if len(request.body) > MAX_IMPORT_BYTES:
                raise _Invalid("The maximum allowed payload size is 5MB.", "/data/")
            data, profiles = self._job_profiles(request, "profile-bulk-import-job", MAX_IMPORT, "imported")
            keys = []
            for i, item in enumerate(profiles):
                pointer = f"/data/attributes/profiles/data/{i}/attributes"
                if not isinstance(item, dict) or item.get("type") != "profile":
                    raise _Invalid('Each profile must be {"type": "profile", "attributes": ...}.', pointer)
                keys.append(self._profile_key(item.get("attributes") or {}, pointer))
            lists = ((data.get("relationships") or {}).get("lists") or {}).get("data") or []
            if len(lists) > 1:
                raise _Invalid("Only one list may be given.", "/data/relationships/lists/data")
            with self.lock:
                klist = self._list_or_404(lists[0].get("id")) if lists else None
                ids = [self._upsert(field, value) for field, value in keys]
                if klist is not None:
                    present = set(klist["members"])
                    for profile_id in ids:
                        if profile_id in present:
                            self.duplicates += 1
                        else:
                            klist["members"].append(profile_id)
                            present.add(profile_id)
                job_id = uuid.uuid4().hex
                now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
                self.jobs[job_id] = {
                    "status": "complete",
                    "created_at": now,
                    "total_count": len(ids),
                    "completed_count": len(ids),
                    "failed_count": 0,
                    "completed_at": now,
                }
        except _Answer as exc:
            return exc.response()
        attributes = {**self.jobs[job_id], "status": "queued", "completed_count": 0, "completed_at": None}
        body = {
            "data": {
                "type": "profile-bulk-import-job",
                "id": job_id,
                "attributes": attributes,
                "links": {"self": f"/api/profile-bulk-import-jobs/{job_id}"},
            }
        }
        return json_response(202, body, content_type=JSONAPI)

    def _get_job(self, request, job_id):
        with self.lock:
            job = self.jobs.get(job_id)
        if job is None:
            return error(404, f"A profile-bulk-import-job with id {job_id} does not exist.")
        return json_response(
            200, {"data": {"type": "profile-bulk-import-job", "id": job_id, "attributes": job}}, content_type=JSONAPI
        )

    def _bulk_subscribe(self, request):
        try:
            data, profiles = self._job_profiles(
                request, "profile-subscription-bulk-create-job", MAX_SUBSCRIBE, "subscribed"
            )
            entries = []
            for i, item in enumerate(profiles):
                pointer = f"/data/attributes/profiles/data/{i}"
                attributes = item.get("attributes") if isinstance(item, dict) else None
                if not isinstance(attributes, dict) or not isinstance(attributes.get("subscriptions"), dict):
                    raise _Invalid("'subscriptions' is a required property.", f"{pointer}/attributes/subscriptions")
                profile_id = item.get("id")
                key = None if profile_id else self._profile_key(attributes, f"{pointer}/attributes", False)
                entries.append((profile_id, key, attributes["subscriptions"], f"{pointer}/id"))
            list_ref = (((data.get("relationships") or {}).get("list") or {}).get("data")) or {}
            with self.lock:
                klist = self._list_or_404(list_ref.get("id")) if list_ref else None
                for profile_id, _, _, pointer in entries:
                    if profile_id and profile_id not in self.profiles:
                        raise _Invalid(f"Profile {profile_id} does not exist.", pointer)
                for profile_id, key, subscriptions, _ in entries:
                    profile_id = profile_id or self._upsert(*key)
                    self.profiles[profile_id]["subscriptions"] = _consent(subscriptions)
                    if klist is None:
                        continue
                    target = "pending" if klist["opt_in_process"] == "double_opt_in" else "members"
                    if profile_id in klist["members"] or profile_id in klist[target]:
                        self.duplicates += 1
                    else:
                        klist[target].append(profile_id)
        except _Answer as exc:
            return exc.response()
        return empty_response(202)

    def _get_profiles(self, request):
        params = request.query_params()
        try:
            size = int(params.get("page[size]", "20"))
        except ValueError:
            size = 0
        if not 1 <= size <= MAX_PAGE:
            return error(400, f"page[size] must be between 1 and {MAX_PAGE}.", pointer=None, code="invalid")
        wanted = _parse_filter(params.get("filter", ""))
        if wanted is None:
            return error(400, "Invalid filter provided.", code="invalid")
        field, values = wanted
        if len(values) > MAX_FILTER_VALUES:
            return error(400, f"At most {MAX_FILTER_VALUES} values may be given to any().", code="invalid")
        with self.lock:
            if field == "id":
                matched = [p for p in values if p in self.profiles]
            else:
                matched = [p for p in (self._find(field, v) for v in values) if p is not None]
            data = [{"type": "profile", "id": p, "attributes": self._identifiers(p)} for p in matched[:size]]
        return json_response(
            200, {"data": data, "links": {"self": "/api/profiles", "next": None, "prev": None}}, content_type=JSONAPI
        )

    def _identifiers(self, profile_id):
        profile = self.profiles.get(profile_id) or {}
        return {k: profile.get(k) for k in ("email", "phone_number", "external_id")}


def _consent(subscriptions):
    consent = {}
    for channel in ("email", "sms"):
        marketing = (subscriptions.get(channel) or {}).get("marketing") if isinstance(subscriptions, dict) else None
        if isinstance(marketing, dict) and marketing.get("consent") == "SUBSCRIBED":
            consent[channel] = "SUBSCRIBED"
    return consent


def _parse_filter(text):
    """`equals(email,"a@b.c")` or `any(email,["a@b.c","d@e.f"])` on id, email, phone_number or external_id."""
    match = re.fullmatch(r"(equals|any)\((id|email|phone_number|external_id),(.*)\)", text.strip())
    if match is None:
        return None
    op, field, raw = match.groups()
    try:
        value = json.loads(raw.replace("'", '"'))
    except ValueError:
        return None
    if op == "equals":
        return (field, [value]) if isinstance(value, str) else None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return field, value
    return None


class _Answer(Exception):
    status = 400

    def __init__(self, detail, pointer=None):
        super().__init__(detail)
        self.detail, self.pointer = detail, pointer

    def response(self):
        return error(self.status, self.detail, self.pointer)


class _Invalid(_Answer):
    status = 400


class _Missing(_Answer):
    status = 404
