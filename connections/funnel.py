"""The size funnel: why the partner's count differs from the audience's, step by step, in words.

audience members → members with an identity the partner accepts → identities
valid after normalization → forwarded → accepted by the partner → the
partner's own count. Each step is one aggregate query over the set.
"""

from dataclasses import asdict, dataclass

from django.db.models import Count, Exists, Max, OuterRef

from audiences.identity_types import IdentityType
from audiences.models import Identity, Membership
from connections.models import Connection, OutboxMessage
from outputs.partners.http import TransportError

TYPE_NOUNS = {
    "email": "an email address",
    "customer_id": "a customer ID",
    "mobile_number": "a mobile number",
    "ios_idfa": "an iOS advertising ID",
    "ios_idfv": "an iOS vendor ID",
    "android_aaid": "an Android advertising ID",
    "android_uuid": "an Android UUID",
    "facebook_id": "a Facebook ID",
    "google_id": "a Google ID",
    "microsoft_id": "a Microsoft ID",
    "other": "another identity",
}
DEVICE = {"ios_idfa", "ios_idfv", "android_aaid", "android_uuid"}


def types_phrase(types) -> str:
    types = sorted(types)
    if set(types) == {"email"}:
        return "email addresses"
    if types and set(types) <= DEVICE:
        return "device IDs"
    labels = [dict(IdentityType.choices)[t] for t in types]
    return ", ".join(labels[:-1]) + (" or " if len(labels) > 1 else "") + labels[-1] if labels else "no identities"


def _or(nouns) -> str:
    return nouns[0] if len(nouns) == 1 else ", ".join(nouns[:-1]) + " or " + nouns[-1]


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
    members = Membership.objects.filter(audience_id=conn.audience_id)
    accepted_identity = Identity.objects.filter(profile_id=OuterRef("profile_id"), type__in=types)
    size = members.count()
    reachable = members.filter(Exists(accepted_identity)).count()
    identities = Identity.objects.filter(type__in=types, profile__memberships__audience_id=conn.audience_id)
    per_type = dict(identities.values_list("type").annotate(n=Count("profile_id", distinct=True)))
    identity_count = identities.count()

    latest = OutboxMessage.objects.filter(connection=conn).values("identity_type", "value").annotate(last=Max("id"))
    member_identity = Identity.objects.filter(
        type=OuterRef("identity_type"), value=OuterRef("value"), profile__memberships__audience_id=conn.audience_id
    )
    state = dict(
        OutboxMessage.objects.filter(pk__in=latest.values("last"), action="add")
        .filter(Exists(member_identity))
        .values_list("state")
        .annotate(n=Count("pk"))
    )
    waiting = state.get("pending", 0) + state.get("in_flight", 0) + state.get("replaced", 0)
    failed = state.get("failed", 0)
    rejected = state.get("rejected", 0)
    forwarded = max(0, identity_count - waiting - failed)
    accepted = max(0, forwarded - rejected)
    if partner_count is ...:
        try:
            partner_count = partner.partner_count(conn.output.account(), conn.settings)
        except TransportError:
            partner_count = None

    have = "; ".join(f"{per_type[t]} have {TYPE_NOUNS[t]}" for t in types if per_type.get(t))
    steps = [
        Step("audience members", size, 0, f"The audience matches {size:,} users."),
        Step(
            "members with an accepted identity",
            reachable,
            size - reachable,
            (
                f"{have or 'none has ' + _or([TYPE_NOUNS[t] for t in types])}; {name} accepts only "
                f"{types_phrase(types)}, so {name} receives {reachable:,}."
            ),
        ),
        Step(
            "identities valid after normalization",
            identity_count,
            0,
            f"{identity_count:,} identities of those members, all normalized and validated when they arrived"
            + (" (some members have more than one)." if identity_count > reachable else "."),
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
            f"{accepted:,} accepted"
            + (f"; {rejected:,} refused by {name} (see the rejected messages)." if rejected else "."),
        ),
        Step(
            "partner's own count",
            partner_count,
            0 if partner_count is None else max(0, accepted - partner_count),
            f"{name} reports {partner_count:,}." if partner_count is not None else f"{name} does not report a count.",
        ),
    ]
    summary = f"The audience matches {size:,} users. {steps[1].reason}"
    if waiting or failed or rejected:
        summary += f" {steps[3].reason} {steps[4].reason}"
    if partner_count is not None:
        summary += f" {steps[5].reason}"
    return Funnel(steps, summary)
