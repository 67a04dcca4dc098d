"""Connections of variants: which members a connection forwards, and what a split change queues.

A connection of a variant reads its audience's membership like any other, with one more condition: the
member's bucket is in the variant's range (audiences/variants.py). Every statement that reads members for a
connection adds `member_condition(conn, column)`; for a connection of the whole audience it adds nothing.
"""

from django.core.exceptions import ValidationError

from audiences import variants as split
from audiences.models import Identity, Membership
from connections.models import Connection

T_MEMBER = Membership._meta.db_table
T_IDENTITY = Identity._meta.db_table


def scope(conn: Connection) -> split.Scope | None:
    if not conn.variant_id:
        return None
    return split.scope_of(conn.variant)  # the variant's own audience row: as fresh as the variant's


def member_condition(conn: Connection, column: str) -> str:
    """ " AND <the member in `column` is in the connection's variant>", or "" for a whole-audience connection."""
    s = scope(conn)
    return f" AND {s.sql(column)}" if s else ""


def members(conn: Connection):
    """The connection's members: the audience's, or its variant's."""
    if conn.variant_id:
        return split.members(conn.variant)
    return Membership.objects.filter(audience_id=conn.audience_id)


class Listener:
    """Registered on audiences.hooks: what a split change means for the connections of the variants."""

    @staticmethod
    def removed(audience, variants, disconnect):
        from connections import services

        conns = list(Connection.objects.filter(variant__in=variants).select_related("audience", "variant", "output"))
        if not conns:
            return None
        if disconnect is None:
            raise ValidationError(
                {
                    "disconnect": [
                        f"Disconnect these first: {services.describe_connections(conns)}, or say what to do with "
                        "them: remove (remove their members from the partners first) or keep (leave them there)."
                    ]
                }
            )
        if disconnect not in ("remove", "keep"):
            raise ValidationError(
                {"disconnect": ["Must be remove (remove the members from the partners first) or keep (leave them)."]}
            )
        if disconnect == "keep":
            services.disconnect_all(conns, remove_from_partner=False)
            return None
        services.disconnect_all(conns, remove_from_partner=True)
        return (
            f"Removing the members from the partners first: {services.describe_connections(conns)}. "
            "Change the split again once these connections are gone."
        )

    @staticmethod
    def split_changed(audience, before, after) -> int:
        """For each connection of a variant that stays: an add for members who came into it, a remove for those
        who left it. One statement per connection, over the audience's members."""
        from connections import fanout

        conns = Connection.objects.filter(variant_id__in=list(before), status__in=fanout.QUEUEING).select_related(
            "output", "audience", "variant"
        )
        queued, touched = 0, []
        for conn in conns:
            old, new = before[conn.variant_id], after[conn.variant_id]
            if old == new:
                continue
            types = fanout.accepted_types(conn)
            if not types:
                continue
            now_in, was_in = new.sql("m.profile_id"), old.sql("m.profile_id")
            source = (
                f"SELECT m.profile_id AS profile_id, i.type AS type, i.value AS value, "
                f"CASE WHEN {now_in} THEN 'add' ELSE 'remove' END AS action "
                f"FROM {T_MEMBER} m JOIN {T_IDENTITY} i ON i.profile_id = m.profile_id "
                f"WHERE m.audience_id = %s AND i.type IN ({fanout._placeholders(types)}) "
                f"AND (CASE WHEN {now_in} THEN 1 ELSE 0 END) <> (CASE WHEN {was_in} THEN 1 ELSE 0 END)"
            )
            queued += fanout._insert(conn, source, [conn.audience_id, *types])
            touched.append(conn.pk)
        fanout._drain_after_commit(touched)
        return queued
