"""Braze REST API ``POST /users/track`` (https://www.braze.com/docs/api/endpoints/user_data/post_user_track/),
under ``/braze/``: ``{base}/braze/users/track`` stands for ``https://rest.<instance>.braze.com/users/track``.

Bodies follow the Braze "Errors & Responses" page: ``{"message": "success"}`` (plus ``attributes_processed`` and
a non-fatal ``errors`` array) on 201, ``{"message": <fatal error>, "errors": [...]}`` otherwise. Every answer
carries the ``X-RateLimit-Limit`` / ``-Remaining`` / ``-Reset`` headers the "Rate limits" page documents.

One module of about 400 lines, on purpose: one reading of the ``/users/track`` reference, each rule beside the
page it comes from.
"""

import re
import time

from outputs.sandbox.common import BadJSON, Partner, control_body, json_response, reason, retry_after_header

# The demo account (POST /_sandbox/seed/demo).
DEMO = {"api_key": "braze-demo-key"}

MAX_OBJECTS = 75  # "75 events, 75 purchases, and 75 attributes per API request"
# Custom attribute arrays hold 25 values unless Braze raises an attribute's maximum (up to 100); past it the
# oldest value is dropped, and adding a value already held moves it to the end (the newest).
DEFAULT_ARRAY_CAP = 25
MAX_ARRAY_CAP = 100
# "String attributes can be up to 255 characters long" (Data types). What Braze does with a longer one is not
# documented: the emulator keeps the first 255 characters and counts it in `truncated`.
STRING_CAP = 255
DEFAULT_PER_MINUTE = 1_000_000  # high, so a benchmark never trips it unless a test lowers it
ALL_PERMISSIONS = None  # a key made without a permissions list may call every endpoint
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
IDENTIFIER_FIELDS = ("external_id", "braze_id", "user_alias", "email", "phone")
NOT_ATTRIBUTES = frozenset(("external_id", "braze_id", "user_alias", "_update_existing_only", "app_id"))
NO_IDENTIFIER = "Each object must specify an 'external_id', 'braze_id', 'user_alias', 'email' or 'phone'."
NO_VALID_DATA = "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."


def mask(key):
    if len(key) <= 8:
        return "*" * len(key)
    return f"{key[:4]}{'*' * (len(key) - 8)}{key[-4:]}"


class InvalidObject(Exception):
    pass


