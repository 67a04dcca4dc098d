"""Seed profiles set-based inside PostgreSQL: millions of profiles in minutes (`seed_profiles(..., fast=True)`).

The Python seeder (`audiences.seeding`) draws every value in Python and streams it with COPY: about 1,400
profiles a second here, so 10,000,000 profiles would take two hours. This one writes the same shape of data
(the same attribute, identity and event distributions and value formats, see `audiences.seeding`) with
`INSERT … SELECT … FROM generate_series`, one statement per table per chunk, so no row crosses the wire:

* when the three tables hold fewer rows than are being added, their secondary indexes, unique constraints and
  foreign keys are dropped first and rebuilt once at the end (a sorted build instead of one index insertion
  per row);
* the whole seed is one transaction with `synchronous_commit` off: on any failure (a duplicate value found
  when the unique indexes are rebuilt, say) nothing is written and the indexes are as before;
* the tables are locked for the duration, so run it on a database nobody else is writing to.

Random values come from PostgreSQL's `random()` after `setseed()`, on one process (parallel plans are
turned off), so the same seed, prefix and `now` give the same data on the same PostgreSQL version.
"""

import datetime as dt

from django.db import transaction

from audiences.models import Event, Identity, Profile

CHUNK_PROFILES = 500_000


def _cumulative_bounds(pairs) -> tuple[list[str], list[float]]:
    """Values and the lower bound of each one's share of [0, 1), for `width_bucket(random(), bounds)`."""
    total = sum(weight for _, weight in pairs)
    values, bounds, running = [], [], 0
    for value, weight in pairs:
        values.append(value)
        bounds.append(running / total)
        running += weight
    return values, bounds


def _pick(pairs, random_expr: str, key: str, params: dict) -> str:
    """SQL for a weighted pick among `pairs` driven by `random_expr` (a value in [0, 1))."""
    params[f"{key}_values"], params[f"{key}_bounds"] = _cumulative_bounds(pairs)
    return f"(%({key}_values)s::text[])[width_bucket({random_expr}, %({key}_bounds)s::float8[])]"


def seed_profiles_sql(connection, generator_settings: dict, count: int, progress=None) -> dict[str, int]:
    """Write `count` profiles (numbers 1..count) with their identities and events; return the counts created.

    `generator_settings` holds what `seed_profiles` validated: mix, seed, prefix, now, days, low, high,
    mobile_base, and the seeder's constants (statuses, countries, …).
    """
    s = generator_settings
    using = connection.alias
    tables = [Profile._meta.db_table, Identity._meta.db_table, Event._meta.db_table]
    totals = {"profiles": 0, "identities": 0, "events": 0}
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL max_parallel_workers_per_gather = 0")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        # Checks deferred by earlier writes in an enclosing transaction would block the ALTER TABLEs: run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"LOCK TABLE {', '.join(tables)} IN SHARE ROW EXCLUSIVE MODE")
        cursor.execute("SELECT count(*) FROM audiences_profile")
        existing = cursor.fetchone()[0]
        rebuild = _drop_indexes(cursor, tables) if existing < count else []
        cursor.execute("SELECT setseed(%s)", [_seed_fraction(s["seed"], s["prefix"])])
        cursor.execute("SELECT nextval(pg_get_serial_sequence('audiences_profile', 'id'))")
        first_id = cursor.fetchone()[0]
        cursor.execute("SELECT setval(pg_get_serial_sequence('audiences_profile', 'id'), %s)", [first_id + count - 1])
        for start in range(1, count + 1, CHUNK_PROFILES):
            stop = min(start + CHUNK_PROFILES, count + 1)
            created = _write_chunk(cursor, s, first_id - 1, start, stop)
            for key, value in created.items():
                totals[key] += value
            if progress:
                progress(stop - 1, count)
        for statement in rebuild:
            cursor.execute(statement)
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")  # Django's foreign keys are initially deferred
    return totals


def _seed_fraction(seed, prefix: str) -> float:
    """`setseed` takes a number in [-1, 1]; derive one from the seed and prefix (random when seed is None)."""
    import hashlib
    import random

    if seed is None:
        return random.random()
    digest = hashlib.sha256(f"{seed}/{prefix}".encode()).digest()
    return int.from_bytes(digest[:6], "big") / 2**48


