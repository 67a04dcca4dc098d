"""Set-based membership evaluation.

Adds and removes are computed by the database (INSERT … SELECT with NOT EXISTS
anti-joins) and written to the change log first; membership is then brought in
line from the log rows of the same run. Nothing iterates over members in Python,
so a refresh that changes 1% of an audience writes about 1% of it.
"""

import time
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import connection, transaction
from django.db.models import BooleanField, F
from django.db.models.expressions import RawSQL
from django.utils import timezone

from audiences import hooks
from audiences.criteria import annotate_matches, compile_criteria, referenced_events
from audiences.models import Audience, Membership, MembershipChange, Profile, RefreshRun

T_CHANGE = MembershipChange._meta.db_table
T_MEMBER = Membership._meta.db_table
T_AUDIENCE = Audience._meta.db_table
T_MATCH = "relay_refresh_match"
ANALYZE_AFTER = 10_000


@dataclass
class RefreshResult:
    audience: str
    added: int
    removed: int
    size: int
    seconds: float


def _sql(profiles):
    """SQL selecting the IDs of `profiles` as a column named `id`, to embed as a derived table."""
    return profiles.order_by().annotate(pid=F("pk")).values("pid").query.sql_with_params()


def _log_adds(run, audience, matching_sql, params, now) -> int:
    """Log an `add` for every matching profile that is not yet a member."""
    now = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {T_CHANGE} (run_id, audience_id, profile_id, action, created_at) "
            f"SELECT %s, %s, p.pid, 'add', %s FROM ({matching_sql}) p "
            f"WHERE NOT EXISTS (SELECT 1 FROM {T_MEMBER} m WHERE m.audience_id = %s AND m.profile_id = p.pid)",
            [run.pk, audience.pk, now, *params, audience.pk],
        )
        return cursor.rowcount


def _log_removes(run, audience, matching_sql, params, now, profile_ids=None) -> int:
    """Log a `remove` for every member (of `profile_ids`, when given) that no longer matches."""
    scope, scope_params = "", []
    if profile_ids is not None:
        scope_sql, scope_params = _sql(Profile.objects.filter(pk__in=profile_ids))
        scope = f"AND m.profile_id IN ({scope_sql}) "
    now = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {T_CHANGE} (run_id, audience_id, profile_id, action, created_at) "
            f"SELECT %s, %s, m.profile_id, 'remove', %s FROM {T_MEMBER} m "
            f"WHERE m.audience_id = %s {scope}"
            f"AND NOT EXISTS (SELECT 1 FROM ({matching_sql}) p WHERE p.pid = m.profile_id)",
            [run.pk, audience.pk, now, audience.pk, *scope_params, *params],
        )
        return cursor.rowcount


def apply_run(run) -> None:
    """Bring membership in line with the change rows of `run` and move audience sizes by them."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {T_MEMBER} (audience_id, profile_id, since) "
            f"SELECT c.audience_id, c.profile_id, c.created_at FROM {T_CHANGE} c "
            f"WHERE c.run_id = %s AND c.action = 'add'",
            [run.pk],
        )
        cursor.execute(
            f"DELETE FROM {T_MEMBER} WHERE EXISTS (SELECT 1 FROM {T_CHANGE} c WHERE c.run_id = %s "
            f"AND c.action = 'remove' AND c.audience_id = {T_MEMBER}.audience_id "
            f"AND c.profile_id = {T_MEMBER}.profile_id)",
            [run.pk],
        )
        # One pass over the run's changes, grouped by audience (not a count of all of them per audience).
        cursor.execute(
            f"UPDATE {T_AUDIENCE} SET size = size + d.delta FROM (SELECT audience_id, "
            f"SUM(CASE WHEN action = 'add' THEN 1 ELSE -1 END) AS delta FROM {T_CHANGE} WHERE run_id = %s "
            f"GROUP BY audience_id) d WHERE {T_AUDIENCE}.id = d.audience_id",
            [run.pk],
        )


def _finish(run, added, removed) -> None:
    run.added, run.removed, run.finished_at = added, removed, timezone.now()
    run.save(update_fields=["added", "removed", "finished_at"])
    if added or removed:
        hooks.membership_changed(run)


def refresh_audience(audience: Audience, now=None) -> RefreshResult:
    """Re-evaluate a rule-based audience over every profile."""
    started = time.monotonic()
    now = now or timezone.now()
    with transaction.atomic():
        # The row lock serialises refreshes of one audience across workers.
        audience = Audience.objects.select_for_update().get(pk=audience.pk)
        if audience.kind != Audience.Kind.RULES:
            raise ValueError(f"'{audience.name}' is a static list; its members change only when edited.")
        run = RefreshRun.objects.create(trigger=RefreshRun.Trigger.FULL, audience=audience)
        matching_sql, params = _sql(Profile.objects.filter(compile_criteria(audience.criteria, now)))
        with _work_mem(), _materialized(matching_sql, params) as matched_sql:
            added = _log_adds(run, audience, matched_sql, [], now)
            removed = _log_removes(run, audience, matched_sql, [], now)
        if added or removed:
            apply_run(run)
        if connection.vendor == "postgresql" and added + removed > ANALYZE_AFTER:
            # Fresh statistics before the next statement plans against a
            # table that just grew or shrank a lot (autovacuum comes later).
            with connection.cursor() as cursor:
                cursor.execute(f"ANALYZE {T_MEMBER}")
        size = Membership.objects.filter(audience=audience).count()
        Audience.objects.filter(pk=audience.pk).update(size=size, last_refreshed_at=now)
        _finish(run, added, removed)
    return RefreshResult(audience.name, added, removed, size, time.monotonic() - started)


@contextmanager
def _work_mem():
    """Give the refresh's sorts and hashes REFRESH_WORK_MEM each, then the transaction its own value back.

    The anti-joins hash every match and every member: at PostgreSQL's default of 4 MB a hash of 5,000,000 ids
    spills into 32 batches on disk, and the refresh after 1% churn grew 27x from 1M to 10M profiles. Local to
    the transaction (and undone by a rollback); put back explicitly because a caller's transaction may go on.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_setting('work_mem'), set_config('work_mem', %s, true)", [settings.REFRESH_WORK_MEM]
        )
        before = cursor.fetchone()[0]
    yield
    with connection.cursor() as cursor:
        cursor.execute("SELECT set_config('work_mem', %s, true)", [before])


