"""Google Ads API, Customer Match through offline user data jobs (REST), under ``/google_ads/``:
``{base}/google_ads/v24/customers/1234567890/offlineUserDataJobs:create`` stands for
``https://googleads.googleapis.com/v24/customers/1234567890/offlineUserDataJobs:create``, and
``{base}/google_ads/token`` for Google's OAuth 2.0 token endpoint ``https://oauth2.googleapis.com/token``.

Covered: ``POST /token`` (``grant_type=refresh_token``), ``POST /v{N}/customers/{id}/offlineUserDataJobs:create``
(``job``, ``validateOnly``), ``POST /v{N}/customers/{id}/offlineUserDataJobs/{job}:addOperations`` (``operations``,
``enablePartialFailure``), ``POST …/{job}:run`` and ``POST /v{N}/customers/{id}/googleAds:search`` (a small
GAQL: ``SELECT fields FROM customer | user_list | offline_user_data_job [WHERE field = value AND …]``). Errors
are Google's: ``{"error": {"code", "message", "status", "details": [GoogleAdsFailure {"errors": [{"errorCode":
{...}, "message", "location"}], "requestId"}]}}``. Each rule is cited in docs/partners/google_ads.md.

A job moves PENDING → (run) RUNNING → SUCCESS or FAILED. It finishes when it is next read after
``processing_seconds`` (0 by default), or, while ``hold`` is on, only when a test finishes it.
"""

import re
import secrets
import time
from urllib.parse import parse_qs

from outputs.sandbox.common import Partner, control_body, found, json_response, retry_after_header

SCOPE = "https://www.googleapis.com/auth/adwords"
MAX_IDENTIFIERS = 100_000  # "at most 100,000 identifiers across all of the UserData objects in the operations"
MAX_PER_USER = 20  # user identifiers in one UserData
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
HASHED = ("hashedEmail", "hashedPhoneNumber")
KEY_FIELDS = {
    "CONTACT_INFO": ("hashedEmail", "hashedPhoneNumber", "addressInfo"),
    "CRM_ID": ("thirdPartyUserId",),
    "MOBILE_ADVERTISING_ID": ("mobileId",),
}
CONSENT = ("UNSPECIFIED", "UNKNOWN", "GRANTED", "DENIED")
DEMO = {
    "developer_token": "demo-developer-token",
    "client_id": "demo-client.apps.googleusercontent.com",
    "client_secret": "demo-client-secret",
    "refresh_token": "1//demo-refresh-token",
    "customer_id": "1234567890",
    "user_list_id": "5550001",
}
# GAQL: the fields each resource answers, as (snake_case path, how to read it from the resource's state).
FIELDS = {
    "customer": {
        "customer.id": lambda c: c["id"],
        "customer.descriptive_name": lambda c: c["name"],
        "customer.resource_name": lambda c: f"customers/{c['id']}",
    },
    "user_list": {
        "user_list.id": lambda u: u["id"],
        "user_list.name": lambda u: u["name"],
        "user_list.type": lambda u: u["type"],
        "user_list.resource_name": lambda u: f"customers/{u['customer']}/userLists/{u['id']}",
        "user_list.crm_based_user_list.upload_key_type": lambda u: u["upload_key_type"],
        "user_list.size_for_display": lambda u: str(len(u["members"])),
        "user_list.size_for_search": lambda u: str(len(u["members"])),
    },
    "offline_user_data_job": {
        "offline_user_data_job.id": lambda j: j["id"],
        "offline_user_data_job.resource_name": lambda j: f"customers/{j['customer']}/offlineUserDataJobs/{j['id']}",
        "offline_user_data_job.status": lambda j: j["status"],
        "offline_user_data_job.type": lambda j: "CUSTOMER_MATCH_USER_LIST",
        "offline_user_data_job.failure_reason": lambda j: j["failure_reason"],
        "offline_user_data_job.operation_metadata.match_rate_range": lambda j: j["match_rate_range"],
    },
}
QUERY_RE = re.compile(
    r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<resource>\w+)(?:\s+WHERE\s+(?P<where>.+?))?\s*$", re.I | re.S
)


