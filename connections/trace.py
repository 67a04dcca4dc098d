"""Identity trace: where does this email address (device ID, customer ID, phone, external ID) go, and how did it go?

A fixed number of queries: the profiles (by identity value, then by ID or external ID), their identities,
their memberships, the connections of those audiences, the outbox messages for their identity values (by the
value index) and the delivery records around those messages' last attempts.
"""

import datetime as dt
from dataclasses import dataclass, field

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.shortcuts import render
from django.urls import reverse

from audiences.models import Identity, Membership, Profile
from audiences.permissions import require_identities
from audiences.queries import profiles_with_identity
from connections import dashboard
from connections.funnel import types_phrase
from connections.models import Connection, Delivery, OutboxMessage
from connections.queries import candidate_values, with_state_shown
from connections.variants import scope as variant_scope
from identities import IdentityType
from staff import dates

MAX_PROFILES = 5
MAX_MESSAGES = 50
# A message's outcome is written at the end of its batch: the batch started at most this long before.
DELIVERY_WINDOW = dt.timedelta(minutes=10)
TYPE_LABELS = dict(IdentityType.choices)
CONTROL_CHARACTERS = (
    "The search contains a control character (such as NUL), which no identity value holds; type the value again."
)


@dataclass
class Route:
    """One connection of one of the profile's audiences, and whether this profile can reach its partner."""

    conn: Connection
    state: dashboard.State
    accepted: list[Identity]  # the profile's identities this partner takes
    accepts: str  # what the partner takes, in words
    standing: str  # where the latest message for those identities stands
    url: str


@dataclass
class MessageRow:
    message: OutboxMessage
    delivery: Delivery | None = None
    delivery_url: str = ""


@dataclass
class ProfileTrace:
    profile: Profile
    url: str
    identities: list[Identity]
    memberships: list[Membership]
    routes: list[Route] = field(default_factory=list)
    messages: list[MessageRow] = field(default_factory=list)


@dataclass
class Trace:
    query: str
    profiles: list[ProfileTrace]
    matched_values: set[str]
    stray_messages: list[MessageRow]  # messages for the value when no profile holds it any more
    more_profiles: bool = False


def trace(raw: str) -> Trace:
    raw = raw.strip()
    candidates = candidate_values(raw)
    # Two indexed lookups (identity values, then external ID or those IDs): an OR with a subquery would scan profiles.
    holders = [r["profile_id"] for r in profiles_with_identity(raw)[: MAX_PROFILES + 1]]
    found = list(Profile.objects.filter(Q(external_id=raw) | Q(pk__in=holders)).order_by("pk")[: MAX_PROFILES + 1])
    more = len(found) > MAX_PROFILES
    found = found[:MAX_PROFILES]
    ids = [p.pk for p in found]

    identities = list(Identity.objects.filter(profile_id__in=ids).order_by("type", "value")) if ids else []
    memberships = (
        list(Membership.objects.filter(profile_id__in=ids).select_related("audience").order_by("audience__name"))
        if ids
        else []
    )
    audience_ids = {m.audience_id for m in memberships}
    conns = (
        list(
            Connection.objects.filter(audience_id__in=audience_ids)
            .select_related("audience", "variant", "output")
            .order_by("audience__name", "output__name")
        )
        if audience_ids
        else []
    )

    # Messages by value (indexed), kept when the (type, value) is one of the profile's or the value searched for.
    pairs = {(i.type, i.value): i.profile_id for i in identities}
    values = {v for _, v in pairs} | candidates
    messages = list(
        with_state_shown(OutboxMessage.objects.filter(value__in=values))
        .select_related("connection__audience", "connection__output")
        .order_by("-id")[: MAX_MESSAGES * 2]
    )
    for m in messages:
        m.state = m.state_shown  # in flight: pending, and a worker holds it (a live lease)
    messages = [m for m in messages if (m.identity_type, m.value) in pairs or m.value in candidates][:MAX_MESSAGES]
    rows = _with_deliveries(messages)

    traces = []
    for profile in found:
        own = [i for i in identities if i.profile_id == profile.pk]
        own_pairs = {(i.type, i.value) for i in own}
        mine = [
            r
            for r in rows
            if (r.message.identity_type, r.message.value) in own_pairs or r.message.profile_id == profile.pk
        ]
        audience_of = {m.audience_id for m in memberships if m.profile_id == profile.pk}
        pt = ProfileTrace(
            profile=profile,
            url=reverse("admin:audiences_profile_change", args=[profile.pk]),
            identities=own,
            memberships=[m for m in memberships if m.profile_id == profile.pk],
            messages=mine,
        )
        pt.routes = [_route(c, own, mine) for c in conns if c.audience_id in audience_of and _reaches(c, profile)]
        traces.append(pt)
    stray = [] if traces else rows
    matched = {i.value for i in identities if i.value in candidates} | ({raw} if raw else set())
    return Trace(raw, traces, matched, stray, more)