@contextmanager
def _materialized(matching_sql, params):
    """Evaluate the criteria once into a keyed temporary table and yield SQL selecting from it.

    The planner cannot estimate how many profiles JSON criteria match; with the
    set written out (and analysed on PostgreSQL) both anti-joins get plans that
    stay linear instead of a nested loop over a guessed one-row set.
    """
    key = "bigint PRIMARY KEY" if connection.vendor == "postgresql" else "INTEGER PRIMARY KEY"
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {T_MATCH}")
        cursor.execute(f"CREATE TEMPORARY TABLE {T_MATCH} (pid {key})")
        cursor.execute(f"INSERT INTO {T_MATCH} (pid) {matching_sql}", params)
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {T_MATCH}")
    try:
        yield f"SELECT pid FROM {T_MATCH}"
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {T_MATCH}")


def _lock_rule_audiences() -> None:
    # Per-profile re-evaluations take turns, and wait for (and block) a full refresh, which holds the row
    # FOR UPDATE. An exclusive lock, not a shared one: two re-evaluations holding a shared lock together would
    # deadlock when both update an audience's size. In id order, so two lockers never cross. SQLite serialises
    # writers on its own.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT id FROM {T_AUDIENCE} WHERE kind = 'rules' ORDER BY id FOR NO KEY UPDATE")


def copy_rows(cursor, copy_sql: str, rows) -> None:
    """Stream `rows` into a table with PostgreSQL's `COPY … FROM STDIN`, one statement for the lot."""
    with cursor.cursor.copy(copy_sql) as copy:
        for row in rows:
            copy.write_row(row)


T_BATCH = "relay_reeval_batch"
T_BATCH_MATCH = "relay_reeval_match"
T_BATCH_HELD = "relay_reeval_held"
BATCH_TABLES = (T_BATCH, T_BATCH_MATCH, T_BATCH_HELD)


@contextmanager
def _batch_tables(profile_ids, events_only):
    """The batch's profiles (flagged when only their events changed) and, on SQLite, empty tables for the
    audiences they match and the memberships they hold.

    All keyed; the adds and removes are then computed between the batch's matches and its memberships, never
    against an audience's members (on PostgreSQL in one statement, without writing either side out). Not
    analysed: the batch is read as an array (`_in_batch`), and the planner sizes a table it has no statistics
    for by its pages, which is enough for the hash and merge joins between them (an ANALYZE cost 25–100 ms a
    batch).
    """
    big = "bigint" if connection.vendor == "postgresql" else "INTEGER"
    rows = [(pid, pid in events_only) for pid in profile_ids]
    with connection.cursor() as cursor:
        _drop_batch_tables(cursor)
        cursor.execute(f"CREATE TEMPORARY TABLE {T_BATCH} (pid {big} PRIMARY KEY, events_only boolean NOT NULL)")
        # PostgreSQL compares what the batch matches with what it holds in one statement (`_log_batch_changes`).
        for table in (T_BATCH_MATCH, T_BATCH_HELD) if connection.vendor != "postgresql" else ():
            cursor.execute(
                f"CREATE TEMPORARY TABLE {table} (audience_id {big} NOT NULL, pid {big} NOT NULL, "
                "PRIMARY KEY (audience_id, pid))"
            )
        if connection.vendor == "postgresql":
            copy_rows(cursor, f"COPY {T_BATCH} (pid, events_only) FROM STDIN", rows)
        else:
            cursor.executemany(f"INSERT INTO {T_BATCH} (pid, events_only) VALUES (%s, %s)", rows)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            _drop_batch_tables(cursor)