class Braze(Partner):
    name = "braze"

    def reset(self):
        super().reset()
        self.keys = {}  # api key -> {"permissions": set | None, "revoked": bool}
        self.users = {}  # "external_id:u1" -> {attribute: value}
        self.operations = {}  # same key -> objects applied
        self.events = 0
        self.purchases = 0
        self.per_minute = DEFAULT_PER_MINUTE
        self.windows = {}  # api key -> [window start, requests in window]
        self.array_cap = DEFAULT_ARRAY_CAP
        self.dropped = 0  # array values Braze dropped to stay within the cap
        self.truncated = 0  # string values longer than Braze keeps
        self.maintenance = False  # Braze pauses real-time processing: 202 "queued", applied when it ends
        self.queued = []  # request bodies received during maintenance

    def dump(self):
        return {
            "keys": {
                key: {
                    "permissions": None if k["permissions"] is None else sorted(k["permissions"]),
                    "revoked": k["revoked"],
                }
                for key, k in self.keys.items()
            },
            "users": self.users,
            "operations": self.operations,
            "events": self.events,
            "purchases": self.purchases,
            "per_minute": self.per_minute,
            "array_cap": self.array_cap,
            "dropped": self.dropped,
            "truncated": self.truncated,
            "maintenance": self.maintenance,
            "queued": self.queued,
        }

    def load(self, state):
        keys = {
            key: {"permissions": None if k["permissions"] is None else set(k["permissions"]), "revoked": k["revoked"]}
            for key, k in state["keys"].items()
        }
        users = {user: _copy(attributes) for user, attributes in state["users"].items()}
        numbers = [int(state[n]) for n in ("events", "purchases", "per_minute", "array_cap", "dropped", "truncated")]
        self.keys, self.users, self.operations = keys, users, dict(state["operations"])
        self.events, self.purchases, self.per_minute, self.array_cap, self.dropped, self.truncated = numbers
        self.maintenance, self.queued = bool(state["maintenance"]), list(state["queued"])

    # --- control -------------------------------------------------------------------------------------------
    def add_key(self, api_key, permissions=ALL_PERMISSIONS):
        if not isinstance(api_key, str) or not api_key:
            raise ValueError("'api_key' is required.")
        if permissions is not None and (
            not isinstance(permissions, list) or not all(isinstance(p, str) for p in permissions)
        ):
            raise ValueError("'permissions' must be a list of permission names such as 'users.track'.")
        with self.lock:
            self.keys[api_key] = {"permissions": None if permissions is None else set(permissions), "revoked": False}
        return {"api_key": api_key, "permissions": "all" if permissions is None else sorted(permissions)}

    def set_rate_limit(self, per_minute):
        if isinstance(per_minute, bool) or not isinstance(per_minute, int) or per_minute < 1:
            raise ValueError("'per_minute' must be a positive integer.")
        with self.lock:
            self.per_minute = per_minute
            self.windows = {}
        return {"per_minute": per_minute}

    def set_array_cap(self, cap):
        if isinstance(cap, bool) or not isinstance(cap, int) or not 1 <= cap <= MAX_ARRAY_CAP:
            raise ValueError(f"'cap' must be a whole number from 1 to {MAX_ARRAY_CAP}.")
        with self.lock:
            self.array_cap = cap
        return {"cap": cap}

    def set_maintenance(self, on):
        if not isinstance(on, bool):
            raise ValueError("'on' must be true or false.")
        with self.lock:
            self.maintenance = on
            queued, self.queued = (self.queued, []) if not on else ([], self.queued)
            for body in queued:  # what Braze queued is processed once maintenance ends
                for obj in body.get("attributes") or []:
                    try:
                        self._apply_attributes(obj)
                    except InvalidObject:
                        pass
        return {"maintenance": on, "processed": len(queued)}

    def inspect(self):
        with self.lock:
            return {
                "users": {k: _copy(v) for k, v in self.users.items()},
                "operations": dict(self.operations),
                "events": self.events,
                "purchases": self.purchases,
                "array_cap": self.array_cap,
                "dropped": self.dropped,
                "truncated": self.truncated,
                "queued": len(self.queued),
            }

    def revoke(self, credential):
        with self.lock:
            key = self.keys.get(credential)
            if key is None:
                return False
            key["revoked"] = True
            return True

    def control_routes(self):
        return [
            ("POST", r"keys", control_body(lambda b: self.add_key(b.get("api_key"), b.get("permissions")))),
            ("GET", r"users", lambda r: json_response(200, self.inspect())),
            ("POST", r"rate_limit", control_body(lambda b: self.set_rate_limit(b.get("per_minute")))),
            ("POST", r"array_cap", control_body(lambda b: self.set_array_cap(b.get("cap")))),
            ("POST", r"maintenance", control_body(lambda b: self.set_maintenance(b.get("on")))),
        ]

    def seed_demo(self, base):
        if DEMO["api_key"] not in self.keys:
            self.add_key(DEMO["api_key"])
        return {**DEMO, "base_url": f"{base}/braze"}

    def demo_summary(self, demo):
        return f"REST API key {demo['api_key']}"

    def index(self, base):
        return {"prefix": f"{base}/braze", "stands_for": "https://rest.<instance>.braze.com"}

    # --- rate limit -------------------------------------------------------------------------------------
    def _rate(self, key):
        """Count this request in a fixed one-minute window; returns (allowed, headers)."""
        now = time.time()
        with self.lock:
            window = self.windows.get(key)
            if window is None or now - window[0] >= 60:
                window = self.windows[key] = [now, 0]
            allowed = window[1] < self.per_minute
            if allowed:
                window[1] += 1
            limit, used, reset_at = self.per_minute, window[1], int(window[0] + 60)
        headers = [
            ("X-RateLimit-Limit", str(limit)),
            ("X-RateLimit-Remaining", str(max(0, limit - used))),
            ("X-RateLimit-Reset", str(reset_at)),
        ]
        if not allowed:
            headers.append(("Retry-After", str(max(1, reset_at - int(now)))))
        return allowed, headers

    def admit(self, request):
        header = request.headers.get("Authorization") or ""
        scheme, _, key = header.strip().partition(" ")
        key = key.strip() if scheme.lower() == "bearer" else ""
        allowed, headers = self._rate(key or "-")
        request.ctx["braze_headers"] = headers
        if not key:
            return json_response(401, {"message": "Unknown or missing REST API Key."}, headers)
        record = self.keys.get(key)
        # Braze answers an unknown key, a deleted key and a key without the endpoint's permission alike.
        if record is None or record["revoked"]:
            return json_response(401, {"message": f"Invalid API key: {mask(key)}"}, headers)
        request.ctx["braze_key"] = key
        if not allowed:
            return json_response(429, {"message": "Over rate limit."}, headers)
        return None

    def error_response(self, status, retry_after=None):
        message = "Over rate limit." if status == 429 else reason(status)
        return json_response(status, {"message": message}, retry_after_header(retry_after))

    # --- /users/track ------------------------------------------------------------------------------------
    def handle(self, request):
        headers = request.ctx["braze_headers"]
        path = request.path.rstrip("/")
        if path != "/users/track":
            return json_response(404, {"message": "Not Found"}, headers)
        if request.method != "POST":
            return json_response(405, {"message": "Method Not Allowed"}, headers + [("Allow", "POST")])
        record = self.keys.get(request.ctx["braze_key"]) or {"permissions": set()}
        permissions = record["permissions"]
        if permissions is not None and "users.track" not in permissions:
            # A known key without the endpoint's permission is forbidden, not unknown ("403 Forbidden").
            return json_response(403, {"message": "Access Denied"}, headers)
        try:
            body = request.json()
        except BadJSON:
            return json_response(
                400, {"message": "Bad syntax", "errors": ["The request body is not valid JSON."]}, headers
            )
        if not isinstance(body, dict):
            return json_response(
                400, {"message": "Bad syntax", "errors": ["The request body must be a JSON object."]}, headers
            )
        arrays = {}
        for name in ("attributes", "events", "purchases"):
            value = body.get(name)
            if value is None:
                continue
            if not isinstance(value, list):
                return json_response(400, {"message": "Bad syntax", "errors": [f"'{name}' must be an array."]}, headers)
            if len(value) > MAX_OBJECTS:
                return json_response(
                    400,
                    {
                        "message": "Max Input Length Exceeded",
                        "errors": [
                            f"'{name}' has {len(value)} objects; at most {MAX_OBJECTS} are allowed per request."
                        ],
                    },
                    headers,
                )
            arrays[name] = value
        with self.lock:
            if self.maintenance:
                # "the server will return an HTTP Accepted 202 response code" and process the call later.
                self.queued.append(arrays)
                return json_response(202, {"message": "queued"}, headers)
        errors = []
        processed = {}
        with self.lock:
            for name, objects in arrays.items():
                done = 0
                for index, obj in enumerate(objects):
                    try:
                        if name == "attributes":
                            self._apply_attributes(obj)
                        else:
                            self._check_event(name, obj)
                    except InvalidObject as exc:
                        errors.append({"type": str(exc), "input_array": name, "index": index})
                        continue
                    done += 1
                processed[name] = done
        if not any(processed.values()):
            payload = {"message": NO_VALID_DATA}
            if errors:
                payload["errors"] = errors
            return json_response(400, payload, headers)
        payload = {"message": "success"}
        for name, done in processed.items():
            payload[f"{name}_processed"] = done
        if errors:
            payload["errors"] = errors
        return json_response(201, payload, headers)

    @staticmethod
    def _identify(obj):
        if not isinstance(obj, dict):
            raise InvalidObject("Each object must be a JSON object.")
        external_id = obj.get("external_id")
        if external_id is not None:
            if not isinstance(external_id, str) or not external_id:
                raise InvalidObject("'external_id' must be a non-empty string.")
            return f"external_id:{external_id}", False
        braze_id = obj.get("braze_id")
        if braze_id is not None:
            if not isinstance(braze_id, str) or not braze_id:
                raise InvalidObject("'braze_id' must be a non-empty string.")
            return f"braze_id:{braze_id}", False
        alias = obj.get("user_alias")
        if alias is not None:
            if (
                not isinstance(alias, dict)
                or not isinstance(alias.get("alias_name"), str)
                or not isinstance(alias.get("alias_label"), str)
                or not alias["alias_name"]
                or not alias["alias_label"]
            ):
                raise InvalidObject("'user_alias' must be an object with 'alias_name' and 'alias_label'.")
            return f"alias:{alias['alias_label']}:{alias['alias_name']}", True
        email = obj.get("email")
        if email is not None:
            if not isinstance(email, str) or not EMAIL_RE.match(email):
                raise InvalidObject("'email' is not a valid email address.")
            return f"email:{email.lower()}", False
        phone = obj.get("phone")
        if phone is not None:
            if not isinstance(phone, str) or not phone:
                raise InvalidObject("'phone' must be a non-empty string.")
            return f"phone:{phone}", False
        raise InvalidObject(NO_IDENTIFIER)

    def _check_event(self, name, obj):
        self._identify(obj)
        if name == "events":
            if not isinstance(obj.get("name"), str) or not obj["name"]:
                raise InvalidObject("'name' is required on an event object.")
            if not isinstance(obj.get("time"), str):
                raise InvalidObject("'time' is required on an event object.")
            self.events += 1
        else:
            for field in ("product_id", "currency", "time"):
                if not isinstance(obj.get(field), str) or not obj[field]:
                    raise InvalidObject(f"'{field}' is required on a purchase object.")
            if isinstance(obj.get("price"), bool) or not isinstance(obj.get("price"), (int, float)):
                raise InvalidObject("'price' is not valid")
            self.purchases += 1

    def _apply_attributes(self, obj):
        user_key, alias_only = self._identify(obj)
        changes = []
        for attr, value in obj.items():
            if attr in NOT_ATTRIBUTES:
                continue
            if isinstance(value, dict) and ("add" in value or "remove" in value) and set(value) <= {"add", "remove"}:
                for op in ("add", "remove"):
                    if op in value and not isinstance(value[op], list):
                        raise InvalidObject(f"'{attr}' {op} must be an array.")
            changes.append((attr, value))
        user = self.users.get(user_key)
        if user is None:
            # "If this value is omitted, the alias-only user profile will not be created."
            if alias_only and obj.get("_update_existing_only", True) is not False:
                return
            user = self.users[user_key] = {}
        for attr, value in changes:
            if isinstance(value, dict) and ("add" in value or "remove" in value) and set(value) <= {"add", "remove"}:
                current = user.get(attr)
                if not isinstance(current, list):
                    current = user[attr] = []
                for item in value.get("add", ()):
                    if item in current:
                        self.duplicates += 1
                        current.remove(item)  # re-adding a value makes it the newest
                    current.append(item)
                self._cap(current)
                for item in value.get("remove", ()):
                    if item in current:
                        current.remove(item)
                    else:
                        self.duplicates += 1
            elif isinstance(value, dict) and set(value) == {"inc"} and isinstance(value["inc"], int):
                user[attr] = (user.get(attr) if isinstance(user.get(attr), int) else 0) + value["inc"]
            elif value is None:
                user.pop(attr, None)
            else:
                if user.get(attr) == value:
                    self.duplicates += 1
                if isinstance(value, list):
                    value = list(value)
                    self._cap(value)
                elif isinstance(value, str) and len(value) > STRING_CAP:
                    value = value[:STRING_CAP]
                    self.truncated += 1
                # A string (any value but an array operation) is replaced whole, whatever the attribute held.
                user[attr] = value
        self.operations[user_key] = self.operations.get(user_key, 0) + 1

    def _cap(self, values):
        """Keep the newest `array_cap` values, as Braze does, counting the dropped ones."""
        over = len(values) - self.array_cap
        if over > 0:
            del values[:over]
            self.dropped += over


def _copy(user):
    return {k: (list(v) if isinstance(v, list) else v) for k, v in user.items()}
