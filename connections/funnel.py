"""The size funnel: why the partner's count differs from the audience's, step by step, in words.

audience members → members with an identity the partner accepts → identities
valid after normalization → forwarded → accepted by the partner → the
partner's own count. Each step is one aggregate query over the set.
"""

from dataclasses import asdict, dataclass

from django.db.models import Count, Exists, Max, OuterRef

from audiences.models import Identity
from connections.models import Connection, OutboxMessage
from connections.variants import members as members_of
from identities import ADVERTISING_TYPES, DEVICE_TYPES, SINGULARS, plural_phrase
from outputs import hooks as output_hooks
from outputs.partners.base import Partner
from outputs.partners.http import TransportError


def types_phrase(types) -> str:
    types = sorted(types)
    if set(types) == {"email"}:
        return "email addresses"
    if types and set(types) <= set(ADVERTISING_TYPES):
        return "mobile advertising IDs"
    if types and set(types) <= set(DEVICE_TYPES):
        return "device IDs"
    return plural_phrase(types)


def _has(n: int) -> str:
    return f"{n:,} has" if n == 1 else f"{n:,} have"


def _identities_reason(members: int, identities: int, name: str) -> str:
    if identities > members:
        who = "The member has" if members == 1 else f"The {members:,} members have"
        return (
            f"{who} {identities:,} identities {name} accepts (some have more than one, and each is sent); "
            "all were normalized and validated when they arrived."
        )
    if identities == 1:
        return "1 identity, normalized and validated when it arrived."
    return f"{identities:,} identities, all normalized and validated when they arrived."


def _or(nouns) -> str:
    return nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " or " + nouns[-1]


def _matches(conn: Connection, size: int) -> str:
    users = f"{size:,} user{'' if size == 1 else 's'}"
    if conn.variant_id:
        return f"Variant {conn.variant.name} ({conn.variant.percent}% of the audience) holds {users}."
    return f"The audience matches {users}."


@dataclass
class Step:
    name: str
    count: int | None
    lost: int
    reason: str


@dataclass
class Funnel:
    steps: list[Step]
    summary: str

    def as_dict(self) -> dict:
        return {"steps": [asdict(s) for s in self.steps], "summary": self.summary}


def compute(conn: Connection, partner_count=...) -> Funnel:
    partner = conn.partner
    name = partner.name
    types = sorted(partner.accepted_types(conn.settings))
    members = members_of(conn)
    accepted_identity = Identity.objects.filter(profile_id=OuterRef("profile_id"), type__in=types)
    size = members.count()
    reachable = members.filter(Exists(accepted_identity)).count()
    if conn.variant_id:
        identities = Identity.objects.filter(type__in=types, profile_id__in=members.values("profile_id"))
    else:
        identities = Identity.objects.filter(type__in=types, profile__memberships__audience_id=conn.audience_id)
    per_type = dict(identities.values_list("type").annotate(n=Count("profile_id", distinct=True)))
    identity_count = identities.count()

    latest = OutboxMessage.objects.filter(connection=conn).values("identity_type", "value").annotate(last=Max("id"))
    member_identity = Identity.objects.filter(type=OuterRef("identity_type"), value=OuterRef("value"))
    if conn.variant_id:
        member_identity = member_identity.filter(profile_id__in=members.values("profile_id"))
    else:
        member_identity = member_identity.filter(profile__memberships__audience_id=conn.audience_id)
    state = dict(
        OutboxMessage.objects.filter(pk__in=latest.values("last"), action="add")
        .filter(Exists(member_identity))
        .values_list("state")
        .annotate(n=Count("pk"))
    )
    waiting = sum(
        state.get(s, 0)
        for s in (OutboxMessage.State.PENDING, OutboxMessage.State.IN_FLIGHT, OutboxMessage.State.REPLACED)
    )
    failed = state.get(OutboxMessage.State.FAILED, 0)
    rejected = state.get(OutboxMessage.State.REJECTED, 0)
    forwarded = max(0, identity_count - waiting - failed)
    accepted = max(0, forwarded - rejected)
    if partner_count is ...:
        try:
            with output_hooks.partner_request(conn.output):
                partner_count = partner.partner_count(conn.output.account(), conn.settings)
        except (TransportError, output_hooks.SlotsBusy):
            partner_count = None

    if not types:
        reachable_reason = f"This connection forwards no identity types, so {name} receives nothing."
    else:
        held = [t for t in types if per_type.get(t)]
        have = "; ".join(f"{_has(per_type[t])} {SINGULARS[t]}" for t in held)
        have = have or "None has " + _or([SINGULARS[t] for t in types])
        receives = f"{reachable:,}"
        if len(held) > 1:
            # A member may hold several of the types, so the lines above need not add up to the members reached.
            several = " (some have more than one)" if sum(per_type[t] for t in held) > reachable else ""
            receives = f"the {reachable:,} member{'' if reachable == 1 else 's'} with at least one of them{several}"
        reachable_reason = f"{have}; {name} accepts only {types_phrase(types)}, so {name} receives {receives}."
    if partner_count is None and type(partner).partner_count is Partner.partner_count:
        count_reason = f"{name} does not report a count."
    elif partner_count is None:
        count_reason = f"{name}'s count could not be read this time (see the verification checks)."
    elif partner.count_is_estimate:
        count_reason = f"{name} estimates at least {partner_count:,} people (matched people, updated within a day)."
    else:
        count_reason = f"{name} reports {partner_count:,}."
    steps = [
        Step("audience members", size, 0, _matches(conn, size)),
        Step("members with an accepted identity", reachable, size - reachable, reachable_reason),
        Step(
            "identities valid after normalization",
            identity_count,
            0,
            _identities_reason(reachable, identity_count, name),
        ),
        Step(
            "forwarded",
            forwarded,
            identity_count - forwarded,
            f"{forwarded:,} sent to {name}"
            + (f"; {waiting:,} waiting to be sent" if waiting else "")
            + (f"; {failed:,} gave up after the retry window" if failed else "")
            + ".",
        ),
        Step(
            "accepted by the partner",
            accepted,
            rejected,
            (
                f"{name} accepted {accepted:,} and refused {rejected:,} (see the connection's rejected messages)."
                if rejected
                else f"{name} accepted {accepted:,}."
            ),
        ),
        Step(
            "partner's own count",
            partner_count,
            0 if partner_count is None or partner.count_is_estimate else max(0, accepted - partner_count),
            count_reason,
        ),
    ]
    summary = f"{steps[0].reason} {steps[1].reason}"
    if waiting or failed:
        summary += f" {steps[3].reason}"
    if rejected:
        summary += f" {steps[4].reason}"
    if partner_count is not None:
        summary += f" {steps[5].reason}"
    return Funnel(steps, summary)
