"""The partner contract: what every partner module declares and implements.

A partner module is handed plain data (an account's settings, a connection's
settings, a list of messages) and returns plain data (checks, per-message
outcomes). It knows nothing of our models or our queue; the forwarding engine
in `connections` does the bookkeeping, retries and backoff.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

from outputs.partners import destinations, redact

Action = Literal["add", "remove"]


# --- identity normalization: the values we store are already normalized per
# type (see identities); these shape them the way a partner wants.


def raw(value: str) -> str:
    return value


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def sha256_email(value: str) -> str:
    return sha256_hex(value.strip().lower())


def sha256_phone(value: str) -> str:
    # Partners that hash phone numbers want digits only, country code included.
    return sha256_hex("".join(ch for ch in value if ch.isdigit()))


# --- declarations ------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One configuration field, declared once and rendered by shared code everywhere."""

    name: str
    label: str
    help: str = ""
    kind: Literal["text", "secret", "bool", "choice", "int", "url", "multichoice"] = "text"
    required: bool = True
    default: Any = None
    choices: tuple[tuple[str, str], ...] = ()
    # Extra check on a cleaned value: return an error sentence, or "" when fine.
    validate: Callable[[Any], str] | None = None
    # True when the value decides where requests carrying credentials or member data go (a webhook's URL,
    # Braze's REST endpoint): changing it is changing credentials (outputs.permissions), like a secret.
    destination: bool = False
    # A connection setting that does not say where members go (how often to refresh them, say): changing it
    # does not send the audience's members again.
    backfill_on_change: bool = True

    @property
    def secret(self) -> bool:
        return self.kind == "secret"


@dataclass(frozen=True)
class Delivery:
    """How messages reach the partner: as they come, or queued and uploaded at an interval."""

    mode: Literal["realtime", "interval"] = "realtime"
    every_minutes: int | None = None  # interval: upload at least this often …
    every_messages: int | None = None  # … or as soon as this many are waiting

    def describe(self) -> str:
        if self.mode == "realtime":
            return "realtime"
        parts = []
        if self.every_minutes:
            parts.append(f"every {self.every_minutes} minutes")
        if self.every_messages:
            parts.append(f"or when {self.every_messages:,} messages are waiting")
        return "interval: " + " ".join(parts)


# --- what flows in and out -----------------------------------------------------


@dataclass(frozen=True)
class Account:
    """An output as the partner module sees it: its settings (secrets decrypted) and base URL."""

    settings: dict
    base_url: str = ""  # empty: the partner's real host


class Message(NamedTuple):
    """One membership change as a partner module is handed it. Immutable; a named tuple rather than a frozen
    dataclass because a drain makes one per message (500 a batch), and a tuple is made in half the time."""

    key: Any  # opaque to the partner; outcomes are keyed by it
    action: Action
    identity_type: str
    value: str  # normalized as we store it; the partner shapes it with its normalizer
    audience: str  # audience name, for partners that tag or label by it
    # The member's current audiences (IDs) among the connections sharing a list the partner writes whole (a
    # Braze string attribute: `SharedList.whole`), read when the batch is sent; None for every other partner.
    audiences: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Outcome:
    status: Literal["accepted", "rejected", "retry"]
    reason: str = ""
    retry_after: float | None = None  # seconds, when the partner said so


ACCEPTED = Outcome("accepted")


@dataclass(frozen=True)
class Fault:
    """A failure only a person can fix; the connection stops until someone resumes it."""

    kind: Literal["credentials", "destination", "account"]
    message: str  # what happened, one sentence
    hint: str  # what to do, one or two sentences


@dataclass
class Attempt:
    """One HTTP request as the delivery record keeps it (no secrets, body truncated)."""

    method: str
    path: str
    status: int | None
    duration_ms: int
    response_excerpt: str = ""
    refused: str = ""  # why the destination was refused (outputs.netguard): no request was made
    fault: Fault | None = None  # the answer was about the destination itself (outputs.partners.http)


@dataclass
class SendResult:
    outcomes: dict[Any, Outcome] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)
    fault: Fault | None = None

    def mark_all(self, messages, outcome: Outcome) -> None:
        for m in messages:
            self.outcomes.setdefault(m.key, outcome)