def _reaches(conn: Connection, profile: Profile) -> bool:
    """A connection of a variant forwards the member only when the member is in that variant."""
    s = variant_scope(conn)
    return s is None or s.holds(profile.pk)


def _route(conn: Connection, identities: list[Identity], rows: list[MessageRow]) -> Route:
    partner = conn.partner
    accepted_types = partner.accepted_types(conn.settings)
    accepted = [i for i in identities if i.type in accepted_types]
    latest = {}
    for r in rows:  # newest first
        m = r.message
        if m.connection_id == conn.pk:
            latest.setdefault((m.identity_type, m.value), m)
    standing = [_standing(latest.get((i.type, i.value))) for i in accepted]
    return Route(
        conn=conn,
        state=dashboard.BY_KEY.get(dashboard.state_of(conn), dashboard.BY_KEY["unverified"]),
        accepted=accepted,
        accepts=f"{partner.name} accepts only {types_phrase(accepted_types)}.",
        standing="; ".join(standing),
        url=reverse("admin:connections_connection_change", args=[conn.pk]),
    )


def _standing(m: OutboxMessage | None) -> str:
    if m is None:
        return "no recent message (finished messages are pruned after a few days)"
    verb = "added to" if m.action == "add" else "removed from"
    if m.state == OutboxMessage.State.DELIVERED:
        return f"{verb} the partner {_at(m.finished_at)}"
    if m.state in OutboxMessage.WAITING:
        retry = f", attempt {m.attempts + 1}" if m.attempts else ""
        return f"waiting to be {verb.split()[0]} (queued {_at(m.created_at)}{retry})"
    if m.state == OutboxMessage.State.REJECTED:
        return f"rejected by the partner: {m.last_error}"
    if m.state == OutboxMessage.State.FAILED:
        return f"failed: {m.last_error}"
    return m.get_state_display().lower()


def _at(when) -> str:
    return dates.when(when)


def _attempted_at(m: OutboxMessage):
    if m.finished_at:
        return m.finished_at
    return m.updated_at if m.attempts else None


def _with_deliveries(messages: list[OutboxMessage]) -> list[MessageRow]:
    """Each message with the delivery record of the batch that last carried it, found in one query."""
    rows = [MessageRow(m) for m in messages]
    windows = Q()
    for m in messages:
        at = _attempted_at(m)
        if at is not None:
            windows |= Q(connection_id=m.connection_id, started_at__lte=at, started_at__gte=at - DELIVERY_WINDOW)
    if not windows:
        return rows
    deliveries = list(Delivery.objects.filter(windows).order_by("-started_at", "-id")[: MAX_MESSAGES * 4])
    for row in rows:
        at = _attempted_at(row.message)
        if at is None:
            continue
        for d in deliveries:  # newest first: the latest batch that started before the outcome was written
            ended = d.started_at + dt.timedelta(milliseconds=d.duration_ms) + dt.timedelta(seconds=1)
            if d.connection_id == row.message.connection_id and d.started_at <= at <= ended:
                row.delivery = d
                row.delivery_url = reverse("admin:connections_delivery_change", args=[d.pk])
                break
    return rows


def trace_view(request):
    """The admin page: a search box, then the profile, its audiences, its routes and its messages."""
    if not request.user.has_perm("audiences.view_profile"):
        raise PermissionDenied
    require_identities(request.user)  # the page is a member's identities and where each went
    query = request.GET.get("q", "").strip()
    # No identity value holds a control character (they are refused at ingest), and PostgreSQL cannot even
    # compare text with NUL in it: such a search is a sentence, not a query.
    problem = CONTROL_CHARACTERS if any(ord(ch) < 32 or ord(ch) == 127 for ch in query) else ""
    context = {
        **admin.site.each_context(request),
        "title": "Identity trace",
        "q": query,
        "problem": problem,
        "result": trace(query) if query and not problem else None,
        "type_labels": TYPE_LABELS,
        "can_view_messages": request.user.has_perm("connections.view_outboxmessage"),
    }
    return render(request, "admin/trace/trace.html", context)