def camel(name):
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def failure(http_status, rpc_status, message, errors):
    """Google's error answer: the RPC status and a GoogleAdsFailure of ``errors`` ((category, code, message), or
    GoogleAdsError objects as they are)."""
    items = [e if isinstance(e, dict) else {"errorCode": {e[0]: e[1]}, "message": e[2]} for e in errors]
    details = [
        {
            "@type": "type.googleapis.com/google.ads.googleads.v24.errors.GoogleAdsFailure",
            "errors": items,
            "requestId": secrets.token_urlsafe(16),
        }
    ]
    body = {"error": {"code": http_status, "message": message, "status": rpc_status, "details": details}}
    return json_response(http_status, body)


def invalid(category, code, text):
    return failure(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", [(category, code, text)])


def denied(category, code, text):
    return failure(403, "PERMISSION_DENIED", "The caller does not have permission", [(category, code, text)])


def oauth_error(status, error, description):
    return json_response(status, {"error": error, "error_description": description})


def unauthenticated(code, text):
    return failure(
        401,
        "UNAUTHENTICATED",
        "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other "
        "valid authentication credential.",
        [("authenticationError", code, text)],
    )


def scope_insufficient():
    body = {
        "error": {
            "code": 403,
            "message": "Request had insufficient authentication scopes.",
            "status": "PERMISSION_DENIED",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                    "domain": "googleapis.com",
                    "metadata": {"service": "googleads.googleapis.com", "method": "google.ads.googleads"},
                }
            ],
        }
    }
    return json_response(403, body)