def _drop_batch_tables(cursor) -> None:
    if connection.vendor == "postgresql":
        cursor.execute(f"DROP TABLE IF EXISTS {', '.join(BATCH_TABLES)}")
    else:  # one table per statement
        for table in BATCH_TABLES:
            cursor.execute(f"DROP TABLE IF EXISTS {table}")


def _in_batch(column: str, where: str = "") -> str:
    """SQL: `column` is one of the batch's profiles (those `where` selects, when given), found through the
    index on `column`.

    On PostgreSQL as `= ANY(ARRAY(…))`: an IN (SELECT …) is a join, and when the batch is a sizeable share
    of the profiles the planner reads the whole table (every membership, every profile) to hash it.
    """
    batch = f"SELECT pid FROM {T_BATCH}{f' WHERE {where}' if where else ''}"
    return f"{column} = ANY(ARRAY({batch}))" if connection.vendor == "postgresql" else f"{column} IN ({batch})"


def _affected(audiences, event_names, any_other_change):
    """Split the rule audiences into those to re-evaluate for the whole batch and those for its other profiles.

    A profile whose only change is new events can change membership only in audiences that read events of
    those names; a profile created or changed otherwise is re-evaluated against every audience.
    """
    whole, others = [], []
    for audience in audiences:
        if event_names is None or referenced_events(audience.criteria) & event_names:
            whole.append(audience)
        elif any_other_change:
            others.append(audience)
    return whole, others


def reevaluate_profiles(profile_ids, now=None, *, events_only=(), event_names=None) -> RefreshRun | None:
    """Re-evaluate the rule-based audiences for these profiles alone.

    `events_only` names the profiles whose only change is new events, all named in `event_names`: they are
    re-evaluated only against the audiences that read such events. A fixed number of statements for the
    whole batch, whatever its size and the number of audiences; the removes look at the batch's members
    only, not at each audience's. Called in the transaction that changed the profiles so the membership
    change commits with them.
    """
    profile_ids = list(dict.fromkeys(profile_ids))
    if not profile_ids:
        return None
    now = now or timezone.now()
    events_only = set(events_only) if event_names is not None else set()
    event_names = set(event_names) if event_names is not None else None
    with transaction.atomic():
        _lock_rule_audiences()
        run = RefreshRun.objects.create(trigger=RefreshRun.Trigger.PROFILES)
        audiences = Audience.objects.filter(kind=Audience.Kind.RULES).only("pk", "criteria").order_by("pk")
        whole, others = _affected(audiences, event_names, len(events_only) < len(profile_ids))
        added = removed = 0
        if whole or others:
            with _batch_tables(profile_ids, events_only):
                added, removed = _log_batch_changes(run, whole, others, now)
        if added or removed:
            apply_run(run)
        _finish(run, added, removed)
    return run


