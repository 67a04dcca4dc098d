"""The ``/_sandbox/`` control and inspection API: configure accounts, read what each partner holds, inject faults.

Every answer is JSON. A bad request gets 400 ``{"error": "<what is wrong>"}``; an unknown thing gets 404.
"""

import re
from urllib.parse import unquote

from .common import BadJSON, json_response
from .faults import PARTNERS, FaultError

DEMO = {
    "mailchimp": {
        "api_key": "0123456789abcdef0123456789abcdef-us6",
        "dc": "us6",
        "list_id": "a1b2c3d4e5",
        "list_name": "Audience Relay demo",
    },
    "xandr": {"username": "demo", "password": "demo-pass", "member_id": 1234, "segment_id": 5678},
    "braze": {"api_key": "braze-demo-key"},
    "facebook": {
        "access_token": "EAAdemo",
        "ad_account_id": "act_1001",
        "audience_id": "23850000000000001",
        "audience_name": "Audience Relay demo",
    },
    "webhook": {"name": "demo", "secret": "whsec-demo"},
}


def seed_demo(sandbox):
    """Create the demo accounts that are missing; returns them with the URLs an output should point at.

    What the sandbox already holds (a state it restored, the list `make demo` filled) is left as it is: seeding
    it again would empty the demo's Mailchimp list, and un-revoke a key a person revoked on purpose.
    """
    base = sandbox.url or ""
    mc, xa, br, fb, wh = (DEMO[p] for p in ("mailchimp", "xandr", "braze", "facebook", "webhook"))
    p = sandbox.partners
    if mc["list_id"] not in p["mailchimp"].lists:
        p["mailchimp"].add_list(mc["api_key"], mc["list_id"], mc["list_name"], double_optin=False)
    if xa["username"] not in p["xandr"].accounts:
        p["xandr"].add_account(xa["username"], xa["password"], xa["member_id"])
    if xa["segment_id"] not in p["xandr"].segments:
        p["xandr"].add_segment(xa["member_id"], xa["segment_id"], "Audience Relay demo")
    if br["api_key"] not in p["braze"].keys:
        p["braze"].add_key(br["api_key"])
    if fb["access_token"] not in p["facebook"].tokens:
        p["facebook"].add_token(fb["access_token"], fb["ad_account_id"])
    if fb["audience_id"] not in p["facebook"].audiences:
        p["facebook"].add_audience(fb["audience_id"], fb["ad_account_id"], fb["audience_name"])
    if wh["name"] not in p["webhook"].endpoints:
        p["webhook"].add_endpoint(wh["name"], wh["secret"])
    return {
        "mailchimp": {**mc, "base_url": f"{base}/mailchimp/{mc['dc']}/3.0"},
        "xandr": {**xa, "base_url": f"{base}/xandr"},
        "braze": {**br, "base_url": f"{base}/braze"},
        "facebook": {**fb, "base_url": f"{base}/facebook"},
        "webhook": {**wh, "url": f"{base}/webhook/{wh['name']}"},
    }


