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
    from django.db import connection, transaction
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
    return [
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
