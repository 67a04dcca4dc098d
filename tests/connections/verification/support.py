"""What the verification tests share: the hint catalogue, `assert_hint` and small builders of outputs and connections.

Every hint a connection can show (the shared ones and each partner's, read from the registry) is asserted through
`assert_hint` in this folder; `test_catalogue.py` fails when one of them is never asserted.
"""

import json
import re
import string
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import import_module
from urllib.parse import urlsplit

from audiences.models import Audience, Profile
from connections import services
from connections.hints import HINTS
from connections.verification import verify
from outputs.models import Output
from outputs.partners import registry
from tests.audiences.factories import MembershipFactory
from tests.connections.factories import StaticAudienceFactory, add_members, sandbox_output
from tests.outputs.factories import LIST_ID


def partner_hints(partner) -> dict:
    """A partner's hints, declared beside its adapter (on its class, or in its module)."""
    hints = getattr(partner, "HINTS", None)
    return hints if hints is not None else import_module(type(partner).__module__).HINTS


CATALOGUE = {**HINTS, **{f"{p.slug}:{k}": v for p in registry.all_partners() for k, v in partner_hints(p).items()}}

INVALID_KEY = (
    "Mailchimp rejected the API key: Your API key may be invalid, or you've attempted to access the wrong datacenter."
)
KEY_HINT = (
    "Check that the key is active and that its suffix (us6) matches your account's data center: "
    "Account → Extras → API keys."
)
TRANSIENT = "This is usually temporary; verification runs again on its schedule."


def assert_hint(check, key, text):
    """`check` shows the hint `key` of the catalogue ("paused", "mailchimp:credentials"), worded exactly `text`."""
    assert check.hint == text
    pattern = "".join(
        re.escape(literal) + (".+?" if field is not None else "")
        for literal, field, _, _ in string.Formatter().parse(CATALOGUE[key])
    )
    assert re.fullmatch(pattern, text, re.DOTALL), f"{text!r} is not worded by the hint {key!r}"


def by_name(checks) -> dict:
    return {c.name: c for c in checks}


def emails(n, start=0):
    return [f"u{i}@example.com" for i in range(start, start + n)]


def aaid(n):
    return f"00000000-0000-4000-8000-{n:012d}"


def output(kind, settings, secrets, base_url, name=None):
    out = Output(kind=kind, name=name or kind.title(), base_url=base_url, settings=settings)
    out.set_secrets(secrets)
    out.save()
    return out


def mailchimp_connection(sandbox, members=3, **output_kwargs):
    out = sandbox_output(sandbox, **output_kwargs)
    audience = StaticAudienceFactory(name="Potential Parisians")
    add_members(audience, emails=emails(members))
    return services.connect(audience, out, {"list_id": LIST_ID})


def reverify(conn):
    conn.refresh_from_db()
    return verify(conn)


@contextmanager
def stand_in(routes):
    """A tiny HTTP server for what the sandbox cannot be told to do: {(method, path): (status, body, headers)}."""

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body, headers = routes[(self.command, urlsplit(self.path).path)]
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


# Braze audiences sharing members, for the cap checks here and tests/connections/test_braze_membership.py.

BRAZE_KEY = "7c1e5a90-braze-sandbox-key-0001"


def braze_audiences(sandbox, n, membership=None, array_cap=None):
    """`n` audiences connected to one Braze output, one user in all of them and another in the first only."""
    sandbox.braze_key(BRAZE_KEY, ["users.track"])
    settings = {"rest_endpoint": "https://rest.iad-01.braze.com"}
    if array_cap:
        settings["array_cap"] = array_cap
    out = output("braze", settings, {"api_key": BRAZE_KEY}, f"{sandbox.base_url}/braze")
    audiences = [StaticAudienceFactory() for _ in range(n)]
    add_members(audiences[0], emails=emails(2))
    everywhere = Profile.objects.get(identities__value="u0@example.com")
    for audience in audiences[1:]:
        MembershipFactory(audience=audience, profile=everywhere)
    settings = {"identifier": "email", **({"membership": membership} if membership else {})}
    return [services.connect(a, out, settings) for a in audiences]


# Audience IDs far past what the tests' sequences reach, so a test can choose them: sorted as numbers, these
# three are not sorted as text.
IDS = (7_000_000, 40_000_000, 120_000_000)


def string_audiences(sandbox, ids=IDS, settings=None):
    """Audiences with these IDs connected to one Braze output in string mode: u0 in all of them, u1 in the first."""
    sandbox.braze_key(BRAZE_KEY, ["users.track"])
    out = output(
        "braze", {"rest_endpoint": "https://rest.iad-01.braze.com"}, {"api_key": BRAZE_KEY}, f"{sandbox.base_url}/braze"
    )
    audiences = [StaticAudienceFactory(pk=pk) for pk in ids]
    add_members(audiences[0], emails=["u0@example.com", "u1@example.com"])
    for audience in audiences[1:]:
        MembershipFactory(audience=audience, profile=u0())
        Audience.objects.filter(pk=audience.pk).update(size=1)
    settings = {"identifier": "email", "membership": "string", **(settings or {})}
    return [services.connect(a, out, settings) for a in audiences]


def u0():
    return Profile.objects.get(identities__value="u0@example.com")
