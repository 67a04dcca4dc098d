"""A claim leases a batch with one row instead of stamping each message; a message is written once, when its
outcome is recorded, and only if no newer change replaced it while it was in flight."""

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections import outbox, policy
from connections.drain import drain
from connections.models import OutboxLease, OutboxMessage
from tests.connections.test_forwarding import connected, people, states, subscribed

pytestmark = pytest.mark.django_db(transaction=True)


T_OUTBOX = OutboxMessage._meta.db_table


def rows(conn):
    """Every column of the connection's messages, and on PostgreSQL the row version (xmin) too."""
    extra = {"select": {"version": "xmin::text"}} if connection.vendor == "postgresql" else {}
    return list(OutboxMessage.objects.filter(connection=conn).extra(**extra).order_by("pk").values())


def test_a_claim_writes_one_lease_and_no_message(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=3)
    before = rows(conn)

    claimed = outbox.claim(conn.pk, 500)

    assert rows(conn) == before  # not a column, not a row version: the messages stay as they were
    lease = OutboxLease.objects.get(connection=conn)
    assert sorted(lease.message_ids) == sorted(r[outbox.ID] for r in claimed) == [m["id"] for m in before]
    assert OutboxMessage.objects.filter(policy.in_flight(timezone.now()), connection=conn).count() == 3


@pytest.fixture
def row_writes():
    """Every UPDATE of an outbox row, counted by a trigger: {message id: times written}."""
    if connection.vendor == "postgresql":
        create = [
            "CREATE TABLE test_outbox_writes (id bigint)",
            "CREATE FUNCTION test_outbox_write() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN INSERT INTO test_outbox_writes VALUES (NEW.id); RETURN NEW; END $$",
            f"CREATE TRIGGER test_outbox_writes AFTER UPDATE ON {T_OUTBOX} FOR EACH ROW "
            "EXECUTE FUNCTION test_outbox_write()",
        ]
        drop = [
            f"DROP TRIGGER test_outbox_writes ON {T_OUTBOX}",
            "DROP FUNCTION test_outbox_write()",
            "DROP TABLE test_outbox_writes",
        ]
    else:
        create = [
            "CREATE TABLE test_outbox_writes (id integer)",
            f"CREATE TRIGGER test_outbox_writes AFTER UPDATE ON {T_OUTBOX} "
            "BEGIN INSERT INTO test_outbox_writes VALUES (NEW.id); END",
        ]
        drop = ["DROP TRIGGER test_outbox_writes", "DROP TABLE test_outbox_writes"]
    with connection.cursor() as cursor:
        for sql in create:
            cursor.execute(sql)

    def counts():
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, COUNT(*) FROM test_outbox_writes GROUP BY id")
            return dict(cursor.fetchall())

    yield counts
    with connection.cursor() as cursor:
        for sql in drop:
            cursor.execute(sql)


def test_a_delivered_batch_writes_each_message_once(sandbox, mailchimp, row_writes):
    _, conn = connected(mailchimp, members=3)
    ids = list(OutboxMessage.objects.filter(connection=conn).values_list("pk", flat=True))

    report = drain(conn.pk)

    assert report.accepted == 3
    assert row_writes() == dict.fromkeys(ids, 1)  # the record; the claim wrote a lease
    assert set(states(conn).values()) == {"delivered"}
    assert set(OutboxMessage.objects.filter(connection=conn).values_list("attempts", flat=True)) == {1}
    assert not OutboxLease.objects.exists()  # ended with the batch's outcomes


