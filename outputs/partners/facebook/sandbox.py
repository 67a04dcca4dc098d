"""Facebook Marketing API, Custom Audiences (https://developers.facebook.com/docs/marketing-api/reference/custom-audience/),
under ``/facebook/v{version}/``: ``{base}/facebook/v21.0/123/users`` stands for
``https://graph.facebook.com/v21.0/123/users``.

Covered: ``GET /{audience_id}`` (with ``fields``), ``POST`` and ``DELETE /{audience_id}/users`` (``payload`` with
``schema`` and ``data``, and the required ``session``; at most 10,000 records a request), ``GET /act_{id}``,
``GET /act_{id}/customaudiences`` and ``GET /me``. Errors are Graph API error objects
``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``.

Throttling is Facebook's, not HTTP's: no ``Retry-After``, an error code (80003 for the Custom Audience business
use case) and the ``X-Business-Use-Case-Usage`` header, whose ``estimated_time_to_regain_access`` is in minutes
(https://developers.facebook.com/docs/graph-api/overview/rate-limiting/). A test sets an ad account's calls per
hour (``set_rate_limit``) and moves this emulation's clock (``advance``) instead of waiting.

One module of about 650 lines, on purpose: it is one reading of the Custom Audiences reference, each rule beside
the page it comes from, so that checking it against the docs is reading it top to bottom.
"""

import json
import math
import re
import secrets
import time

from outputs.sandbox.common import Partner, control_body, deleted, found, json_response, retry_after_header

MAX_RECORDS = (
    10_000  # "You can add an unlimited number of records for an audience, but only a maximum of 10000 at a time."
)
VERSION_RE = re.compile(r"^v\d+(\.\d+)?$")
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# Keys whose values must be SHA-256 hashes (single-key schemas and multi-key PII columns) and keys sent raw.
HASHED_KEYS = frozenset(
    (
        "EMAIL_SHA256",
        "PHONE_SHA256",
        "EMAIL",
        "PHONE",
        "FN",
        "LN",
        "FI",
        "GEN",
        "DOBY",
        "DOBM",
        "DOBD",
        "CT",
        "ST",
        "ZIP",
        "COUNTRY",
    )
)

# The demo account (POST /_sandbox/seed/demo).
DEMO = {
    "access_token": "EAAdemo",
    "ad_account_id": "act_1001",
    "audience_id": "23850000000000001",
    "audience_name": "Audience Relay demo",
}
RAW_KEYS = frozenset(("MADID", "MOBILE_ADVERTISER_ID", "EXTERN_ID", "UID", "APPUID", "PAGEUID", "LOOKALIKE_VALUE"))
AUDIENCE_FIELDS = frozenset(
    (
        "id",
        "name",
        "account_id",
        "description",
        "subtype",
        "customer_file_source",
        "approximate_count_lower_bound",
        "approximate_count_upper_bound",
        "operation_status",
        "delivery_status",
        "permission_for_actions",
        "time_created",
        "time_updated",
        "retention_days",
        "data_source",
    )
)
MAX_SAMPLES = 10
WINDOW = 3600  # Business Use Case limits count calls over a rolling hour
THROTTLED_MESSAGE = (
    "(#80003) There have been too many calls to this ad-account. Wait a bit and try again. For more info, please "
    "refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting."
)


def fbtrace():
    return secrets.token_urlsafe(8)[:11]


