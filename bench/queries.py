"""Queries: SQL statements per forwarded batch and per bulk-upserted profile batch.

Forwarding: the drain's lanes are threads with their own database connections, which Django's
CaptureQueriesContext (one connection) cannot see, so every statement of every thread is counted at the
cursor. Two drains of K₁ and K₂ full batches give the cost per batch as the slope, without the fixed
per-drain cost (slot leases, the final empty claims). Ingest: CaptureQueriesContext around
`upsert_profiles` of batches of 100 and 500 profiles (creating, then changing attributes and identities).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

from bench import harness
from bench.harness import Figure

SMALL, LARGE = 2, 12  # batches of 500


@contextmanager
def count_statements():
    from django.db.backends import utils

    box = {"n": 0}
    lock = threading.Lock()
    originals = utils.CursorWrapper.execute, utils.CursorWrapper.executemany

    def execute(self, *args, **kwargs):
        with lock:
            box["n"] += 1
        return originals[0](self, *args, **kwargs)

    def executemany(self, *args, **kwargs):
        with lock:
            box["n"] += 1
        return originals[1](self, *args, **kwargs)

    utils.CursorWrapper.execute, utils.CursorWrapper.executemany = execute, executemany
    try:
        yield box
    finally:
        utils.CursorWrapper.execute, utils.CursorWrapper.executemany = originals


def _drain_statements(ctx, batches: int) -> tuple[int, int]:
    from bench import forward
    from connections.drain import drain

    sandbox = ctx.sandbox()
    forward._reset_sandbox(sandbox, "mailchimp")
    conn = forward._fresh_connection("mailchimp", sandbox.url)
    forward.queue_messages(conn.pk, "email", batches * 500, "q", "@bench.example.com")
    with count_statements() as box:
        report = drain(conn.pk)
    # Lanes racing for the same rows may split the work into one more, smaller batch than the ideal:
    # the figure is computed from the batches the drain really made.
    assert report.accepted == batches * 500 and report.batches >= batches, report
    return box["n"], report.batches


def _upsert_statements(size: int, round_: int) -> tuple[int, int]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from audiences.ingest import ProfileInput, upsert_profiles

    def items(status, tag):
        return [
            ProfileInput(
                f"q{size}-{n}",
                {"status": status},
                [("email", f"q{size}-{n}-{tag}@bench.example.com"), ("customer_id", f"Q-{size}-{n}")],
            )
            for n in range(size)
        ]

    with CaptureQueriesContext(connection) as created:
        upsert_profiles(items("Premium", f"a{round_}"))
    with CaptureQueriesContext(connection) as changed:
        upsert_profiles(items("Free", f"b{round_}"))
    return len(created.captured_queries), len(changed.captured_queries)


def run(ctx) -> list[Figure]:
    from audiences.models import Profile

    small, n_small = _drain_statements(ctx, SMALL)
    large, n_large = _drain_statements(ctx, LARGE)
    per_batch = (large - small) / max(1, n_large - n_small)
    fixed = small - per_batch * n_small
    import time

    Profile.objects.filter(external_id__startswith="q100-").delete()
    Profile.objects.filter(external_id__startswith="q500-").delete()
    round_ = int(time.time())
    c100, u100 = _upsert_statements(100, round_)
    c500, u500 = _upsert_statements(500, round_)
    harness.log(
        f"queries: {per_batch:g} per forwarded batch (+{fixed:g} per drain); upsert 100/500: "
        f"create {c100}/{c500}, change {u100}/{u500}"
    )
    return [
        Figure(
            "queries.forward_batch",
            "SQL statements per forwarded batch (500 messages)",
            per_batch,
            "queries",
            target="constant, ≤ 4",
            ok=per_batch <= 4,
            note=f"{small} statements for {n_small} batches, {large} for {n_large}: {per_batch:g} a batch "
            f"plus {fixed:g} a drain (slot leases, one final empty claim per lane)",
        ),
        Figure(
            "queries.upsert_batch",
            "SQL statements per bulk-upserted profile batch (500 changed)",
            u500,
            "queries",
            target="constant",
            ok=u500 == u100,
            note=f"batch of 100 / 500 profiles: creating {c100} / {c500}, changing status and email "
            f"{u100} / {u500} (including re-evaluation and fan-out)",
        ),
    ]