class Control:
    def __init__(self, sandbox):
        self.sandbox = sandbox
        p = sandbox.partners
        self.routes = [
            ("GET", r"", self.index),
            ("POST", r"reset", self.reset),
            ("POST", r"seed/demo", self.seed),
            ("GET", r"stats", self.stats),
            ("GET", r"faults", self.list_faults),
            ("POST", r"faults", self.add_fault),
            ("DELETE", r"faults", self.clear_faults),
            ("POST", r"revoke", self.revoke),
            ("POST", r"clock", self.body(lambda b: sandbox.advance_clock(b.get("advance_days", 0)))),
            ("POST", r"mailchimp/accounts", self.body(lambda b: p["mailchimp"].add_account(b.get("api_key")))),
            (
                "POST",
                r"mailchimp/lists",
                self.body(
                    lambda b: p["mailchimp"].add_list(
                        b.get("api_key"),
                        b.get("list_id"),
                        b.get("name"),
                        b.get("double_optin", False),
                        b.get("required_merge_fields"),
                    )
                ),
            ),
            (
                "GET",
                r"mailchimp/lists/(?P<ident>[^/]+)",
                lambda r, ident: self.found(p["mailchimp"].inspect(ident), "list", ident),
            ),
            (
                "DELETE",
                r"mailchimp/lists/(?P<ident>[^/]+)",
                lambda r, ident: self.deleted(p["mailchimp"].delete_list(ident), "list", ident),
            ),
            (
                "POST",
                r"mailchimp/rejections",
                self.body(lambda b: p["mailchimp"].reject(b.get("email"), b.get("kind"), b.get("count", 1))),
            ),
            (
                "POST",
                r"mailchimp/contact_acts",
                self.body(lambda b: p["mailchimp"].contact_acts(b.get("list_id"), b.get("email"), b.get("action"))),
            ),
            ("POST", r"braze/keys", self.body(lambda b: p["braze"].add_key(b.get("api_key"), b.get("permissions")))),
            ("GET", r"braze/users", lambda r: json_response(200, p["braze"].inspect())),
            ("POST", r"braze/rate_limit", self.body(lambda b: p["braze"].set_rate_limit(b.get("per_minute")))),
            ("POST", r"braze/array_cap", self.body(lambda b: p["braze"].set_array_cap(b.get("cap")))),
            ("POST", r"braze/maintenance", self.body(lambda b: p["braze"].set_maintenance(b.get("on")))),
            (
                "POST",
                r"xandr/accounts",
                self.body(
                    lambda b: p["xandr"].add_account(
                        b.get("username"), b.get("password"), b.get("member_id"), b.get("file_format")
                    )
                ),
            ),
            (
                "POST",
                r"xandr/segments",
                self.body(
                    lambda b: p["xandr"].add_segment(b.get("member_id"), b.get("segment_id"), b.get("short_name"))
                ),
            ),
            (
                "GET",
                r"xandr/segments/(?P<ident>[^/]+)",
                lambda r, ident: self.found(p["xandr"].inspect(ident, r.base_url()), "segment", ident),
            ),
            (
                "POST",
                r"facebook/tokens",
                self.body(
                    lambda b: p["facebook"].add_token(
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
                r"facebook/audiences",
                self.body(
                    lambda b: p["facebook"].add_audience(
                        b.get("audience_id"), b.get("ad_account_id"), b.get("name"), b.get("flagged", False)
                    )
                ),
            ),
            (
                "POST",
                r"facebook/rate_limit",
                self.body(lambda b: p["facebook"].set_rate_limit(b.get("ad_account_id"), b.get("calls_per_hour"))),
            ),
            ("POST", r"facebook/clock", self.body(lambda b: p["facebook"].advance(b.get("minutes")))),
            (
                "GET",
                r"facebook/audiences/(?P<ident>[^/]+)",
                lambda r, ident: self.found(p["facebook"].inspect(ident), "audience", ident),
            ),
            (
                "DELETE",
                r"facebook/audiences/(?P<ident>[^/]+)",
                lambda r, ident: self.deleted(p["facebook"].delete_audience(ident), "audience", ident),
            ),
            (
                "POST",
                r"webhook/endpoints",
                self.body(lambda b: p["webhook"].add_endpoint(b.get("name"), b.get("secret"), b.get("status", 200))),
            ),
            (
                "GET",
                r"webhook/endpoints/(?P<ident>[^/]+)",
                lambda r, ident: self.found(p["webhook"].inspect(ident), "endpoint", ident),
            ),
        ]
        self.compiled = [(m, re.compile(f"^{pattern}$"), handler) for m, pattern, handler in self.routes]

    def handle(self, request):
        path = request.path[len("/_sandbox") :].strip("/")
        allowed = []
        for method, pattern, handler in self.compiled:
            match = pattern.match(path)
            if match is None:
                continue
            if method != request.method:
                allowed.append(method)
                continue
            return handler(request, **{k: unquote(v) for k, v in match.groupdict().items()})
        if allowed:
            return json_response(
                405, {"error": f"Use {' or '.join(allowed)} for /_sandbox/{path}."}, [("Allow", ", ".join(allowed))]
            )
        return json_response(404, {"error": f"There is no control endpoint /_sandbox/{path}."})

    # --- helpers -----------------------------------------------------------------------------------------
    @staticmethod
    def body(action):
        def handler(request):
            try:
                payload = request.json() if request.body else {}
            except BadJSON:
                return json_response(400, {"error": "The request body is not valid JSON."})
            if not isinstance(payload, dict):
                return json_response(400, {"error": "The request body must be a JSON object."})
            try:
                return json_response(201, action(payload))
            except ValueError as exc:
                return json_response(400, {"error": str(exc)})

        return handler

    @staticmethod
    def found(value, kind, ident):
        if value is None:
            return json_response(404, {"error": f"No {kind} '{ident}' in the sandbox."})
        return json_response(200, value)

    @staticmethod
    def deleted(done, kind, ident):
        if not done:
            return json_response(404, {"error": f"No {kind} '{ident}' in the sandbox."})
        return json_response(200, {"deleted": ident})

    # --- endpoints -----------------------------------------------------------------------------------------
    def index(self, request):
        return json_response(200, self.sandbox.describe(request.base_url()))

    def reset(self, request):
        self.sandbox.reset()
        return json_response(200, {"reset": True})

    def seed(self, request):
        return json_response(201, seed_demo(self.sandbox))

    def stats(self, request):
        return json_response(200, self.sandbox.stats())

    def list_faults(self, request):
        return json_response(200, {"faults": self.sandbox.faults.describe()})

    def add_fault(self, request):
        try:
            spec = request.json()
        except BadJSON:
            return json_response(400, {"error": "The request body is not valid JSON."})
        try:
            return json_response(201, self.sandbox.faults.add(spec))
        except FaultError as exc:
            return json_response(400, {"error": str(exc)})

    def clear_faults(self, request):
        return json_response(200, {"cleared": self.sandbox.faults.clear()})

    def revoke(self, request):
        try:
            spec = request.json()
        except BadJSON:
            return json_response(400, {"error": "The request body is not valid JSON."})
        partner = spec.get("partner") if isinstance(spec, dict) else None
        credential = spec.get("credential") if isinstance(spec, dict) else None
        if partner not in PARTNERS or partner == "webhook":
            return json_response(400, {"error": "'partner' must be one of mailchimp, braze, xandr, facebook."})
        if not isinstance(credential, str) or not credential:
            return json_response(400, {"error": "'credential' is required (the key, token or username)."})
        if not self.sandbox.partners[partner].revoke(credential):
            return json_response(404, {"error": f"No {partner} credential '{credential}' in the sandbox."})
        return json_response(200, {"partner": partner, "revoked": credential})