class GoogleAds(Partner):
    name = "google_ads"

    def reset(self):
        super().reset()
        self.clients = {}  # client_id -> client_secret
        self.grants = {}  # refresh token -> {"client_id", "customers": [...], "scope", "revoked"}
        self.access = {}  # access token -> {"refresh_token", "expires"}
        self.developer_tokens = {}  # token -> {"approved"}
        self.customers = {}  # id -> {"id", "name", "manager", "terms_accepted", "eligible"}
        self.lists = {}  # id -> {"id", "customer", "name", "type", "upload_key_type", "members": {value: field}}
        self.jobs = {}  # id -> {"id", "customer", "list", "status", "operations", "failure_reason", ...}
        self.processing_seconds = 0.0
        self.hold = False
        self.quota = {}  # developer token -> requests a minute
        self.calls = {}  # developer token -> times of its requests within the last minute
        self.next_job = 1000

    def dump(self):
        return {k: getattr(self, k) for k in self._STATE}

    _STATE = (
        "clients",
        "grants",
        "access",
        "developer_tokens",
        "customers",
        "lists",
        "jobs",
        "processing_seconds",
        "hold",
        "quota",
        "calls",
        "next_job",
    )

    def load(self, state):
        for key in self._STATE:
            setattr(self, key, state[key])

    # --- control -------------------------------------------------------------------------------------------
    def add_account(self, body):
        """A Google account's refresh token for an OAuth client, a developer token and the customers it reaches."""
        required = ("developer_token", "client_id", "client_secret", "refresh_token", "customer_id")
        for key in required:
            if not isinstance(body.get(key), str) or not body[key]:
                raise ValueError(f"'{key}' is required.")
        customer = re.sub(r"\D", "", body["customer_id"])
        manager = re.sub(r"\D", "", body.get("manager_id") or "")
        with self.lock:
            self.clients[body["client_id"]] = body["client_secret"]
            self.developer_tokens[body["developer_token"]] = {"approved": bool(body.get("approved", True))}
            for cid in filter(None, (customer, manager)):
                self.customers.setdefault(
                    cid,
                    {
                        "id": cid,
                        "name": f"Sandbox customer {cid}",
                        "manager": None,
                        "terms_accepted": True,
                        "eligible": True,
                    },
                )
            c = self.customers[customer]
            c.update(terms_accepted=bool(body.get("terms_accepted", True)), eligible=bool(body.get("eligible", True)))
            if manager:
                c["manager"] = manager
            self.grants[body["refresh_token"]] = {
                "client_id": body["client_id"],
                "customers": [manager or customer],  # through a manager, the user reaches the manager's clients
                "scope": body.get("scope") or SCOPE,
                "revoked": False,
            }
        return {"refresh_token": body["refresh_token"], "customer_id": customer, "manager_id": manager or None}

    def add_list(self, body):
        list_id, customer = str(body.get("user_list_id") or ""), re.sub(r"\D", "", str(body.get("customer_id") or ""))
        if not list_id.isdigit():
            raise ValueError("'user_list_id' must be a numeric ID such as '5550001'.")
        if customer not in self.customers:
            raise ValueError("'customer_id' must be a customer added with /_sandbox/google_ads/accounts.")
        key_type = body.get("upload_key_type") or "CONTACT_INFO"
        if key_type not in KEY_FIELDS:
            raise ValueError(f"'upload_key_type' must be one of {', '.join(KEY_FIELDS)}.")
        with self.lock:
            existing = self.lists.get(list_id)
            self.lists[list_id] = {
                "id": list_id,
                "customer": customer,
                "name": body.get("name") or f"List {list_id}",
                "type": body.get("type") or "CRM_BASED",
                "upload_key_type": key_type,
                "members": existing["members"] if existing else {},
            }
        return {k: v for k, v in self.lists[list_id].items() if k != "members"}

    def inspect(self, list_id):
        with self.lock:
            user_list = self.lists.get(list_id)
            if user_list is None:
                return None
            jobs = [self._shown_job(j) for j in self.jobs.values() if j["list"] == list_id]
            return {
                **user_list,
                "members": dict(user_list["members"]),
                "count": len(user_list["members"]),
                "jobs": jobs,
            }

    def set_processing(self, body):
        seconds = body.get("seconds", 0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError("'seconds' must be a number of at least 0.")
        with self.lock:
            self.processing_seconds, self.hold = float(seconds), bool(body.get("hold", False))
        return {"seconds": self.processing_seconds, "hold": self.hold}

    def finish_jobs(self, body):
        status = body.get("status", "SUCCESS")
        if status not in ("SUCCESS", "FAILED"):
            raise ValueError("'status' must be SUCCESS or FAILED.")
        with self.lock:
            done = [
                self._finish(j, status, body.get("failure_reason"))
                for j in self.jobs.values()
                if j["status"] == "RUNNING"
            ]
        return {"finished": done}

    def set_quota(self, body):
        token, per_minute = body.get("developer_token"), body.get("requests_per_minute")
        if not token:
            raise ValueError("'developer_token' is required.")
        if per_minute is not None and (
            isinstance(per_minute, bool) or not isinstance(per_minute, int) or per_minute < 0
        ):
            raise ValueError("'requests_per_minute' must be a whole number of at least 0, or null for no limit.")
        with self.lock:
            self.quota[token] = per_minute
        return {"developer_token": token, "requests_per_minute": per_minute}

    def revoke(self, credential):
        with self.lock:
            grant = self.grants.get(credential)
            if grant is None:
                return False
            grant["revoked"] = True
            for held in self.access.values():
                if held["refresh_token"] == credential:
                    held["expires"] = 0
            return True

    def control_routes(self):
        return [
            ("POST", r"accounts", control_body(self.add_account)),
            ("POST", r"lists", control_body(self.add_list)),
            ("POST", r"processing", control_body(self.set_processing)),
            ("POST", r"jobs/finish", control_body(self.finish_jobs)),
            ("POST", r"quota", control_body(self.set_quota)),
            ("GET", r"lists/(?P<ident>[^/]+)", lambda r, ident: found(self.inspect(ident), "user list", ident)),
        ]

    def seed_demo(self, base):
        if DEMO["refresh_token"] not in self.grants:
            self.add_account(DEMO)
        if DEMO["user_list_id"] not in self.lists:
            self.add_list({**DEMO, "name": "Audience Relay demo"})
        return {**DEMO, "base_url": f"{base}/google_ads"}

    def demo_summary(self, demo):
        return (
            f"customer {demo['customer_id']}, user list {demo['user_list_id']}, refresh token {demo['refresh_token']}"
        )

    def index(self, base):
        return {
            "prefix": f"{base}/google_ads",
            "stands_for": "https://googleads.googleapis.com",
            "token": f"{base}/google_ads/token",
        }

    def error_response(self, status, retry_after=None):
        headers = retry_after_header(retry_after)
        if status == 429:
            text = "Resource has been exhausted (e.g. check quota)."
            response = failure(429, "RESOURCE_EXHAUSTED", text, [("quotaError", "RESOURCE_EXHAUSTED", text)])
        elif status >= 500:
            text = "Internal error encountered."
            response = failure(status, "INTERNAL", text, [("internalError", "INTERNAL_ERROR", text)])
        elif status == 401:
            response = unauthenticated("OAUTH_TOKEN_INVALID", "Oauth token is invalid.")
        elif status == 403:
            response = denied(
                "authorizationError", "USER_PERMISSION_DENIED", "User doesn't have permission to access customer."
            )
        else:
            response = invalid("requestError", "INVALID_INPUT", "The input is invalid.")
        response.headers.extend(headers)
        return response

    # --- routing -------------------------------------------------------------------------------------------
    def handle(self, request):
        if request.path == "/token":
            return self._token(request) if request.method == "POST" else json_response(405, {"error": "POST only"})
        match = re.fullmatch(r"/v\d+/customers/(?P<cid>\d+)/(?P<rest>.+)", request.path)
        if not match or request.method != "POST":
            return json_response(404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}})
        refusal = self._authorize(request, match["cid"])
        if refusal is not None:
            return refusal
        try:
            body = request.json() if request.body else {}
        except ValueError:
            return invalid("requestError", "INVALID_INPUT", "Invalid JSON payload received.")
        rest = match["rest"]
        if rest == "offlineUserDataJobs:create":
            return self._create(match["cid"], body)
        if rest == "googleAds:search":
            return self._search(match["cid"], body)
        job_match = re.fullmatch(r"offlineUserDataJobs/(?P<job>\d+):(?P<verb>addOperations|run)", rest)
        if job_match:
            job = self.jobs.get(job_match["job"])
            if job is None or job["customer"] != match["cid"]:
                return failure(
                    404,
                    "NOT_FOUND",
                    "Requested entity was not found.",
                    [("mutateError", "RESOURCE_NOT_FOUND", "The requested resource was not found.")],
                )
            if job_match["verb"] == "run":
                return self._run(job)
            return self._add_operations(job, body)
        return json_response(404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}})

    def _token(self, request):
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "refresh_token":
            return oauth_error(400, "unsupported_grant_type", "Invalid grant_type: " + form.get("grant_type", ""))
        if self.clients.get(form.get("client_id")) != form.get("client_secret") or not form.get("client_secret"):
            return oauth_error(401, "invalid_client", "Unauthorized")
        grant = self.grants.get(form.get("refresh_token"))
        if grant is None or grant["revoked"] or grant["client_id"] != form.get("client_id"):
            return oauth_error(400, "invalid_grant", "Token has been expired or revoked.")
        token = "ya29." + secrets.token_urlsafe(24)
        with self.lock:
            self.access[token] = {"refresh_token": form["refresh_token"], "expires": time.time() + 3599}
        return json_response(
            200, {"access_token": token, "expires_in": 3599, "scope": grant["scope"], "token_type": "Bearer"}
        )

    def _authorize(self, request, cid):
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        held = self.access.get(token.strip()) if scheme.lower() == "bearer" else None
        if held is None:
            return unauthenticated("OAUTH_TOKEN_INVALID", "Oauth token is invalid.")
        if held["expires"] <= time.time():
            return unauthenticated("OAUTH_TOKEN_EXPIRED", "Oauth token is expired.")
        grant = self.grants[held["refresh_token"]]
        if SCOPE not in grant["scope"].split():
            return scope_insufficient()
        developer = request.headers.get("developer-token")
        if not developer:
            return unauthenticated("DEVELOPER_TOKEN_PARAMETER_MISSING", "The developer token parameter is missing.")
        if developer not in self.developer_tokens:
            return denied("authenticationError", "DEVELOPER_TOKEN_INVALID", "The developer token is not valid.")
        if not self.developer_tokens[developer]["approved"]:
            return denied(
                "authorizationError",
                "DEVELOPER_TOKEN_NOT_APPROVED",
                "The developer token is only approved for use with test accounts.",
            )
        throttled = self._count_call(developer)
        if throttled is not None:
            return throttled
        customer = self.customers.get(cid)
        login = re.sub(r"\D", "", request.headers.get("login-customer-id") or "")
        reachable = set(grant["customers"])
        through = customer is not None and customer["manager"] and login == customer["manager"] in reachable
        if customer is None or not (cid in reachable and login in ("", cid) or through):
            return denied(
                "authorizationError",
                "USER_PERMISSION_DENIED",
                "User doesn't have permission to access customer. Note: If you're accessing a client customer, the "
                "manager's customer id must be set in the 'login-customer-id' header.",
            )
        return None

    def _count_call(self, developer):
        with self.lock:
            limit = self.quota.get(developer)
            if limit is None:
                return None
            now = time.time()
            calls = [t for t in self.calls.get(developer, []) if t > now - 60]
            if len(calls) >= limit:
                wait = max(1, round(calls[0] + 60 - now)) if calls else 60
                self.calls[developer] = calls
                text = f"Too many requests. Retry in {wait} seconds."
                quota = {
                    "rateScope": "DEVELOPER",
                    "rateName": "Requests per developer token per minute",
                    "retryDelay": f"{wait}s",
                }
                error = {
                    "errorCode": {"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"},
                    "message": text,
                    "details": {"quotaErrorDetails": quota},
                }
                return failure(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).", [error])
            calls.append(now)
            self.calls[developer] = calls
            return None

    # --- jobs ----------------------------------------------------------------------------------------------
    def _create(self, cid, body):
        job = body.get("job")
        if not isinstance(job, dict) or job.get("type") != "CUSTOMER_MATCH_USER_LIST":
            return invalid(
                "offlineUserDataJobError",
                "INVALID_USER_LIST_TYPE" if isinstance(job, dict) else "UNKNOWN",
                "The job must be of type CUSTOMER_MATCH_USER_LIST.",
            )
        metadata = job.get("customerMatchUserListMetadata") or {}
        match = re.fullmatch(rf"customers/{cid}/userLists/(\d+)", str(metadata.get("userList") or ""))
        user_list = self.lists.get(match[1]) if match else None
        if user_list is None or user_list["customer"] != cid:
            return invalid(
                "offlineUserDataJobError", "INVALID_USER_LIST_ID", "The user list ID provided for the job is invalid."
            )
        if user_list["type"] != "CRM_BASED":
            return invalid(
                "offlineUserDataJobError",
                "INVALID_USER_LIST_TYPE",
                "Type of the user list is not applicable for the job.",
            )
        consent = metadata.get("consent") or {}
        if not isinstance(consent, dict) or any(v not in CONSENT for v in consent.values()):
            return invalid("requestError", "INVALID_ENUM_VALUE", "Invalid consent status.")
        customer = self.customers[cid]
        if not customer["eligible"]:
            return denied(
                "notAllowlistedError",
                "CUSTOMER_NOT_ALLOWLISTED_FOR_THIS_FEATURE",
                "Customer is not on the allow-list for this feature.",
            )
        if not customer["terms_accepted"]:
            return invalid(
                "offlineUserDataJobError",
                "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
                "Customer has not accepted the customer data terms in the conversion settings page.",
            )
        if body.get("validateOnly"):
            return json_response(200, {})
        with self.lock:
            self.next_job += 1
            job_id = str(self.next_job)
            self.jobs[job_id] = {
                "id": job_id,
                "customer": cid,
                "list": user_list["id"],
                "status": "PENDING",
                "operations": [],
                "failure_reason": "UNSPECIFIED",
                "match_rate_range": "UNSPECIFIED",
                "run_at": None,
            }
        return json_response(200, {"resourceName": f"customers/{cid}/offlineUserDataJobs/{job_id}"})

    def _add_operations(self, job, body):
        if job["status"] != "PENDING":
            return invalid(
                "offlineUserDataJobError",
                "JOB_ALREADY_STARTED",
                "Operations cannot be added to a job that has already started.",
            )
        operations = body.get("operations")
        if not isinstance(operations, list) or not operations:
            return invalid("fieldError", "REQUIRED", "The required field was not present.")
        total = sum(
            len((op.get("create") or op.get("remove") or {}).get("userIdentifiers") or [])
            for op in operations
            if isinstance(op, dict)
        )
        if total > MAX_IDENTIFIERS:
            return invalid(
                "collectionSizeError",
                "TOO_MANY",
                f"Too many user identifiers in this request: {total}; at most {MAX_IDENTIFIERS:,}.",
            )
        user_list = self.lists[job["list"]]
        errors, kept, seen = [], [], job.get("kind")
        for index, op in enumerate(operations):
            problem = self._operation_problem(op, user_list, seen)
            if problem:
                category, code, text, path = problem
                location = {"fieldPathElements": [{"fieldName": "operations", "index": index}, *path]}
                errors.append({"errorCode": {category: code}, "message": text, "location": location})
            else:
                kept.append(op)
                seen = seen or next((k for k in ("create", "remove") if k in op), None)
        if errors and not body.get("enablePartialFailure"):
            return failure(400, "INVALID_ARGUMENT", "Request contains an invalid argument.", errors)
        with self.lock:
            job["operations"].extend(kept)
            if seen:
                job["kind"] = seen
        if not errors:
            return json_response(200, {})
        details = [{"@type": "type.googleapis.com/google.ads.googleads.v24.errors.GoogleAdsFailure", "errors": errors}]
        message = f"Multiple errors in ‘details’. First error: {errors[0]['message']}"
        return json_response(200, {"partialFailureError": {"code": 3, "message": message, "details": details}})

    @staticmethod
    def _operation_problem(op, user_list, seen):
        if not isinstance(op, dict) or len([k for k in ("create", "remove", "removeAll") if k in op]) != 1:
            return "fieldError", "REQUIRED", "Exactly one of create, remove or removeAll is required.", []
        kind = "create" if "create" in op else "remove" if "remove" in op else "removeAll"
        if kind != "removeAll" and seen not in (None, kind):
            return (
                "offlineUserDataJobError",
                "INVALID_OPERATION_ORDER",
                "Create and remove operations cannot be mixed in the same job.",
                [{"fieldName": kind}],
            )
        identifiers = (op.get(kind) or {}).get("userIdentifiers") if kind != "removeAll" else None
        if kind == "removeAll":
            return None
        if not isinstance(identifiers, list) or not identifiers:
            return (
                "offlineUserDataJobError",
                "MISSING_USER_IDENTIFIER",
                "User identifier is missing.",
                [{"fieldName": kind}],
            )
        if len(identifiers) > MAX_PER_USER:
            return (
                "collectionSizeError",
                "TOO_MANY",
                "Too many user identifiers in one UserData.",
                [{"fieldName": kind}, {"fieldName": "user_identifiers"}],
            )
        allowed = KEY_FIELDS[user_list["upload_key_type"]]
        for i, identifier in enumerate(identifiers):
            path = [{"fieldName": kind}, {"fieldName": "user_identifiers", "index": i}]
            keys = (
                [
                    k
                    for k in identifier
                    if k in ("hashedEmail", "hashedPhoneNumber", "mobileId", "thirdPartyUserId", "addressInfo")
                ]
                if isinstance(identifier, dict)
                else []
            )
            if len(keys) != 1:
                return "offlineUserDataJobError", "MISSING_USER_IDENTIFIER", "User identifier is missing.", path
            key = keys[0]
            if key not in allowed:
                return (
                    "offlineUserDataJobError",
                    "INCOMPATIBLE_UPLOAD_KEY_TYPE",
                    "The user identifier is not compatible with the upload key type of the user list.",
                    path,
                )
            value = identifier[key]
            if key in HASHED and not (isinstance(value, str) and SHA256_RE.match(value)):
                return (
                    "offlineUserDataJobError",
                    "INVALID_SHA256_FORMAT",
                    "The SHA256 encoded value is malformed.",
                    [*path, {"fieldName": camel_to_snake(key)}],
                )
            if not isinstance(value, str) or not value.strip():
                return "offlineUserDataJobError", "MISSING_USER_IDENTIFIER", "User identifier is missing.", path
        return None

    def _run(self, job):
        if job["status"] != "PENDING":
            return invalid("offlineUserDataJobError", "JOB_ALREADY_STARTED", "The job has already been started.")
        with self.lock:
            job["status"], job["run_at"] = "RUNNING", time.time()
            if not self.hold and self.processing_seconds == 0:
                self._finish(job, "SUCCESS", None)
        name = f"customers/{job['customer']}/operations/{secrets.token_hex(8)}"
        return json_response(
            200,
            {
                "name": name,
                "metadata": {
                    "@type": "type.googleapis.com/google.ads.googleads.v24.resources.OfflineUserDataJobMetadata"
                },
            },
        )

    def _finish(self, job, status, reason):
        """Apply a job's operations to its list (the caller holds the lock)."""
        job["status"] = status
        if status == "FAILED":
            job["failure_reason"] = reason or "UNKNOWN"
            return job["id"]
        members = self.lists[job["list"]]["members"]
        for op in job["operations"]:
            if "removeAll" in op:
                members.clear()
                continue
            kind = "create" if "create" in op else "remove"
            for identifier in op[kind]["userIdentifiers"]:
                ((key, value),) = ((k, v) for k, v in identifier.items())
                if kind == "create":
                    if value in members:
                        self.duplicates += 1
                    members[value] = key
                elif members.pop(value, None) is None:
                    self.duplicates += 1
        job["match_rate_range"] = "MATCH_RANGE_91_TO_100" if job["operations"] else "MATCH_RANGE_LESS_THAN_20"
        return job["id"]

    def _tick(self):
        """Jobs whose processing time has passed finish when read (the caller holds the lock)."""
        if self.hold:
            return
        for job in self.jobs.values():
            if job["status"] == "RUNNING" and job["run_at"] + self.processing_seconds <= time.time():
                self._finish(job, "SUCCESS", None)

    # --- GoogleAdsService.Search ------------------------------------------------------------------------------
    def _search(self, cid, body):
        query = body.get("query")
        match = QUERY_RE.match(query or "") if isinstance(query, str) else None
        if not match:
            return invalid(
                "queryError",
                "UNEXPECTED_END_OF_QUERY" if not query else "BAD_VALUE_IN_SELECT_CLAUSE",
                "Error in query: unexpected input.",
            )
        resource = match["resource"]
        fields = FIELDS.get(resource)
        if fields is None:
            return invalid(
                "queryError", "BAD_RESOURCE_TYPE_IN_FROM_CLAUSE", f"Error in query: {resource} is not a resource."
            )
        selected = [f.strip() for f in match["fields"].split(",")]
        for name in selected:
            if name not in fields:
                return invalid("queryError", "UNRECOGNIZED_FIELD", f"Unrecognized field in the query: '{name}'.")
        conditions = []
        for part in re.split(r"\s+AND\s+", match["where"] or "", flags=re.I) if match["where"] else []:
            cond = re.fullmatch(r"\s*([\w.]+)\s*=\s*'?([^']*?)'?\s*", part)
            if not cond or cond[1] not in fields:
                return invalid("queryError", "INVALID_VALUE_WITH_EQUALS_OPERATOR", f"Error in query: {part.strip()}.")
            conditions.append((fields[cond[1]], cond[2]))
        with self.lock:
            self._tick()
            rows = {
                "customer": [self.customers[cid]],
                "user_list": [u for u in self.lists.values() if u["customer"] == cid],
                "offline_user_data_job": [j for j in self.jobs.values() if j["customer"] == cid],
            }[resource]
            results = []
            for row in rows:
                if all(str(read(row)) == value for read, value in conditions):
                    results.append(_nest(resource, {name: fields[name](row) for name in selected}))
        return json_response(200, {"results": results, "fieldMask": ",".join(camel(s) for s in selected)})

    @staticmethod
    def _shown_job(job):
        return {k: v for k, v in job.items() if k != "operations"} | {"operations": len(job["operations"])}


def _nest(resource, values):
    """{"user_list.crm_based_user_list.upload_key_type": v} as {"userList": {"crmBasedUserList": {...}}}."""
    out = {}
    for path, value in values.items():
        parts = [camel(p) for p in path.split(".")]
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def camel_to_snake(name):
    return re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), name)