def graph_error(status, message, code, subcode=None, kind="OAuthException", extra=None, headers=None):
    error = {"message": message, "type": kind, "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if extra:
        error.update(extra)
    error["fbtrace_id"] = fbtrace()
    return json_response(status, {"error": error}, headers)


def _fb_time(ts):
    return time.strftime("%A, %d-%b-%y %H:%M:%S UTC", time.gmtime(ts))


def invalid_token():
    message = "Invalid OAuth access token - Cannot parse access token"
    return graph_error(
        400, message, 190, headers=[("WWW-Authenticate", f'OAuth "Facebook Platform" "invalid_token" "{message}"')]
    )


def expired_token(expired_at):
    message = (
        f"Error validating access token: Session has expired on {_fb_time(expired_at)}. "
        f"The current time is {_fb_time(time.time())}."
    )
    return graph_error(
        400, message, 190, 463, headers=[("WWW-Authenticate", f'OAuth "Facebook Platform" "invalid_token" "{message}"')]
    )


def unsupported(method, object_id):
    return graph_error(
        400,
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be loaded due to "
        "missing permissions, or does not support this operation. Please read the Graph API documentation at "
        "https://developers.facebook.com/docs/graph-api",
        100,
        33,
        kind="GraphMethodException",
    )


def bad_param(message, subcode=None):
    return graph_error(400, f"(#100) {message}", 100, subcode)


def act(ad_account_id):
    value = str(ad_account_id)
    return value if value.startswith("act_") else f"act_{value}"


class Facebook(Partner):
    name = "facebook"

    def reset(self):
        super().reset()
        self.tokens = {}  # token -> {"ad_account_id", "tos_accepted", "business_verified", "admin", "expired_at"}
        self.audiences = {}  # id -> {"ad_account_id", "name", "flagged", "members": {value: key}, "sessions": {}}
        self.rate_limits = {}  # ad account -> calls allowed in a rolling hour
        self.calls = {}  # ad account -> times of its calls within the last hour
        self.offset = 0.0  # seconds the clock was moved forward (advance)

    def now(self):
        return time.time() + self.offset

    def dump(self):
        # Audience ids and session ids are already strings; calls (the rolling hour's times) go with the clock.
        return {
            "tokens": self.tokens,
            "audiences": self.audiences,
            "rate_limits": self.rate_limits,
            "calls": self.calls,
            "offset": self.offset,
        }

    def load(self, state):
        audiences = {}
        for audience_id, saved in state["audiences"].items():
            audiences[audience_id] = {
                **saved,
                "members": dict(saved["members"]),
                "sessions": {sid: dict(s, batch_seqs=list(s["batch_seqs"])) for sid, s in saved["sessions"].items()},
            }
        tokens = {token: dict(saved) for token, saved in state["tokens"].items()}
        self.tokens, self.audiences, self.offset = tokens, audiences, float(state["offset"])
        self.rate_limits = dict(state["rate_limits"])
        self.calls = {account: [float(t) for t in times] for account, times in state["calls"].items()}

    # --- control -------------------------------------------------------------------------------------------
    def add_token(
        self, access_token, ad_account_id, tos_accepted=True, business_verified=True, admin=True, expired=False
    ):
        if not isinstance(access_token, str) or not access_token:
            raise ValueError("'access_token' is required.")
        if ad_account_id in (None, ""):
            raise ValueError("'ad_account_id' is required (such as 'act_1001').")
        with self.lock:
            self.tokens[access_token] = {
                "ad_account_id": act(ad_account_id),
                "tos_accepted": bool(tos_accepted),
                "business_verified": bool(business_verified),
                "admin": bool(admin),
                "expired_at": time.time() if expired else None,
                "created": time.time(),
            }
        return {"access_token": access_token, **{k: v for k, v in self.tokens[access_token].items() if k != "created"}}

    def add_audience(self, audience_id, ad_account_id, name=None, flagged=False):
        if not isinstance(audience_id, (str, int)) or not str(audience_id).isdigit():
            raise ValueError("'audience_id' must be a numeric id such as '23850000000000001'.")
        if ad_account_id in (None, ""):
            raise ValueError("'ad_account_id' is required (such as 'act_1001').")
        audience_id = str(audience_id)
        with self.lock:
            existing = self.audiences.get(audience_id)
            self.audiences[audience_id] = {
                "ad_account_id": act(ad_account_id),
                "name": name or f"Audience {audience_id}",
                "flagged": bool(flagged),
                "members": existing["members"] if existing else {},
                "sessions": existing["sessions"] if existing else {},
                "created": time.time(),
                "updated": time.time(),
            }
        return {"audience_id": audience_id, "ad_account_id": act(ad_account_id), "name": name, "flagged": bool(flagged)}

    def delete_audience(self, audience_id):
        with self.lock:
            return self.audiences.pop(str(audience_id), None) is not None

    def inspect(self, audience_id):
        with self.lock:
            audience = self.audiences.get(str(audience_id))
            if audience is None:
                return None
            return {
                "audience_id": str(audience_id),
                "ad_account_id": audience["ad_account_id"],
                "name": audience["name"],
                "flagged": audience["flagged"],
                "count": len(audience["members"]),
                "members": dict(audience["members"]),
                "sessions": {sid: dict(s, batch_seqs=list(s["batch_seqs"])) for sid, s in audience["sessions"].items()},
            }

    def set_rate_limit(self, ad_account_id, calls_per_hour):
        """At most ``calls_per_hour`` calls an hour for the ad account (None: no limit)."""
        if ad_account_id in (None, ""):
            raise ValueError("'ad_account_id' is required (such as 'act_1001').")
        if calls_per_hour is not None and (
            isinstance(calls_per_hour, bool) or not isinstance(calls_per_hour, int) or calls_per_hour < 0
        ):
            raise ValueError("'calls_per_hour' must be a whole number of at least 0, or null for no limit.")
        with self.lock:
            self.rate_limits[act(ad_account_id)] = calls_per_hour
        return {"ad_account_id": act(ad_account_id), "calls_per_hour": calls_per_hour}

    def advance(self, minutes):
        if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes < 0:
            raise ValueError("'minutes' must be a number of at least 0.")
        with self.lock:
            self.offset += minutes * 60
        return {"advanced_minutes": minutes}

    def revoke(self, credential):
        with self.lock:
            token = self.tokens.get(credential)
            if token is None:
                return False
            token["expired_at"] = time.time()
            return True

    def control_routes(self):
        return [
            (
                "POST",
                r"tokens",
                control_body(
                    lambda b: self.add_token(
                        b.get("access_token"),
                        b.get("ad_account_id"),
                        b.get("tos_accepted", True),
                        b.get("business_verified", True),
                        b.get("admin", True),
                        b.get("expired", False),
                    )
                ),
            ),
            (
                "POST",
                r"audiences",
                control_body(
                    lambda b: self.add_audience(
                        b.get("audience_id"), b.get("ad_account_id"), b.get("name"), b.get("flagged", False)
                    )
                ),
            ),
            (
                "POST",
                r"rate_limit",
                control_body(lambda b: self.set_rate_limit(b.get("ad_account_id"), b.get("calls_per_hour"))),
            ),
            ("POST", r"clock", control_body(lambda b: self.advance(b.get("minutes")))),
            ("GET", r"audiences/(?P<ident>[^/]+)", lambda r, ident: found(self.inspect(ident), "audience", ident)),
            (
                "DELETE",
                r"audiences/(?P<ident>[^/]+)",
                lambda r, ident: deleted(self.delete_audience(ident), "audience", ident),
            ),
        ]

    def seed_demo(self, base):
        if DEMO["access_token"] not in self.tokens:
            self.add_token(DEMO["access_token"], DEMO["ad_account_id"])
        if DEMO["audience_id"] not in self.audiences:
            self.add_audience(DEMO["audience_id"], DEMO["ad_account_id"], DEMO["audience_name"])
        return {**DEMO, "base_url": f"{base}/facebook"}

    def demo_summary(self, demo):
        return (
            f"access token {demo['access_token']}, ad account {demo['ad_account_id']}, audience {demo['audience_id']}"
        )

    def index(self, base):
        return {"prefix": f"{base}/facebook", "stands_for": "https://graph.facebook.com"}

    def error_response(self, status, retry_after=None):
        headers = retry_after_header(retry_after)
        if status == 429:
            # Facebook never sends Retry-After: an injected throttle says how long in the usage header, in whole
            # minutes. The fault does not know the ad account, so the header is keyed by "0".
            minutes = math.ceil(retry_after / 60) if retry_after else 0
            return graph_error(
                429,
                THROTTLED_MESSAGE,
                80003,
                2446079,
                extra={"is_transient": True},
                headers=[usage_header("0", 100, minutes)],
            )
        if status == 503:
            return graph_error(
                503, "(#2) Service temporarily unavailable", 2, extra={"is_transient": True}, headers=headers
            )
        if status >= 500:
            return graph_error(
                status, "An unknown error occurred", 1, 99, extra={"is_transient": True}, headers=headers
            )
        if status == 401:
            return graph_error(401, "Invalid OAuth access token - Cannot parse access token", 190, headers=headers)
        if status == 403:
            return graph_error(403, "(#200) Permissions error", 200, headers=headers)
        return graph_error(status, "(#100) Invalid parameter", 100, headers=headers)

    # --- routing -----------------------------------------------------------------------------------------
    def handle(self, request):
        parts = request.path.strip("/").split("/")
        if not parts or not VERSION_RE.match(parts[0]):
            return graph_error(400, f"Unknown path components: {request.path}", 2500)
        parts = parts[1:]
        if not parts or len(parts) > 2 or not parts[0]:
            return graph_error(400, f"Unknown path components: {request.path}", 2500)
        params = request.params()
        token_value = params.get("access_token")
        if not token_value:
            scheme, _, value = (request.headers.get("Authorization") or "").strip().partition(" ")
            if scheme.lower() in ("bearer", "oauth"):
                token_value = value.strip()
        if not token_value:
            return graph_error(400, "An access token is required to request this resource.", 104)
        token = self.tokens.get(token_value)
        if token is None:
            return invalid_token()
        if token["expired_at"] is not None:
            return expired_token(token["expired_at"])
        throttled, usage = self._count_call(token["ad_account_id"])
        response = throttled or self._route(request, parts, params, token, token_value)
        if usage is not None:
            response.headers.append(usage)
        return response

    def _count_call(self, account):
        """(a throttled answer or None, the usage header or None) for one call of the ad account."""
        with self.lock:
            limit = self.rate_limits.get(account)
            if limit is None:
                return None, None
            now = self.now()
            calls = [t for t in self.calls.get(account, []) if t > now - WINDOW]
            if len(calls) >= limit:
                # Access returns when the oldest call in the window leaves it.
                wait = (calls[0] + WINDOW - now) if calls else WINDOW
                self.calls[account] = calls
                header = usage_header(account[4:], 100, max(1, math.ceil(wait / 60)))
                error = graph_error(400, THROTTLED_MESSAGE, 80003, 2446079, extra={"is_transient": True})
                return error, header
            calls.append(now)
            self.calls[account] = calls
            percent = min(100, math.ceil(100 * len(calls) / limit)) if limit else 100
            return None, usage_header(account[4:], percent, 0)

    def _route(self, request, parts, params, token, token_value):
        node, edge = parts[0], (parts[1] if len(parts) == 2 else None)
        method = request.method
        if node == "me" and edge is None and method == "GET":
            return json_response(200, {"id": str(100000000000000 + len(token_value)), "name": "Sandbox User"})
        if node.startswith("act_"):
            if node != token["ad_account_id"]:
                return unsupported(method, node)
            if edge is None and method == "GET":
                return self._ad_account(node, token, params)
            if edge == "customaudiences" and method == "GET":
                return self._list_audiences(node)
            return unsupported(method, node)
        audience = self.audiences.get(node)
        if audience is None or audience["ad_account_id"] != token["ad_account_id"]:
            return unsupported(method, node)
        if edge is None:
            if method == "GET":
                return self._read_audience(node, audience, token, params)
            return unsupported(method, node)
        if edge == "users" and method in ("POST", "DELETE"):
            return self._users(node, audience, token, params, remove=method == "DELETE")
        return unsupported(method, node)

    def _ad_account(self, node, token, params):
        body = {
            "id": node,
            "account_id": node[4:],
            "name": f"Sandbox ad account {node[4:]}",
            "account_status": 1,
            "currency": "USD",
            "tos_accepted": {"custom_audience_tos": 1} if token["tos_accepted"] else {},
        }
        if token["business_verified"]:
            body["business"] = {"id": str(900000000000000 + int(node[4:] or 0)), "name": "Sandbox business"}
        fields = params.get("fields")
        if fields:
            wanted = {f.strip() for f in str(fields).split(",") if f.strip()}
            body = {k: v for k, v in body.items() if k in wanted or k == "id"}
        return json_response(200, body)

    def _list_audiences(self, node):
        with self.lock:
            data = [{"id": i, "name": a["name"]} for i, a in self.audiences.items() if a["ad_account_id"] == node]
        return json_response(200, {"data": data, "paging": {"cursors": {"before": "", "after": ""}}})

    def _read_audience(self, audience_id, audience, token, params):
        fields = params.get("fields")
        wanted = ["id", "name"] if not fields else [f.strip() for f in str(fields).split(",") if f.strip()]
        for field in wanted:
            if field not in AUDIENCE_FIELDS:
                return bad_param(f"Tried accessing nonexisting field ({field}) on node type (CustomAudience)")
        with self.lock:
            count = len(audience["members"])
            flagged = audience["flagged"]
            full = {
                "id": audience_id,
                "name": audience["name"],
                "account_id": audience["ad_account_id"][4:],
                "description": "",
                "subtype": "CUSTOM",
                "customer_file_source": "USER_PROVIDED_ONLY",
                "approximate_count_lower_bound": count,
                "approximate_count_upper_bound": count,
                "operation_status": (
                    {"code": 471, "description": "This audience has been flagged and can't be used in ad sets."}
                    if flagged
                    else {"code": 200, "description": "Normal"}
                ),
                "delivery_status": (
                    {"code": 300, "description": "This audience is too small to use."}
                    if count < 100
                    else {"code": 200, "description": "This audience is ready for use."}
                ),
                "permission_for_actions": {
                    "can_edit": token["admin"],
                    "can_see_insight": True,
                    "can_share": token["business_verified"],
                    "subtype_supports_lookalike": True,
                    "supports_recipient_lookalike": False,
                },
                "time_created": int(audience["created"]),
                "time_updated": int(audience["updated"]),
                "retention_days": 0,
                "data_source": {"type": "FILE_IMPORTED", "sub_type": "HASHES_OR_USER_IDS", "creation_params": "[]"},
            }
        body = {"id": audience_id}
        for field in wanted:
            body[field] = full[field]
        return json_response(200, body)

    def _users(self, audience_id, audience, token, params, remove):
        if not token["admin"]:
            return graph_error(
                403,
                "(#273) This Ads API call requires the user to be admin of the ad account. User is not admin on ad "
                "account",
                273,
            )
        if not token["business_verified"]:
            return graph_error(
                403,
                "(#200) The ad account must belong to a verified business to use customer list Custom Audiences.",
                200,
            )
        if not token["tos_accepted"]:
            return graph_error(
                400,
                "(#2663) Terms of service has not been accepted. To accept, go to "
                f"https://www.facebook.com/customaudiences/app/tos/?act={audience['ad_account_id'][4:]}",
                2663,
            )
        if audience["flagged"]:
            return graph_error(
                400,
                "Invalid parameter",
                100,
                1713230,
                extra={
                    "error_user_title": "Audience Upload Blocked",
                    "error_user_msg": "Before updating user memberships, you must resolve integrity restrictions on "
                    "this Data File Custom Audience. Go to Audience Manager to appeal the restrictions or create a new "
                    "audience with updated data",
                },
            )
        payload = params.get("payload")
        if payload in (None, ""):
            return bad_param("The parameter payload is required")
        if isinstance(payload, str):
            try:
                payload = json.loads(payload)
            except ValueError:
                return bad_param("Param payload must be a JSON-encoded object")
        if not isinstance(payload, dict):
            return bad_param("Param payload must be a JSON-encoded object")
        schema = payload.get("schema")
        keys = [schema] if isinstance(schema, str) else schema
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            return bad_param("Param payload[schema] must be a schema name or a list of schema names")
        for key in keys:
            if key not in HASHED_KEYS and key not in RAW_KEYS:
                return bad_param(f"Invalid schema: {key}")
        data = payload.get("data")
        if not isinstance(data, list) or not data:
            return bad_param("Param payload[data] must be a non-empty array")
        if len(data) > MAX_RECORDS:
            return bad_param(
                f"Too many records in this request: {len(data)}. Send at most {MAX_RECORDS} records per request."
            )
        session = params.get("session")
        if session in (None, ""):
            return bad_param("The parameter session is required")
        if isinstance(session, str):
            try:
                session = json.loads(session)
            except ValueError:
                return bad_param("Param session must be a JSON-encoded object")
        problem = _session_problem(session)
        if problem:
            return bad_param(problem)
        rows = [(row if isinstance(row, list) else [row]) for row in data]
        invalid, samples, values = 0, {}, []
        for row in rows:
            if len(row) != len(keys):
                invalid += 1
                _sample(samples, json.dumps(row)[:64], "Wrong number of columns")
                continue
            good, bad = [], False
            for key, value in zip(keys, row, strict=True):
                if value is None or value == "":
                    continue
                if not isinstance(value, str):
                    value = str(value)
                if key in HASHED_KEYS and not SHA256_RE.match(value):
                    bad = True
                    _sample(samples, value, key)
                    continue
                good.append((value, key))
            if bad or not good:
                invalid += 1
                continue
            values.extend(good)
        with self.lock:
            members = audience["members"]
            if remove:
                for value, _key in values:
                    if members.pop(value, None) is None:
                        self.duplicates += 1
            else:
                for value, key in values:
                    if value in members:
                        self.duplicates += 1
                    else:
                        members[value] = key
            audience["updated"] = time.time()
            session_id = self._record_session(audience, session, len(rows), invalid, remove)
        return json_response(
            200,
            {
                "audience_id": audience_id,
                "session_id": session_id,
                "num_received": len(rows),
                "num_invalid_entries": invalid,
                "invalid_entry_samples": samples,
            },
        )

    @staticmethod
    def _record_session(audience, session, received, invalid, remove):
        session_id = session["session_id"]
        record = audience["sessions"].setdefault(
            str(session_id),
            {
                "operation": "remove" if remove else "add",
                "batch_seqs": [],
                "num_received": 0,
                "num_invalid_entries": 0,
                "last_batch_flag": False,
                "estimated_num_total": None,
                "stage": "uploading",
            },
        )
        record["batch_seqs"].append(session.get("batch_seq"))
        record["num_received"] += received
        record["num_invalid_entries"] += invalid
        if session.get("estimated_num_total") is not None:
            record["estimated_num_total"] = session["estimated_num_total"]
        if session.get("last_batch_flag"):
            record["last_batch_flag"] = True
            record["stage"] = "finished"
        return session_id


def usage_header(business_id, percent, minutes):
    """X-Business-Use-Case-Usage for the custom_audience use case: percentages of the hourly limit used, and the
    minutes until a throttled account may call again (0 while it is not throttled)."""
    entry = {
        "type": "custom_audience",
        "call_count": percent,
        "total_cputime": min(percent, 25),
        "total_time": min(percent, 25),
        "estimated_time_to_regain_access": minutes,
    }
    return ("X-Business-Use-Case-Usage", json.dumps({str(business_id): [entry]}))


def _session_problem(session):
    """Why a session parameter is not one Facebook takes, or ""."""
    if not isinstance(session, dict):
        return "Param session must be a JSON-encoded object"
    for name in ("session_id", "batch_seq"):
        value = session.get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            return f"Param session[{name}] must be an integer"
    if not isinstance(session.get("last_batch_flag"), bool):
        return "Param session[last_batch_flag] must be a boolean"
    return ""


def _sample(samples, value, reason):
    if len(samples) < MAX_SAMPLES:
        samples[value] = reason
