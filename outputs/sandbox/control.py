"""The ``/_sandbox/`` control and inspection API: configure accounts, read what each partner holds, inject faults.

Every answer is JSON. A bad request gets 400 ``{"error": "<what is wrong>"}``; an unknown thing gets 404.
"""

import re
from urllib.parse import unquote

from .common import BadJSON, control_body, json_response
from .faults import FaultError


def seed_demo(sandbox):
    """Create the demo accounts that are missing; returns them with the URLs an output should point at.

    What the sandbox already holds (a state it restored, the list `make demo` filled) is left as it is: seeding
    it again would empty the demo's Mailchimp list, and un-revoke a key a person revoked on purpose.
    """
    base = sandbox.url or ""
    return {name: partner.seed_demo(base) for name, partner in sandbox.partners.items()}


class Control:
    def __init__(self, sandbox):
        self.sandbox = sandbox
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
        ]
        for name, partner in sandbox.partners.items():
            self.routes += [
                (method, f"{name}/{pattern}", handler) for method, pattern, handler in partner.control_routes()
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

    @staticmethod
    def body(action):
        return control_body(action)

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
        revocable = [name for name, p in self.sandbox.partners.items() if p.revocable]
        if partner not in revocable:
            return json_response(400, {"error": f"'partner' must be one of {', '.join(revocable)}."})
        if not isinstance(credential, str) or not credential:
            return json_response(400, {"error": "'credential' is required (the key, token or username)."})
        if not self.sandbox.partners[partner].revoke(credential):
            return json_response(404, {"error": f"No {partner} credential '{credential}' in the sandbox."})
        return json_response(200, {"partner": partner, "revoked": credential})
