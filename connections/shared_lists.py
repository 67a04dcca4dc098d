"""Lists that connections of one output share at the partner (a Braze array or string attribute).

A partner says which connections share a member's list (`Partner.shared_list`); these are the set-based
questions asked of it: how many members of an audience are past its cap (verification), and what each member
of a batch is in now (the engine, for a list the partner replaces whole at each write).
"""

from django.db.models import CharField, Count, F, Sum
from django.db.models.functions import Cast, Length

from audiences.models import Membership
from connections.models import Connection
from outputs.partners.base import SharedList


def sharing_audiences(conn: Connection, shared: SharedList):
    """The audiences whose connections write this list: a subquery, evaluated by the query that uses it.

    A connection being disconnected has left the list: its removals write the members' lists without it."""
    return (
        Connection.objects.filter(output_id=conn.output_id, **{f"settings__{k}": v for k, v in shared.matching.items()})
        .exclude(status=Connection.Status.DISCONNECTING)
        .values("audience_id")
    )


def over_cap(conn: Connection, shared: SharedList) -> int:
    """Members of the connection's audience whose shared list is longer than the partner keeps: one query."""
    members = Membership.objects.filter(audience_id=conn.audience_id).values("profile_id")
    per_member = Membership.objects.filter(
        audience_id__in=sharing_audiences(conn, shared), profile_id__in=members
    ).values("profile_id")
    if shared.unit == "characters":
        # The IDs, comma-separated: each ID's digits, plus one comma fewer than there are IDs.
        size = Sum(Length(Cast("audience_id", CharField()))) + Count("audience_id") - 1
    else:
        size = Count("audience_id")
    return per_member.annotate(size=size).filter(size__gt=shared.cap).count()


def current_audiences(conn: Connection, shared: SharedList, identities) -> dict[tuple[str, str], tuple[int, ...]]:
    """Each identity's current audiences on the shared list, sorted; one query for the whole batch.

    `identities` are (type, value) pairs; one absent from the answer is in none of them (or no longer exists)."""
    identities = list(identities)
    if not identities:
        return {}
    rows = (
        Membership.objects.filter(
            audience_id__in=sharing_audiences(conn, shared),
            profile__identities__type__in={t for t, _ in identities},
            profile__identities__value__in={v for _, v in identities},
        )
        .annotate(type=F("profile__identities__type"), value=F("profile__identities__value"))
        .values_list("type", "value", "audience_id")
    )
    found: dict[tuple[str, str], set[int]] = {}
    for identity_type, value, audience_id in rows:
        found.setdefault((identity_type, value), set()).add(audience_id)
    return {key: tuple(sorted(ids)) for key, ids in found.items()}