@dataclass(frozen=True)
class SharedList:
    """One list per member at the partner that several connections of one output write (a Braze array or
    string attribute): the connections whose stored settings include `matching`."""

    matching: dict
    cap: int  # how much of it the partner keeps, in `unit`s
    unit: Literal["audiences", "characters"] = "audiences"  # characters: the audience IDs, comma-separated
    # The partner replaces the list whole at each write, so each message must carry the member's complete
    # current list (`Message.audiences`), which the engine reads from membership when it sends the batch.
    whole: bool = False


@dataclass(frozen=True)
class Check:
    name: str
    status: Literal["ok", "warning", "failing"]
    detail: str
    hint: str = ""


DESTINATION_HINT = (
    "Change the URL (or base URL) of this output to the partner's public address. Private addresses are "
    "reached only where ALLOW_PRIVATE_DESTINATIONS is on, and base URL overrides only where "
    "ALLOW_BASE_URL_OVERRIDE is on, for development and the partner sandbox."
)


class Partner:
    """Base of every partner module: declarations as class attributes, and the hooks `_check_credentials`,
    `_verify` and `_send` (and `_partner_count` where the partner's API says how many it holds) to write.

    Callers use the public methods of the same names, which do around each hook what concerns every partner.
    """

    slug: ClassVar[str]
    name: ClassVar[str]
    pattern: ClassVar[Literal["direct", "indirect"]]
    docs_url: ClassVar[str] = ""
    default_base_url: ClassVar[str] = ""
    # The hosts the partner's real API lives on ("*.example.com": any name under example.com). Credentials and
    # member data go nowhere else unless ALLOW_BASE_URL_OVERRIDE is on. Empty: the partner has no host of its
    # own (a webhook), so its destination setting is the destination and only who may change it guards it.
    hosts: ClassVar[tuple[str, ...]] = ()
    # identity type -> how its value is shaped for the partner
    identity_types: ClassVar[dict[str, Callable[[str], str]]] = {}
    output_settings: ClassVar[tuple[Setting, ...]] = ()
    connection_settings: ClassVar[tuple[Setting, ...]] = ()
    batch_size: ClassVar[int] = 100
    max_concurrency: ClassVar[int] = 1
    requests_per_second: ClassVar[float | None] = None
    delivery: ClassVar[Delivery] = Delivery()
    # True when partner_count is the partner's estimate (of matched people, updated with a delay) rather than
    # a count of what it holds: it is shown, but not compared with what was forwarded.
    count_is_estimate: ClassVar[bool] = False
    # Days after which the partner drops a member it was not sent again (Xandr: 180); None when it keeps them.
    membership_expires_days: ClassVar[int | None] = None
    # How a secret the partner echoes back is shown in what we keep of its answers (`scrub`).
    secret_mark: ClassVar[str] = redact.SECRET

    def accepted_types(self, connection_settings: dict) -> set[str]:
        """Identity types this connection forwards; a partner may let a connection narrow them."""
        return set(self.identity_types)

    def refresh_days(self, connection_settings: dict) -> int | None:
        """Members whose last delivered add is older than this are added again (connections.refresh)."""
        return None

    def base_url(self, account: Account) -> str:
        return (account.base_url or self.default_base_url).rstrip("/")

    # The sandbox's demo account (POST /_sandbox/seed/demo) as this partner's (output settings, connection
    # settings): a test verifies it against the seeded sandbox for every partner of the registry.
    sandbox_demo: ClassVar[tuple[dict, dict]] = ({}, {})

    def sandbox_destination(self, sandbox_url: str) -> dict[str, str]:
        """The fields that point an output of this partner at the partner sandbox served at `sandbox_url`:
        "base_url" (the base URL override) and any output setting that must go with it, each exactly as the
        output's form takes it. `partner_sandbox` prints them and the demo saves them; a test saves them for
        every partner and verifies against the sandbox, so they cannot drift from `base_url`."""
        return {"base_url": f"{sandbox_url}/{self.slug}"}

    # --- what callers use: the shared work around each hook ------------------------------------------------
    # Requests made inside run with their partner known to outputs.partners.http, which sends nothing to a host
    # the partner does not declare unless overrides are allowed (outputs.partners.destinations).

    def check_credentials(self, account: Account) -> Check:
        """Whether the output's credentials work; raises TransportError when the partner does not answer."""
        with destinations.working_for(self):
            return self._check_credentials(account)

    def verify(self, account: Account, connection_settings: dict) -> list[Check]:
        """Credentials, destination and account preconditions, each with a hint when it fails.

        A partner that does not answer raises TransportError (the caller says "Could not reach …" the same way
        for every partner); a temporary error answer (429, 5xx) is a warning, not a failure.
        """
        with destinations.working_for(self):
            return self._verify(account, connection_settings)

    def partner_count(self, account: Account, connection_settings: dict) -> int | None:
        """How many members the partner reports holding, where its API says; None when it cannot tell."""
        with destinations.working_for(self):
            return self._partner_count(account, connection_settings)

    def send(self, account: Account, connection_settings: dict, messages: list[Message]) -> SendResult:
        """Deliver one batch; every message gets an outcome unless a fault stops the batch.

        What concerns every partner is done here, so no partner module can forget it:
        - A refused destination (outputs.netguard) faults the connection: the URL must change, a retry cannot
          help. A partner module sees it as a TransportError, like any request without an answer, and may have
          turned it into retry outcomes; its attempt says it was refused.
        - So does an answer about the destination itself (a redirect, 401/403/404/410 the partner module does
          not read itself, a web page where JSON was expected: outputs.partners.http.DestinationAnswer),
          whatever the partner module made of it: only a rejection the partner attributes to one member is
          final, so nothing else may turn a batch into rejections. The fault gives every message of the batch
          back to the queue.
        - What a delivery record keeps of the partner's answers loses the output's secrets and the batch's
          identities (outputs.partners.redact).
        """
        from outputs.partners import http  # http imports this module

        try:
            with destinations.working_for(self):
                result = self._send(account, connection_settings, messages)
        except http.DestinationRefused as exc:
            result, refused = SendResult(), str(exc)
        except http.DestinationAnswer as exc:
            result, refused = SendResult(fault=exc.fault), ""
        else:
            refused = next((a.refused for a in result.attempts if a.refused), "")
        if refused and result.fault is None:
            result.fault = Fault("destination", refused, DESTINATION_HINT)
        if result.fault is None:
            result.fault = next((a.fault for a in result.attempts if a.fault), None)
        redact.batch(result, self, account, messages)  # the answers lose the secrets (as `scrub`) and identities
        return result

    def scrub(self, account: Account, text: str, *extra: str) -> str:
        """Partner text is shown to people: `text` without the output's secrets (nor `extra` ones, such as a
        session token), which partners echo in their answers ("Invalid API key: …")."""
        return redact.secrets(text, *redact.account_secrets(self, account), *extra, mark=self.secret_mark)

    # --- what a partner writes ------------------------------------------------------------------------------

    def _check_credentials(self, account: Account) -> Check:
        raise NotImplementedError

    def _verify(self, account: Account, connection_settings: dict) -> list[Check]:
        raise NotImplementedError

    def _send(self, account: Account, connection_settings: dict, messages: list[Message]) -> SendResult:
        raise NotImplementedError

    def _partner_count(self, account: Account, connection_settings: dict) -> int | None:
        return None

    # --- optional: a list several connections share ---------------------------------------------------------

    def shared_list(self, output_settings: dict, connection_settings: dict) -> SharedList | None:
        """When the partner keeps a member's audiences in one list that connections of an output share (a Braze
        array or string attribute): which connections share it, how much of it the partner keeps, and whether
        each write replaces it whole. None when each connection writes only its own audience.

        Verification counts, in one query, the members past the cap (`cap_check`); for a list written whole,
        the engine reads each batch's members' current lists in one query and hands them over in the messages."""
        return None

    def cap_check(self, over: int, shared: SharedList, connection_settings: dict) -> Check:
        """The check for `over` members (0: none) past the cap of the list they share, worded by the partner."""
        raise NotImplementedError
