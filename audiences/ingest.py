"""Bulk writes of profiles, identities and events.

Each call does a fixed number of queries for the whole batch (not per
profile), writes nothing when nothing differs, and re-evaluates the rule-based
audiences for just the profiles it changed, in the same transaction.
"""

import functools
import json
import random
import time
from dataclasses import dataclass, field

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from audiences import hooks
from audiences.models import Event, Identity, Profile
from audiences.refresh import copy_rows, reevaluate_profiles


@dataclass
class ProfileInput:
    external_id: str
    attributes: dict | None = None
    # The profile's complete identity set when given: identities it holds but
    # this list lacks are removed. None leaves its identities as they are.
    identities: list[tuple[str, str]] | None = None


@dataclass
class IngestResult:
    """What a batch of profiles changed."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    identities_added: int = 0
    identities_removed: int = 0
    memberships_added: int = 0
    memberships_removed: int = 0
    changed_profile_ids: set = field(default_factory=set)

    def as_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "changed_profile_ids"}


@dataclass
class EventsResult:
    """What a batch of events changed. A duplicate is an event whose source_id is already stored: a re-send."""

    events_created: int = 0
    duplicates: int = 0
    profiles_created: int = 0
    memberships_added: int = 0
    memberships_removed: int = 0
    changed_profile_ids: set = field(default_factory=set)

    def as_dict(self):
        return {k: v for k, v in self.__dict__.items() if k != "changed_profile_ids"}


# PostgreSQL's codes for the races between concurrent batches: two create the same new profile or event
# (unique violation), or lock rows in opposite orders (deadlock); one of them is aborted.
RACES = {"23505", "40P01", "40001"}


def retry_races(write):
    """Run a batch's transaction again (twice at most) when PostgreSQL aborted it for losing a race.

    The second run sees what the winner committed: a profile it meant to create now exists and is updated.
    Only the outermost transaction can be run again; inside another one the error goes up unchanged.
    """

    @functools.wraps(write)
    def run(*args, **kwargs):
        for attempt in range(3):
            if connection.in_atomic_block or attempt == 2:
                return write(*args, **kwargs)
            try:
                return write(*args, **kwargs)
            except DatabaseError as exc:
                if getattr(exc.__cause__, "sqlstate", None) not in RACES:
                    raise
                time.sleep(random.uniform(0.005, 0.05) * (attempt + 1))  # let the winner commit

    return run


def _ensure_profiles(external_ids, result: EventsResult):
    """Return {external_id: profile id}, creating bare profiles for unknown IDs."""
    # IDs only: the profiles' attributes are not needed to store their events.
    if connection.vendor == "postgresql":
        # One array parameter, not an IN list of thousands of placeholders that Django quotes one by one.
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT external_id, id FROM {Profile._meta.db_table} WHERE external_id = ANY(%s)", [external_ids]
            )
            profiles = dict(cursor.fetchall())
    else:
        profiles = dict(Profile.objects.filter(external_id__in=external_ids).values_list("external_id", "pk"))
    missing = [Profile(external_id=e, attributes={}) for e in external_ids if e not in profiles]
    if missing:
        # Returns primary keys on PostgreSQL and on SQLite 3.35+.
        Profile.objects.bulk_create(missing)
        profiles.update({p.external_id: p.pk for p in missing})
        result.profiles_created += len(missing)
        result.changed_profile_ids.update(p.pk for p in missing)
    return profiles


def _sync_identities(items, profiles, result):
    wanted = {}  # (type, value) -> profile id
    for item in items:
        if item.identities is not None:
            pid = profiles[item.external_id].pk
            for pair in item.identities:
                wanted[pair] = pid
    owners = [profiles[i.external_id].pk for i in items if i.identities is not None]
    if not owners:
        return
    held = Identity.objects.filter(profile_id__in=owners).values_list("pk", "profile_id", "type", "value")
    held_pairs = {(t, v): (pk, pid) for pk, pid, t, v in held}
    stale = [(pk, pid, pair) for pair, (pk, pid) in held_pairs.items() if wanted.get(pair) != pid]
    fresh = [pair for pair, pid in wanted.items() if held_pairs.get(pair, (None, None))[1] != pid]
    removed = [(pid, *pair) for _, pid, pair in stale]
    if fresh:
        # An identity already held by a profile outside this batch moves to the
        # profile that now claims it: the latest source of truth wins.
        values = {v for _, v in fresh}
        moved_from = Identity.objects.filter(value__in=values).exclude(profile_id__in=owners)
        moved_from = {(t, v): pid for t, v, pid in moved_from.values_list("type", "value", "profile_id")}
        moved_from = {pair: pid for pair, pid in moved_from.items() if pair in wanted}
        result.changed_profile_ids.update(moved_from.values())
        removed += [(pid, *pair) for pair, pid in moved_from.items()]
    if stale:
        Identity.objects.filter(pk__in=[pk for pk, _, _ in stale]).delete()
        result.identities_removed += len(stale)
        result.changed_profile_ids.update(pid for _, pid, _ in stale)
    if fresh:
        Identity.objects.bulk_create(
            [Identity(profile_id=wanted[pair], type=pair[0], value=pair[1]) for pair in fresh],
            update_conflicts=True,
            unique_fields=["type", "value"],
            update_fields=["profile"],
        )
        result.identities_added += len(fresh)
        result.changed_profile_ids.update(wanted[pair] for pair in fresh)
    # Before re-evaluation: members' partners learn of the identity change now;
    # joins and leaves that follow are forwarded with the new identities.
    hooks.identities_changed(removed, [(wanted[pair], *pair) for pair in fresh])


@retry_races
def upsert_profiles(items: list[ProfileInput]) -> IngestResult:
    result = IngestResult()
    with transaction.atomic():
        external_ids = [i.external_id for i in items]
        existing = {p.external_id: p for p in Profile.objects.filter(external_id__in=external_ids)}
        now = timezone.now()
        new, changed = [], []
        for item in items:
            profile = existing.get(item.external_id)
            if profile is None:
                new.append(Profile(external_id=item.external_id, attributes=item.attributes or {}))
            elif item.attributes is not None and item.attributes != profile.attributes:
                profile.attributes, profile.updated_at = item.attributes, now
                changed.append(profile)
        if new:
            Profile.objects.bulk_create(new)
            existing.update({p.external_id: p for p in new})
        if changed:
            Profile.objects.bulk_update(changed, ["attributes", "updated_at"])
        result.created, result.updated = len(new), len(changed)
        result.changed_profile_ids.update(p.pk for p in new + changed)
        _sync_identities(items, existing, result)
        batch_ids = {p.pk for p in existing.values() if p.external_id in set(external_ids)}
        result.unchanged = len(batch_ids - result.changed_profile_ids)
        _reevaluate(result)
    return result


@retry_races
def ingest_events(events: list[dict]) -> EventsResult:
    """Store events ({external_id, name, attributes, occurred_at, source_id}); unknown users are created."""
    result = EventsResult()
    with transaction.atomic():
        source_ids = [e["source_id"] for e in events if e.get("source_id")]
        seen = set(Event.objects.filter(source_id__in=source_ids).values_list("source_id", flat=True))
        fresh = []
        for e in events:
            if e.get("source_id"):
                if e["source_id"] in seen:
                    result.duplicates += 1  # already stored: a re-sent event is not stored twice
                    continue
                seen.add(e["source_id"])
            fresh.append(e)
        if not fresh:
            return result
        profiles = _ensure_profiles(list(dict.fromkeys(e["external_id"] for e in fresh)), result)
        profile_ids = [profiles[e["external_id"]] for e in fresh]
        _insert_events(fresh, profile_ids)
        result.events_created = len(fresh)
        touched = set(profile_ids)
        # Profiles that existed before the batch gained events and nothing else: only the audiences reading
        # events of these names can change for them.
        events_only = touched - result.changed_profile_ids
        result.changed_profile_ids.update(touched)
        _reevaluate(result, events_only=events_only, event_names={e["name"] for e in fresh})
    return result


def _insert_events(events: list[dict], profile_ids: list[int]) -> None:
    """Write the events with one COPY (PostgreSQL), or one executemany (SQLite).

    COPY, not an INSERT of column arrays: Django binds parameters on the client, and quoting thousands of
    array elements into the statement's text cost more than the insert itself.
    """
    table = Event._meta.db_table
    columns = "profile_id, name, attributes, occurred_at, source_id"
    rows = zip(
        profile_ids,
        [e["name"] for e in events],
        [json.dumps(e.get("attributes") or {}) for e in events],
        [e["occurred_at"] for e in events],
        [e.get("source_id") for e in events],
        strict=True,
    )
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            copy_rows(cursor, f"COPY {table} ({columns}) FROM STDIN", rows)
        else:
            adapt = connection.ops.adapt_datetimefield_value
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s)",
                [(p, n, a, adapt(o), s) for p, n, a, o, s in rows],
            )


def _reevaluate(result: IngestResult | EventsResult, **scope) -> None:
    run = reevaluate_profiles(result.changed_profile_ids, **scope)
    if run is not None:
        result.memberships_added, result.memberships_removed = run.added, run.removed
