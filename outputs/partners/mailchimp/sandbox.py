"""Mailchimp Marketing API v3 (https://mailchimp.com/developer/marketing/api/), under ``/mailchimp/{dc}/3.0/``.

``{base}/mailchimp/us6/3.0/lists/x`` stands for ``https://us6.api.mailchimp.com/3.0/lists/x``.
Errors are RFC 7807 problem documents with ``Content-Type: application/problem+json``, as the Mailchimp
error glossary (https://mailchimp.com/developer/marketing/docs/errors/) shows.

One module of about 750 lines, on purpose: it is one reading of Mailchimp's reference, endpoint after endpoint,
each rule beside the page it comes from, so that checking it against the docs is reading it top to bottom.
"""

import base64
import hashlib
import re
import time

from outputs.sandbox.common import (
    BadJSON,
    Partner,
    control_body,
    deleted,
    empty_response,
    found,
    iso_stamp,
    json_response,
    new_id,
    retry_after_header,
)

DEMO = {
    "api_key": "0123456789abcdef0123456789abcdef-us6",
    "dc": "us6",
    "list_id": "a1b2c3d4e5",
    "list_name": "Audience Relay demo",
}
PROBLEM_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"
MAX_BATCH = 500  # "Up to 500 members may be added or updated with each API call."
MAX_CONNECTIONS = 10  # "Each user account is permitted up to 10 simultaneous connections."
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
EMAIL_TYPES = ("html", "text")
KEY_RE = re.compile(r"^[0-9a-f]{32}-[a-z]+[0-9]+$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
HASH_RE = re.compile(r"^[0-9a-fA-F]{32}$")

# Titles and details from the error glossary; 502-504 are not in it, so they read like its 500.
GLOSSARY = {
    400: ("Bad Request", "Your request could not be processed."),
    401: ("API Key Invalid", "Your API key may be invalid, or you've attempted to access the wrong datacenter."),
    403: ("Forbidden", "You don't have permission to access this resource."),
    404: ("Resource Not Found", "The requested resource could not be found."),
    405: (
        "Method Not Allowed",
        "The requested method and resource are not compatible. See the Allow header for this resource's available "
        "methods.",
    ),
    429: ("Too Many Requests", "You have exceeded the limit of 10 simultaneous connections."),
    500: (
        "Internal Server Error",
        "An unexpected internal error has occurred. Please contact Support for more information.",
    ),
    502: ("Bad Gateway", "An unexpected internal error has occurred. Please try again later."),
    503: ("Service Unavailable", "The Mailchimp API is temporarily unavailable. Please try again later."),
    504: ("Gateway Timeout", "An unexpected internal error has occurred. Please try again later."),
}
INVALID_RESOURCE = "The resource submitted could not be validated. For field-specific details, see the 'errors' array."
# Answers Mailchimp's API gives, as quoted by client libraries' users (sources in docs/sandbox.md).
CANNOT_REMOVE = "This list member cannot be removed. Can not archive a contact that is bounced, pending or archived"
UNREMOVABLE = ("pending", "cleaned", "archived")
TOO_MANY_SIGNUPS = "{email} has signed up to a lot of lists very recently; we're not allowing more signups for now"
MERGE_FIELDS_INVALID = "Your merge fields were invalid."
PLEASE_ENTER = "Please enter a value"  # the message beside the merge tag that has none


def problem(status, title=None, detail=None, errors=None, headers=None):
    default_title, default_detail = GLOSSARY.get(status, ("Error", "An unexpected error occurred."))
    instance = new_id()
    body = {
        "type": PROBLEM_TYPE,
        "title": title or default_title,
        "status": status,
        "detail": detail or default_detail,
        "instance": instance,
    }
    if errors:
        body["errors"] = errors
    extra = [("X-Request-Id", instance)]
    if headers:
        extra.extend(headers)
    return json_response(status, body, extra, content_type="application/problem+json; charset=utf-8")


def subscriber_hash(email):
    return hashlib.md5(email.lower().encode("utf-8")).hexdigest()


class Member:
    __slots__ = ("email", "status", "email_type", "operations", "last_changed")

    def __init__(self, email):
        self.email = email
        self.status = None
        self.email_type = "html"
        self.operations = 0
        self.last_changed = 0.0


class MList:
    def __init__(self, list_id, api_key, name, double_optin, required_merge_fields=()):
        self.id = list_id
        self.required_merge_fields = tuple(required_merge_fields)  # merge tags such as "FNAME"
        self.api_key = api_key
        self.name = name
        self.double_optin = double_optin
        self.created = time.time()
        self.members = {}  # lower-cased email -> Member
        self.by_hash = {}  # subscriber hash -> lower-cased email
        self.counts = dict.fromkeys(
            ("subscribed", "pending", "unsubscribed", "cleaned", "transactional", "archived"), 0
        )
        self.forgotten = set()  # permanently deleted addresses: they cannot be re-imported


class MemberError(Exception):
    """A per-member rejection: ``title`` is the problem title for single calls, ``code`` the batch error_code."""

    def __init__(self, title, message, code="ERROR_GENERIC", field=None, field_message=None):
        super().__init__(message)
        self.title, self.message, self.code, self.field = title, message, code, field
        self.field_message = field_message or message


class Mailchimp(Partner):
    name = "mailchimp"

    def reset(self):
        super().reset()
        self.accounts = {}  # api key -> {"revoked": bool}
        self.lists = {}
        self.rejections = {}  # lower-cased email -> "fake" | "compliance"
        self.busy = {}  # lower-cased email -> signups still refused as "too many recent signups"
        if not hasattr(self, "inflight"):
            self.inflight = {}  # survives reset: requests in flight still release their slot

    def dump(self):
        return {
            "accounts": self.accounts,
            "lists": [
                {
                    "id": m.id,
                    "api_key": m.api_key,
                    "name": m.name,
                    "double_optin": m.double_optin,
                    "required_merge_fields": list(m.required_merge_fields),
                    "created": m.created,
                    "members": [
                        [x.email, x.status, x.email_type, x.operations, x.last_changed] for x in m.members.values()
                    ],
                    "forgotten": sorted(m.forgotten),
                }
                for m in self.lists.values()
            ],
            "rejections": self.rejections,
            "busy": self.busy,
        }

    def load(self, state):
        lists = {}
        for saved in state["lists"]:
            mlist = MList(
                saved["id"], saved["api_key"], saved["name"], saved["double_optin"], saved["required_merge_fields"]
            )
            mlist.created = float(saved["created"])
            for email, status, email_type, operations, last_changed in saved["members"]:
                member = mlist.members[email.lower()] = Member(email)
                member.status, member.email_type = status, email_type
                member.operations, member.last_changed = int(operations), float(last_changed)
                mlist.by_hash[subscriber_hash(email.lower())] = email.lower()
                mlist.counts[status] += 1  # an unknown status is a KeyError: a state of another shape
            mlist.forgotten = set(saved["forgotten"])
            lists[mlist.id] = mlist
        self.accounts = {key: {"revoked": bool(a["revoked"])} for key, a in state["accounts"].items()}
        self.lists = lists
        self.rejections = dict(state["rejections"])
        self.busy = dict(state["busy"])

    # --- control -------------------------------------------------------------------------------------------
    def add_account(self, api_key):
        if not isinstance(api_key, str) or not KEY_RE.match(api_key):
            raise ValueError("'api_key' must look like a Mailchimp key: 32 hex characters, '-', the datacenter (us6).")
        with self.lock:
            self.accounts[api_key] = {"revoked": False}
        return {"api_key": api_key, "dc": api_key.rsplit("-", 1)[1]}

    def add_list(self, api_key, list_id, name, double_optin=False, required_merge_fields=None):
        if not isinstance(list_id, str) or not list_id:
            raise ValueError("'list_id' is required (a string such as 'a1b2c3d4e5').")
        required = required_merge_fields or []
        if not isinstance(required, list) or not all(isinstance(t, str) and t for t in required):
            raise ValueError("'required_merge_fields' must be a list of merge tags such as [\"FNAME\"].")
        if api_key not in self.accounts:
            self.add_account(api_key)
        with self.lock:
            self.lists[list_id] = MList(list_id, api_key, name or list_id, bool(double_optin), required)
        return {
            "list_id": list_id,
            "api_key": api_key,
            "name": name or list_id,
            "double_optin": bool(double_optin),
            "required_merge_fields": required,
        }

    def delete_list(self, list_id):
        with self.lock:
            return self.lists.pop(list_id, None) is not None

    def reject(self, email, kind, count=1):
        if kind not in ("fake", "compliance", "busy"):
            raise ValueError("'kind' must be 'fake', 'compliance' or 'busy'.")
        if not isinstance(email, str) or "@" not in email:
            raise ValueError("'email' must be an email address.")
        if kind == "busy":
            if not isinstance(count, int) or isinstance(count, bool) or count < 1:
                raise ValueError("'count' must be a whole number of at least 1.")
            with self.lock:
                self.busy[email.lower()] = count
            return {"email": email, "kind": kind, "count": count}
        with self.lock:
            self.rejections[email.lower()] = kind
        return {"email": email, "kind": kind}

    def contact_acts(self, list_id, email, action):
        """What the person does from an email: click the confirmation link, or the unsubscribe link."""
        if action not in ("confirm", "unsubscribe"):
            raise ValueError("'action' must be 'confirm' or 'unsubscribe'.")
        with self.lock:
            mlist = self.lists.get(list_id)
            if mlist is None:
                raise ValueError(f"No list '{list_id}' in the sandbox.")
            member = mlist.members.get(email.lower()) if isinstance(email, str) else None
            if member is None:
                raise ValueError(f"'{email}' is not a contact of list '{list_id}'.")
            if action == "confirm" and member.status != "pending":
                raise ValueError(f"{member.email} cannot confirm: the contact is {member.status}, not pending.")
            if action == "unsubscribe":
                # Unsubscribing oneself puts the contact in a compliance state: the list owner cannot resubscribe it.
                self.rejections[member.email.lower()] = "compliance"
            self._set_status(mlist, member, "subscribed" if action == "confirm" else "unsubscribed")
            member.operations += 1
            return {"email": member.email, "status": member.status}

    def inspect(self, list_id):
        with self.lock:
            mlist = self.lists.get(list_id)
            if mlist is None:
                return None
            members = {
                m.email: {"status": m.status, "email_type": m.email_type, "operations": m.operations}
                for m in mlist.members.values()
            }
            counts = {k: mlist.counts[k] for k in ("subscribed", "pending", "unsubscribed", "archived", "cleaned")}
            if mlist.counts["transactional"]:
                counts["transactional"] = mlist.counts["transactional"]
            return {
                "list_id": list_id,
                "name": mlist.name,
                "double_optin": mlist.double_optin,
                "required_merge_fields": list(mlist.required_merge_fields),
                "member_count": mlist.counts["subscribed"],
                "counts": counts,
                "members": members,
            }

    def revoke(self, credential):
        with self.lock:
            account = self.accounts.get(credential)
            if account is None:
                return False
            account["revoked"] = True
            return True

    def control_routes(self):
        return [
            ("POST", r"accounts", control_body(lambda b: self.add_account(b.get("api_key")))),
            (
                "POST",
                r"lists",
                control_body(
                    lambda b: self.add_list(
                        b.get("api_key"),
                        b.get("list_id"),
                        b.get("name"),
                        b.get("double_optin", False),
                        b.get("required_merge_fields"),
                    )
                ),
            ),
            ("GET", r"lists/(?P<ident>[^/]+)", lambda r, ident: found(self.inspect(ident), "list", ident)),
            ("DELETE", r"lists/(?P<ident>[^/]+)", lambda r, ident: deleted(self.delete_list(ident), "list", ident)),
            (
                "POST",
                r"rejections",
                control_body(lambda b: self.reject(b.get("email"), b.get("kind"), b.get("count", 1))),
            ),
            (
                "POST",
                r"contact_acts",
                control_body(lambda b: self.contact_acts(b.get("list_id"), b.get("email"), b.get("action"))),
            ),
        ]

    def seed_demo(self, base):
        demo = DEMO
        if demo["list_id"] not in self.lists:
            self.add_list(demo["api_key"], demo["list_id"], demo["list_name"], double_optin=False)
        return {**demo, "base_url": f"{base}/mailchimp/{demo['dc']}/3.0"}

    def demo_summary(self, demo):
        return f"API key {demo['api_key']}, list {demo['list_id']}"

    def index(self, base):
        return {"prefix": f"{base}/mailchimp/{{dc}}/3.0", "stands_for": "https://{dc}.api.mailchimp.com/3.0"}

    # --- admission: auth, then the 10 simultaneous connections -------------------------------------------
    def admit(self, request):
        parts = request.path.split("/", 3)  # ["", "us6", "3.0", "rest"]
        if len(parts) < 3 or parts[2] != "3.0":
            return problem(404)
        dc = parts[1]
        key = _api_key(request.headers.get("Authorization"))
        if not key:
            return problem(401, "API Key Missing", "Your request did not include an API key.")
        account = self.accounts.get(key)
        if account is None or account["revoked"] or key.rsplit("-", 1)[-1] != dc:
            return problem(401)
        with self.lock:
            busy = self.inflight.get(key, 0)
            if busy >= MAX_CONNECTIONS:
                return problem(429)
            self.inflight[key] = busy + 1
        request.ctx["mailchimp_key"] = key
        request.ctx["mailchimp_rest"] = parts[3] if len(parts) > 3 else ""
        return None

    def release(self, request):
        key = request.ctx.get("mailchimp_key")
        if key is not None:
            with self.lock:
                self.inflight[key] = max(0, self.inflight.get(key, 0) - 1)

    def error_response(self, status, retry_after=None):
        return problem(status, headers=retry_after_header(retry_after))

    # --- routing -----------------------------------------------------------------------------------------
    def handle(self, request):
        key = request.ctx["mailchimp_key"]
        rest = request.ctx["mailchimp_rest"].strip("/")
        parts = rest.split("/") if rest else []
        method = request.method
        if not parts:
            return self._allow(method, ("GET",)) or self._root(key)
        if parts == ["ping"]:
            return self._allow(method, ("GET",)) or json_response(200, {"health_status": "Everything's Chimpy!"})
        if parts[0] != "lists":
            return problem(404)
        if len(parts) == 1:
            return self._allow(method, ("GET",)) or self._all_lists(key)
        mlist = self.lists.get(parts[1])
        if mlist is None or mlist.api_key != key:
            return problem(404)
        if len(parts) == 2:
            if method == "GET":
                return json_response(200, self._list_body(mlist))
            if method == "POST":
                return self._batch(request, mlist)
            return self._allow(method, ("GET", "POST"))
        if parts[2] != "members":
            return problem(404)
        if len(parts) == 3:
            return self._allow(method, ("POST",)) or self._create_member(request, mlist)
        target = parts[3]
        if len(parts) == 6 and parts[4] == "actions" and parts[5] == "delete-permanent":
            return self._allow(method, ("POST",)) or self._delete_permanent(mlist, target)
        if len(parts) != 4:
            return problem(404)
        if method == "GET":
            return self._get_member(mlist, target)
        if method in ("PUT", "PATCH"):
            return self._put_member(request, mlist, target, patch=method == "PATCH")
        if method == "DELETE":
            return self._archive(mlist, target)
        return self._allow(method, ("GET", "PUT", "PATCH", "DELETE"))

    @staticmethod
    def _allow(method, allowed):
        if method in allowed:
            return None
        return problem(405, headers=[("Allow", ", ".join(allowed))])

    def _root(self, key):
        return json_response(
            200,
            {
                "account_id": subscriber_hash(key)[:25],
                "login_id": "0",
                "account_name": "Audience Relay sandbox",
                "email": "sandbox@example.com",
                "role": "owner",
                "total_subscribers": sum(m.counts["subscribed"] for m in self.lists.values() if m.api_key == key),
            },
        )

    def _all_lists(self, key):
        with self.lock:
            lists = [self._list_body(m) for m in self.lists.values() if m.api_key == key]
        return json_response(200, {"lists": lists, "total_items": len(lists)})

    @staticmethod
    def _list_body(mlist):
        counts = mlist.counts
        return {
            "id": mlist.id,
            "web_id": int(subscriber_hash(mlist.id)[:6], 16),
            "name": mlist.name,
            "permission_reminder": "You signed up on our site.",
            "email_type_option": False,
            "double_optin": mlist.double_optin,
            "date_created": iso_stamp(mlist.created),
            "list_rating": 0,
            "stats": {
                "member_count": counts["subscribed"],
                "unsubscribe_count": counts["unsubscribed"],
                "cleaned_count": counts["cleaned"],
                "member_count_since_send": counts["subscribed"],
                "unsubscribe_count_since_send": counts["unsubscribed"],
                "cleaned_count_since_send": counts["cleaned"],
                "campaign_count": 0,
                "total_contacts": sum(counts.values()),
            },
        }

    @staticmethod
    def _member_body(mlist, member):
        return {
            "id": subscriber_hash(member.email),
            "email_address": member.email,
            "unique_email_id": subscriber_hash(mlist.id + member.email)[:10],
            "email_type": member.email_type,
            "status": member.status,
            "list_id": mlist.id,
            "last_changed": iso_stamp(member.last_changed),
        }

    def _find(self, mlist, target):
        """The member a path segment names: its subscriber hash (or, as Mailchimp also accepts, its address)."""
        if "@" in target:
            return mlist.members.get(target.lower())
        email = mlist.by_hash.get(target.lower())
        return None if email is None else mlist.members.get(email)

    # --- the one place a member changes ---------------------------------------------------------------
    @staticmethod
    def _set_status(mlist, member, status):
        mlist.counts[member.status] -= 1
        mlist.counts[status] += 1
        member.status = status
        member.last_changed = time.time()

    def _upsert(
        self,
        mlist,
        email,
        status,
        status_if_new,
        email_type,
        update_existing=True,
        must_exist=False,
        merge_fields=None,
        skip_merge_validation=False,
    ):
        """Apply one member write; returns ("created" | "updated", member) or raises MemberError."""
        if not isinstance(email, str) or not EMAIL_RE.match(email.strip()):
            raise MemberError("Invalid Resource", "Please provide a valid email address.", field="email_address")
        email = email.strip()
        low = email.lower()
        rejection = self.rejections.get(low)
        if rejection == "fake":
            raise MemberError("Invalid Resource", f"{email} looks fake or invalid, please enter a real email address.")
        member = mlist.members.get(low)
        if member is None and must_exist:
            raise MemberError("Resource Not Found", "The requested resource could not be found.")
        if member is not None and not update_existing:
            raise MemberError(
                "Member Exists",
                f"{email} is already a list member, do you want to update? please provide update_existing:true in the "
                "request body",
                code="ERROR_CONTACT_EXISTS",
            )
        is_new = member is None or member.status == "archived"
        new_status = status or (status_if_new if is_new else None) or (None if member is None else member.status)
        if new_status is None or (is_new and new_status == "archived"):
            field = "status_if_new" if member is None else "status"
            raise MemberError(
                "Invalid Resource", f"The '{field}' field is required for a new list member.", field=field
            )
        if new_status not in STATUSES:
            raise MemberError(
                "Invalid Resource",
                f"The status '{new_status}' is not valid. Use one of: {', '.join(STATUSES)}.",
                field="status",
            )
        if email_type is not None and email_type not in EMAIL_TYPES:
            raise MemberError("Invalid Resource", "The email_type must be 'html' or 'text'.", field="email_type")
        if is_new and not skip_merge_validation:
            given = merge_fields if isinstance(merge_fields, dict) else {}
            missing = [tag for tag in mlist.required_merge_fields if not str(given.get(tag) or "").strip()]
            if missing:
                raise MemberError(
                    "Invalid Resource", MERGE_FIELDS_INVALID, field=missing[0], field_message=PLEASE_ENTER
                )
        if new_status in ("subscribed", "pending"):
            if self.busy.get(low) and (member is None or member.status not in ("subscribed", "pending")):
                self.busy[low] -= 1  # a signup refused; one already on the list is not signing up
                raise MemberError("Invalid Resource", TOO_MANY_SIGNUPS.format(email=email))
            if low in mlist.forgotten:
                raise MemberError(
                    "Forgotten Email Not Subscribed",
                    f"{email} was permanently deleted and cannot be re-imported. The contact must re-subscribe to get "
                    "back on the list.",
                )
            if rejection == "compliance":
                raise MemberError(
                    "Member In Compliance State",
                    f"{email} is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be "
                    "subscribed.",
                )
        created = member is None
        if created:
            member = mlist.members[low] = Member(email)
            mlist.by_hash[subscriber_hash(low)] = low
            old_status, old_type = None, None
        else:
            old_status, old_type = member.status, member.email_type
        new_type = email_type or member.email_type
        if old_status == new_status and old_type == new_type:
            self.duplicates += 1  # an identical repeat: it changes nothing, but it is visible here
        else:
            if old_status is not None:
                mlist.counts[old_status] -= 1
            mlist.counts[new_status] += 1
            member.status, member.email_type = new_status, new_type
            member.last_changed = time.time()
        member.operations += 1
        return ("created" if created else "updated"), member

    # --- endpoints ---------------------------------------------------------------------------------------
    def _batch(self, request, mlist):
        try:
            body = request.json()
        except BadJSON:
            return problem(400, "JSON Parse Error", "We encountered an unspecified JSON parsing error.")
        members = body.get("members") if isinstance(body, dict) else None
        if not isinstance(members, list):
            return problem(
                400,
                "Invalid Resource",
                INVALID_RESOURCE,
                [{"field": "members", "message": "Required property 'members' is missing or is not an array."}],
            )
        if len(members) > MAX_BATCH:
            return problem(
                400,
                "Invalid Resource",
                INVALID_RESOURCE,
                [
                    {
                        "field": "members",
                        "message": f"Schema describes array with at most {MAX_BATCH} items, {len(members)} found.",
                    }
                ],
            )
        update_existing = bool(body.get("update_existing", False))
        skip = request.query_params().get("skip_merge_validation", "").lower() == "true"
        new, updated, errors = [], [], []
        with self.lock:
            for entry in members:
                email = entry.get("email_address") if isinstance(entry, dict) else None
                try:
                    if not isinstance(entry, dict):
                        raise MemberError("Invalid Resource", "Each member must be an object.")
                    kind, member = self._upsert(
                        mlist,
                        email,
                        entry.get("status"),
                        entry.get("status_if_new"),
                        entry.get("email_type"),
                        update_existing=update_existing,
                        merge_fields=entry.get("merge_fields"),
                        skip_merge_validation=skip,
                    )
                except MemberError as exc:
                    error = {
                        "email_address": email if isinstance(email, str) else "",
                        "error": exc.message,
                        "error_code": exc.code,
                    }
                    if exc.field:
                        error["field"], error["field_message"] = exc.field, exc.field_message
                    errors.append(error)
                    continue
                (new if kind == "created" else updated).append(self._member_body(mlist, member))
        return json_response(
            200,
            {
                "new_members": new,
                "updated_members": updated,
                "errors": errors,
                "total_created": len(new),
                "total_updated": len(updated),
                "error_count": len(errors),
            },
        )

    def _put_member(self, request, mlist, target, patch=False):
        try:
            body = request.json()
        except BadJSON:
            return problem(400, "JSON Parse Error", "We encountered an unspecified JSON parsing error.")
        if not isinstance(body, dict):
            return problem(400, "Invalid Resource", INVALID_RESOURCE)
        with self.lock:
            existing = self._find(mlist, target)
            email = body.get("email_address")
            if patch:
                if existing is None:
                    return problem(404)
                email = email or existing.email
            elif not isinstance(email, str) or not email:
                return problem(
                    400,
                    "Invalid Resource",
                    INVALID_RESOURCE,
                    [{"field": "email_address", "message": "This value should not be blank."}],
                )
            if "@" in target:
                matches = target.lower() == email.strip().lower()
            else:
                matches = HASH_RE.match(target) is not None and target.lower() == subscriber_hash(email.strip())
            if not matches:
                return problem(
                    400,
                    "Invalid Resource",
                    "The subscriber hash in the URL does not match the email address in the request body.",
                    [{"field": "email_address", "message": "Does not match the subscriber hash."}],
                )
            try:
                kind, member = self._upsert(
                    mlist,
                    email,
                    body.get("status"),
                    body.get("status_if_new"),
                    body.get("email_type"),
                    must_exist=patch,
                    merge_fields=body.get("merge_fields"),
                    skip_merge_validation=request.query_params().get("skip_merge_validation", "").lower() == "true",
                )
            except MemberError as exc:
                if exc.title == "Resource Not Found":
                    return problem(404)
                errors = [{"field": exc.field, "message": exc.field_message}] if exc.field else None
                return problem(400, exc.title, exc.message, errors)
            return json_response(200, self._member_body(mlist, member))

    def _create_member(self, request, mlist):
        try:
            body = request.json()
        except BadJSON:
            return problem(400, "JSON Parse Error", "We encountered an unspecified JSON parsing error.")
        if not isinstance(body, dict):
            return problem(400, "Invalid Resource", INVALID_RESOURCE)
        with self.lock:
            email = body.get("email_address")
            existing = mlist.members.get(email.strip().lower()) if isinstance(email, str) else None
            if existing is not None and existing.status != "archived":
                return problem(
                    400, "Member Exists", f"{email} is already a list member. Use PUT to insert or update list members."
                )
            try:
                kind, member = self._upsert(
                    mlist,
                    email,
                    body.get("status"),
                    None,
                    body.get("email_type"),
                    merge_fields=body.get("merge_fields"),
                    skip_merge_validation=request.query_params().get("skip_merge_validation", "").lower() == "true",
                )
            except MemberError as exc:
                errors = [{"field": exc.field, "message": exc.field_message}] if exc.field else None
                return problem(400, exc.title, exc.message, errors)
            return json_response(200, self._member_body(mlist, member))

    def _get_member(self, mlist, target):
        with self.lock:
            member = self._find(mlist, target)
            if member is None:
                return problem(404)
            return json_response(200, self._member_body(mlist, member))

    def _archive(self, mlist, target):
        with self.lock:
            member = self._find(mlist, target)
            if member is None:
                return problem(404)
            if member.status in UNREMOVABLE:
                return problem(405, detail=CANNOT_REMOVE)
            self._set_status(mlist, member, "archived")
            member.operations += 1
        return empty_response(204)

    def _delete_permanent(self, mlist, target):
        with self.lock:
            member = self._find(mlist, target)
            if member is None:
                return problem(404)
            mlist.counts[member.status] -= 1
            low = member.email.lower()
            del mlist.members[low]
            mlist.by_hash.pop(subscriber_hash(low), None)
            mlist.forgotten.add(low)
        return empty_response(204)


def _api_key(header):
    """The API key from HTTP Basic (any username, the key as password), ``apikey KEY`` or ``Bearer KEY``."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    scheme = scheme.lower()
    value = value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    if scheme in ("apikey", "bearer"):
        return value or None
    return None