def _drop_indexes(cursor, tables: list[str]) -> list[str]:
    """Drop the tables' foreign keys, unique constraints and secondary indexes; return what recreates them."""
    cursor.execute(
        """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), contype
        FROM pg_constraint
        WHERE conrelid = ANY(%s::regclass[]) AND contype IN ('f', 'u')
        ORDER BY contype = 'f' DESC
        """,
        [tables],
    )
    constraints = cursor.fetchall()
    cursor.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = ANY(%s::regclass[]) AND NOT i.indisprimary
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """,
        [tables],
    )
    indexes = cursor.fetchall()
    for table, name, _, _ in constraints:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        cursor.execute(f"DROP INDEX {name}")
    # Rebuild indexes and unique constraints before the foreign keys, whose check is one join per table.
    rebuild = [definition for _, definition in indexes]
    rebuild += [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, d, kind in constraints if kind == "u"]
    rebuild += [f'ALTER TABLE {t} ADD CONSTRAINT "{n}" {d}' for t, n, d, kind in constraints if kind == "f"]
    return rebuild


def _number(expr: str, width: int) -> str:
    """`f"{n:0{width}d}"` in SQL (lpad alone would cut longer numbers)."""
    return f"lpad(({expr})::text, greatest({width}, length(({expr})::text)), '0')"


def _write_chunk(cursor, s: dict, id_offset: int, start: int, stop: int) -> dict[str, int]:
    window = s["days"] * 86400
    params = {
        "offset": id_offset,
        "first": start,
        "last": stop - 1,
        "prefix": s["prefix"],
        "now": s["now"],
        "low": s["low"],
        "span": s["high"] - s["low"] + 1,
        "window": window,
        "featured_seconds": min(s["featured_window"].total_seconds(), window),
        "featured_share": s["featured_share"],
        "categories": s["video_categories"],
        "destinations": s["destinations"],
        "origins": s["origins"],
        "first_names": s["first_names"],
        "last_names": s["last_names"],
        "mobile_prefix": s["mobile_prefix"],
        "mobile_base": s["mobile_base"],
    }
    status = _pick(s["statuses"], "r1", "status", params)
    country = _pick(s["countries"], "r2", "country", params)
    channel = _pick(s["channels"], "r4", "channel", params)
    name = _pick(s["event_names"], "rn", "event", params)
    # Triangular(18, 76, mode 32) through its inverse distribution function, as random.triangular draws it.
    age = (
        "least(75, floor(CASE WHEN r3 < (32 - 18) / 58.0 THEN 18 + sqrt(r3 * 58 * (32 - 18))"
        " ELSE 76 - sqrt((1 - r3) * 58 * (76 - 32)) END))::int"
    )
    # OFFSET 0 keeps each subquery's random() draws evaluated once per row, however often they are read.
    cursor.execute(
        f"""
        INSERT INTO audiences_profile (id, external_id, attributes, created_at, updated_at)
        SELECT %(offset)s + n, %(prefix)s || '-' || {_number("n", 7)},
               jsonb_build_object('status', {status}, 'country', {country}, 'age', {age},
                                  'signup_channel', {channel}),
               %(now)s, %(now)s
        FROM (SELECT n, random() AS r1, random() AS r2, random() AS r3, random() AS r4
              FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n OFFSET 0) AS draws
        """,
        params,
    )
    profiles = cursor.rowcount

    identities = 0
    for identity_type, probability in s["mix"].items():
        hashed = "NULL"
        if identity_type == "email":
            value = (
                "(%(first_names)s::text[])[1 + floor(r * cardinality(%(first_names)s::text[]))::int] || '.'"
                " || (%(last_names)s::text[])[1 + floor(r2 * cardinality(%(last_names)s::text[]))::int]"
                " || n || '@' || %(prefix)s || '.example.com'"
            )
        elif identity_type == "customer_id":
            value = f"'CUST-' || %(prefix)s || '-' || {_number('n', 7)}"
        elif identity_type == "mobile_number":
            value = f"%(mobile_prefix)s || {_number('%(mobile_base)s + n', 8)}"
        else:
            # A version-4 UUID in canonical lower-case form, from the seeded random stream.
            hashed = "md5(random()::text || n)"
            value = (
                "substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-4' || substr(h, 14, 3) || '-'"
                " || substr('89ab', 1 + floor(r * 4)::int, 1) || substr(h, 18, 3) || '-' || substr(h, 21, 12)"
            )
        cursor.execute(
            f"""
            INSERT INTO audiences_identity (profile_id, type, value, created_at)
            SELECT %(offset)s + n, %(type)s, {value}, %(now)s
            FROM (SELECT n, random() AS r, random() AS r2, {hashed} AS h
                  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
                  WHERE random() < %(probability)s OFFSET 0) AS picked
            """,
            params | {"type": identity_type, "probability": probability},
        )
        identities += cursor.rowcount

    # Events: between low and high per profile; with the featured share, the first one is the recent
    # "Play Video (Destination Intro, Paris)".
    cursor.execute(
        f"""
        WITH per_profile AS MATERIALIZED (
            SELECT n, %(low)s + floor(random() * %(span)s)::int AS events, random() AS rf
            FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS n
        ), draws AS MATERIALIZED (
            SELECT n, (k = 1 AND rf < %(featured_share)s) AS featured,
                   random() AS rn, random() AS rd, random() AS ra, random() AS rb, random() AS rt
            FROM per_profile, generate_series(1, events) AS k
        )
        INSERT INTO audiences_event (profile_id, name, attributes, occurred_at)
        SELECT %(offset)s + n,
               CASE WHEN featured THEN 'Play Video' ELSE name END,
               CASE
                 WHEN featured THEN jsonb_build_object('category', 'Destination Intro', 'destination', 'Paris')
                 WHEN name = 'Play Video' THEN jsonb_build_object(
                     'category', (%(categories)s::text[])[1 + floor(ra * cardinality(%(categories)s::text[]))::int],
                     'destination', destination)
                 WHEN name = 'View Destination' THEN jsonb_build_object('destination', destination)
                 WHEN name = 'Search Flights' THEN jsonb_build_object(
                     'origin', (%(origins)s::text[])[1 + floor(ra * cardinality(%(origins)s::text[]))::int],
                     'destination', destination, 'passengers', 1 + floor(rb * rb * 4)::int)
                 ELSE jsonb_build_object(
                     'destination', destination, 'nights', 2 + floor(ra * 12)::int,
                     'price', round(((2 + floor(ra * 12)) * (90 + rb * 260))::numeric, 2), 'currency', 'EUR')
               END,
               %(now)s::timestamptz
                 - make_interval(secs => floor(rt * CASE WHEN featured THEN %(featured_seconds)s ELSE %(window)s END))
        FROM (SELECT *, {name} AS name,
                     (%(destinations)s::text[])[1 + floor(rd * cardinality(%(destinations)s::text[]))::int]
                       AS destination
              FROM draws OFFSET 0) AS drawn
        """,
        params,
    )
    events = cursor.rowcount
    return {"profiles": profiles, "identities": identities, "events": events}


def settings_for(mix, seed, prefix, now: dt.datetime, days, low, high, mobile_base) -> dict:
    from audiences import seeding

    return {
        "mix": mix,
        "seed": seed,
        "prefix": prefix,
        "now": now,
        "days": days,
        "low": low,
        "high": high,
        "mobile_base": mobile_base,
        "mobile_prefix": seeding.MOBILE_PREFIX,
        "featured_share": seeding.FEATURED_SHARE,
        "featured_window": seeding.FEATURED_WINDOW,
        "statuses": seeding.STATUSES,
        "countries": seeding.COUNTRIES,
        "channels": seeding.SIGNUP_CHANNELS,
        "event_names": seeding.EVENT_NAMES,
        "video_categories": list(seeding.VIDEO_CATEGORIES),
        "destinations": list(seeding.DESTINATIONS),
        "origins": list(seeding.ORIGINS),
        "first_names": seeding.FIRST_NAMES,
        "last_names": seeding.LAST_NAMES,
    }