def test_claims_racing_for_one_connection_never_lease_a_message_twice(sandbox, mailchimp):
    import threading

    _, conn = connected(mailchimp, members=0)
    people(*[(f"r{i}", "Premium", f"r{i}@example.com", None) for i in range(600)])
    assert OutboxMessage.objects.filter(connection=conn).count() == 600
    start = threading.Barrier(6)
    claimed = []

    def lane():
        try:
            start.wait()
            for _ in range(4):
                claimed.extend(r[outbox.ID] for r in outbox.claim(conn.pk, 25))
        finally:
            connection.close()

    threads = [threading.Thread(target=lane) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(claimed) == 6 * 4 * 25 == 600
    assert len(set(claimed)) == len(claimed)
    leased = [i for ids in OutboxLease.objects.values_list("message_ids", flat=True) for i in ids]
    assert sorted(leased) == sorted(claimed)


def test_a_live_lease_keeps_its_messages_and_an_expired_one_gives_them_back(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=3)
    first = outbox.claim(conn.pk, 500)  # a worker claims the batch, then dies before sending

    assert outbox.claim(conn.pk, 500) == []
    assert drain(conn.pk).messages == 0
    assert policy.ready_to_drain() == []

    later = timezone.now() + dt.timedelta(seconds=121)
    assert conn.pk in policy.ready_to_drain(later)
    again = outbox.claim(conn.pk, 500, now=later)

    assert [r[outbox.ID] for r in again] == [r[outbox.ID] for r in first]
    # The stale lease is gone, and counted as an attempt of what it held; the new one covers the batch.
    assert list(OutboxLease.objects.values_list("message_ids", flat=True)) == [[r[outbox.ID] for r in again]]
    assert set(OutboxMessage.objects.filter(connection=conn).values_list("attempts", flat=True)) == {1}


def test_a_change_queued_while_in_flight_replaces_the_message_and_goes_out_after_it(sandbox, mailchimp):
    _, conn = connected(mailchimp, members=1)
    claimed = outbox.claim(conn.pk, 500)
    assert [r[outbox.ACTION] for r in claimed] == ["add"]
    people(("u0", "Free", "u0@example.com", None))  # leaves the audience while its add is in flight

    message = OutboxMessage.objects.get(connection=conn)
    assert (message.action, message.state, message.revision) == ("remove", "pending", 1)
    assert outbox.claim(conn.pk, 500) == []  # still in flight: the remove waits for the add's outcome

    from connections.drain import send_batch

    result, _ = send_batch(conn, conn.output.account(), claimed)
    outbox.record(conn, claimed, result, 0.0, timezone.now())
    assert subscribed(sandbox) == {"u0@example.com"}
    message.refresh_from_db()
    assert (message.action, message.state, message.attempts) == ("remove", "pending", 0)  # not "delivered"

    assert drain(conn.pk).accepted == 1
    assert subscribed(sandbox) == set()
    assert states(conn) == {"u0@example.com": "delivered"}


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the bench's budget is PostgreSQL's")
def test_the_forward_bench_statement_budget_holds_on_one_batch(sandbox, mailchimp):
    """Claim (its lock, then the claim), record, counters: the bench's ≤ 4 statements a batch."""
    _, conn = connected(mailchimp, members=3)
    with CaptureQueriesContext(connection) as ctx:
        claimed = outbox.claim(conn.pk, 500)
        outbox.record(conn, claimed, outbox_accepting(claimed), 0.0, timezone.now())
    # Counted as the bench counts them, at the cursor: BEGIN and COMMIT are the driver's.
    statements = [q for q in ctx.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
    assert len(statements) <= 4


def outbox_accepting(claimed):
    from outputs.partners.base import Outcome, SendResult

    result = SendResult()
    result.outcomes = {r[outbox.ID]: Outcome("accepted") for r in claimed}
    return result


BEFORE = ("connections", "0012_variants")
AFTER = [("connections", "0013_outbox_leases")]


def test_messages_in_flight_before_the_migration_become_pending_and_claimable():
    executor = MigrationExecutor(connection)
    before = [BEFORE, *[n for n in executor.loader.graph.leaf_nodes() if n[0] != "connections"]]
    now = timezone.now()
    try:
        executor.migrate(before)
        apps = executor.loader.project_state(before).apps
        Output, Connection = apps.get_model("outputs", "Output"), apps.get_model("connections", "Connection")
        Audience, Message = apps.get_model("audiences", "Audience"), apps.get_model("connections", "OutboxMessage")
        output = Output.objects.create(kind="mailchimp", name="Mailchimp", settings={})
        audience = Audience.objects.create(name="Potential Parisians", kind="static")
        conn = Connection.objects.create(audience=audience, output=output, settings={}, delivery_mode="realtime")

        def message(value, state, action="add"):
            return Message.objects.create(
                connection=conn, identity_type="email", value=value, action=action, state=state,
                next_attempt_at=now, created_at=now, updated_at=now, lease_expires_at=now,
            ).pk  # fmt: skip

        alone = message("a@example.com", "in_flight")
        replaced = message("b@example.com", "in_flight")
        newer = message("b@example.com", "pending", "remove")

        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())  # leave the database as the other tests expect it

    got = dict(OutboxMessage.objects.filter(connection_id=conn.pk).values_list("pk", "state"))
    assert got == {alone: "pending", replaced: "replaced", newer: "pending"}
    assert sorted(r[outbox.ID] for r in outbox.claim(conn.pk, 500)) == [alone, newer]
