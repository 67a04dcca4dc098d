"""Fan-out: the first refresh's adds written into the outbox for two connections (Mailchimp, AppNexus).

Engine: `connections.fanout.fan_out_run(run)` in a transaction, as the refresh calls it (connections are
paused so nothing is sent). Raw limit: one INSERT … SELECT of the same rows (changes ⋈ identities ⋈ the
connections' accepted types) into the same, empty outbox table with the same indexes.
"""

from __future__ import annotations

from bench import harness
from bench.harness import Figure

COLUMNS = (
    "connection_id, profile_id, identity_type, value, action, state, attempts, next_attempt_at, created_at, "
    "updated_at, last_error, forget_after_delivery"
)


def _empty_outbox() -> None:
    from connections.models import OutboxMessage

    table = OutboxMessage._meta.db_table
    harness.execute(f"TRUNCATE {table}" if harness.vendor() == "postgresql" else f"DELETE FROM {table}")


def raw_insert(run_id: int, pairs: list[tuple[int, str]]) -> tuple[float, int]:
    from django.db import connection
    from django.utils import timezone

    from audiences.models import Identity, MembershipChange
    from connections.models import OutboxMessage

    now = connection.ops.adapt_datetimefield_value(timezone.now())
    values = ", ".join(["(%s, %s)"] * len(pairs))
    sql = (
        f"INSERT INTO {OutboxMessage._meta.db_table} ({COLUMNS}) "
        f"SELECT c.column1, ch.profile_id, i.type, i.value, ch.action, '{OutboxMessage.State.PENDING}', 0, "
        f"%s, %s, %s, '', %s "
        f"FROM {MembershipChange._meta.db_table} ch JOIN {Identity._meta.db_table} i ON i.profile_id = ch.profile_id "
        f"JOIN (VALUES {values}) c ON c.column2 = i.type WHERE ch.run_id = %s"
    )
    params = [now, now, now, False, *[x for pair in pairs for x in pair], run_id]
    return _timed_insert(sql, params)


def raw_variant_insert(run_id: int, conn_id: int, types: list[str], condition: str) -> tuple[float, int]:
    """The same INSERT … SELECT for one variant's connection: the changes of the members in its bucket range."""
    from django.db import connection
    from django.utils import timezone

    from audiences.models import Identity, MembershipChange
    from connections.models import OutboxMessage

    now = connection.ops.adapt_datetimefield_value(timezone.now())
    sql = (
        f"INSERT INTO {OutboxMessage._meta.db_table} ({COLUMNS}) "
        f"SELECT %s, ch.profile_id, i.type, i.value, ch.action, '{OutboxMessage.State.PENDING}', 0, "
        f"%s, %s, %s, '', %s "
        f"FROM {MembershipChange._meta.db_table} ch JOIN {Identity._meta.db_table} i ON i.profile_id = ch.profile_id "
        f"WHERE ch.run_id = %s AND i.type IN ({', '.join(['%s'] * len(types))}) AND {condition}"
    )
    return _timed_insert(sql, [conn_id, now, now, now, False, run_id, *types])


def _timed_insert(sql, params) -> tuple[float, int]:
    from django.db import transaction

    with harness.timed() as t, transaction.atomic():
        rows = harness.execute(sql, params)
    return t["seconds"], rows


def run(ctx) -> list[Figure]:
    from django.db import transaction

    from audiences.models import Audience, RefreshRun
    from connections.fanout import accepted_types, fan_out_run
    from connections.models import Connection, OutboxMessage

    if "first_run_id" not in ctx.state:
        harness.log("fan-out needs the first refresh: running it")
        ctx.run_piece("refresh")
    audience = Audience.objects.get(pk=ctx.state["audience_id"])
    run = RefreshRun.objects.get(pk=ctx.state["first_run_id"])
    url = "http://127.0.0.1:9"  # nothing is sent: the connections are paused
    Connection.objects.filter(audience=audience).delete()
    mailchimp = harness.connection(
        audience, harness.mailchimp_output(url, name="bench: fan-out Mailchimp"), {"list_id": "fanout"}, status="paused"
    )
    xandr = harness.connection(
        audience, harness.xandr_output(url, name="bench: fan-out AppNexus"), {"segment_id": 5678}, status="paused"
    )
    pairs = [(c.pk, t) for c in (mailchimp, xandr) for t in accepted_types(c)]

    _empty_outbox()
    harness.settle()
    raw_seconds, raw_rows = raw_insert(run.pk, pairs)
    _empty_outbox()
    harness.settle()
    with harness.timed() as t, transaction.atomic():
        fan_out_run(run)
    rows = OutboxMessage.objects.count()
    assert rows == raw_rows, (rows, raw_rows)
    harness.log(f"fan-out: {rows:,} messages in {t['seconds']:.2f} s (raw {raw_seconds:.2f} s)")
    ratio = t["seconds"] / raw_seconds if raw_seconds else None
    figures = _variants(run, audience, url, pairs) if getattr(ctx.args, "variants", False) else []
    return figures + [
        Figure(
            "fanout.first",
            f"fan-out of the first refresh's {run.added:,} adds to 2 connections ({rows:,} messages)",
            t["seconds"],
            "s",
            raw_seconds,
            "INSERT … SELECT",
            target="≤ 2× raw",
            ok=ratio is not None and ratio <= 2,
        ),
    ]


def _variants(run, audience, url, pairs) -> list[Figure]:
    """The same fan-out with variants A and B connected besides the whole audience (4 connections)."""
    from django.db import transaction

    from audiences import variants as split
    from connections.fanout import accepted_types, fan_out_run
    from connections.models import Connection, OutboxMessage

    audience.refresh_from_db()
    output = harness.mailchimp_output(url, name="bench: fan-out Mailchimp variants")
    conns = []
    for v in audience.variants.filter(name__in=["A", "B"]):
        conn = harness.connection(audience, output, {"list_id": f"variant-{v.name}"}, status="paused")
        Connection.objects.filter(pk=conn.pk).update(variant=v)
        conns.append((conn.pk, accepted_types(conn), split.scope_of(v).sql("ch.profile_id")))
    _empty_outbox()
    harness.settle()
    raw_seconds, raw_rows = raw_insert(run.pk, pairs)
    for conn_id, types, condition in conns:
        seconds, rows = raw_variant_insert(run.pk, conn_id, types, condition)
        raw_seconds, raw_rows = raw_seconds + seconds, raw_rows + rows
    _empty_outbox()
    harness.settle()
    with harness.timed() as t, transaction.atomic():
        fan_out_run(run)
    rows = OutboxMessage.objects.count()
    assert rows == raw_rows, (rows, raw_rows)
    harness.log(f"fan-out with variants: {rows:,} messages in {t['seconds']:.2f} s (raw {raw_seconds:.2f} s)")
    _empty_outbox()
    Connection.objects.filter(output=output).delete()
    ratio = t["seconds"] / raw_seconds if raw_seconds else None
    return [
        Figure(
            "fanout.variants",
            f"fan-out of the first refresh's {run.added:,} adds to 4 connections: the audience (Mailchimp, "
            f"AppNexus) and its variants A and B (45% each, Mailchimp) ({rows:,} messages)",
            t["seconds"],
            "s",
            raw_seconds,
            "INSERT … SELECT",
            target="≤ 2× raw",
            ok=ratio is not None and ratio <= 2,
        )
    ]