def _log_batch_changes(run, whole, others, now) -> tuple[int, int]:
    """Log the batch's adds and removes: what it matches against what it holds."""
    stamp = connection.ops.adapt_datetimefield_value(now)
    whole_ids = ", ".join(str(int(a.pk)) for a in whole) or "NULL"
    other_ids = ", ".join(str(int(a.pk)) for a in others) or "NULL"
    scopes = [(audiences, where) for audiences, where in ((whole, ""), (others, "NOT events_only")) if audiences]
    if connection.vendor == "postgresql":
        return _log_batch_changes_joined(run, scopes, whole_ids, other_ids, stamp, now)
    pair = "{0}.audience_id = {1}.audience_id AND {0}.pid = {1}.pid"
    with connection.cursor() as cursor:
        for audiences, where in scopes:
            sql, params = _matches_sql(audiences, where, now)
            cursor.execute(f"INSERT INTO {T_BATCH_MATCH} (audience_id, pid) {sql}", params)
        cursor.execute(
            f"INSERT INTO {T_BATCH_HELD} (audience_id, pid) SELECT m.audience_id, m.profile_id FROM {T_MEMBER} m "
            f"WHERE {_in_batch('m.profile_id')} AND m.audience_id IN ({whole_ids}, {other_ids})"
        )
        cursor.execute(
            f"INSERT INTO {T_CHANGE} (run_id, audience_id, profile_id, action, created_at) "
            f"SELECT %s, x.audience_id, x.pid, 'add', %s FROM {T_BATCH_MATCH} x "
            f"WHERE NOT EXISTS (SELECT 1 FROM {T_BATCH_HELD} h WHERE {pair.format('h', 'x')})",
            [run.pk, stamp],
        )
        added = cursor.rowcount
        cursor.execute(
            f"INSERT INTO {T_CHANGE} (run_id, audience_id, profile_id, action, created_at) "
            f"SELECT %s, h.audience_id, h.pid, 'remove', %s FROM {T_BATCH_HELD} h JOIN {T_BATCH} b ON b.pid = h.pid "
            f"WHERE (h.audience_id IN ({whole_ids}) OR (NOT b.events_only AND h.audience_id IN ({other_ids}))) "
            f"AND NOT EXISTS (SELECT 1 FROM {T_BATCH_MATCH} x WHERE {pair.format('x', 'h')})",
            [run.pk, stamp],
        )
        removed = cursor.rowcount
    return added, removed


def _log_batch_changes_joined(run, scopes, whole_ids, other_ids, stamp, now) -> tuple[int, int]:
    """PostgreSQL: one statement joins what the batch matches with what it holds (FULL JOIN) and logs only the
    differences, so neither side is written to a table first (at 50 audiences that was ~21,000 matches and
    ~13,000 memberships a 5,000-event batch, to find ~7,000 changes); it answers the counts of adds and removes.

    SQLite's CTEs cannot hold an INSERT, so it keeps the two tables."""
    matched, params = [], []
    for audiences, where in scopes:
        sql, scope_params = _matches_sql(audiences, where, now)
        matched.append(sql)
        params += scope_params
    held = f"SELECT m.audience_id, m.profile_id AS pid FROM {T_MEMBER} m WHERE {_in_batch('m.profile_id')} AND "
    if other_ids == "NULL":
        held += f"m.audience_id IN ({whole_ids})"
    else:
        # Of the audiences not reading the batch's events, only the profiles changed otherwise are evaluated.
        held += (
            f"(m.audience_id IN ({whole_ids}) OR (m.audience_id IN ({other_ids}) AND m.profile_id IN "
            f"(SELECT pid FROM {T_BATCH} WHERE NOT events_only)))"
        )
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH changed AS (INSERT INTO {T_CHANGE} (run_id, audience_id, profile_id, action, created_at) "
            "SELECT %s, COALESCE(x.audience_id, h.audience_id), COALESCE(x.pid, h.pid), "
            "CASE WHEN h.pid IS NULL THEN 'add' ELSE 'remove' END, %s "
            f"FROM ({' UNION ALL '.join(matched)}) x FULL JOIN ({held}) h "
            "ON h.audience_id = x.audience_id AND h.pid = x.pid WHERE x.pid IS NULL OR h.pid IS NULL "
            "RETURNING action) "
            "SELECT COUNT(*) FILTER (WHERE action = 'add'), COUNT(*) FILTER (WHERE action = 'remove') FROM changed",
            [run.pk, stamp, *params],
        )
        added, removed = cursor.fetchone()
    return added, removed


def _matches_sql(audiences, where, now) -> tuple[str, list]:
    """A SELECT of (audience_id, pid): for every audience, the batch's profiles (those `where` selects) it matches.

    The audiences are evaluated together (`annotate_matches`: one pass over the profiles' events, one
    boolean column per audience), and each profile's row is spread over the audiences it matches.
    """
    scope = RawSQL(_in_batch(f"{Profile._meta.db_table}.id", where), [], output_field=BooleanField())
    profiles = Profile.objects.filter(scope).order_by().annotate(pid=F("pk"))
    batch = (f"SELECT pid FROM {T_BATCH}{f' WHERE {where}' if where else ''}", [])
    profiles, columns = annotate_matches(profiles, [a.criteria for a in audiences], now, profile_ids=batch)
    sql, params = profiles.values("pid", *columns).query.sql_with_params()
    listed = " UNION ALL ".join(f"SELECT {i} AS i, {int(a.pk)} AS audience_id" for i, a in enumerate(audiences))
    pick = " ".join(f"WHEN {i} THEN s.{column}" for i, column in enumerate(columns))
    return (
        f"SELECT a.audience_id, s.pid FROM ({sql}) s CROSS JOIN ({listed}) a WHERE CASE a.i {pick} END",
        list(params),
    )
