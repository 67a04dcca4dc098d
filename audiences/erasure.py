"""Erasure requests: profiles leave every audience (so every partner removes them), then are deleted.

Every door (the API, the admin's delete and its erase action, the `erase_profiles` command) calls
`erase_profiles` or `erase_external_ids`: one erasure run for the whole set (per BULK_MAX_RECORDS profiles),
a fixed number of statements whatever its size, and one audit entry per profile naming who asked.
"""

from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from audiences import hooks
from audiences.models import MembershipChange, Profile, RefreshRun
from audiences.refresh import T_AUDIENCE, T_CHANGE, T_MEMBER, _finish, _sql, apply_run
from staff import audit


@dataclass
class ErasureResult:
    erased_ids: list[str] = field(default_factory=list)
    memberships_removed: int = 0
    unknown: list[str] = field(default_factory=list)

    @property
    def erased(self) -> int:
        return len(self.erased_ids)

    def as_dict(self) -> dict:
        return {"erased": self.erased, "memberships_removed": self.memberships_removed, "unknown": self.unknown}


def describe(result: ErasureResult) -> str:
    """The sentence the admin and the command show after an erasure."""
    if not result.erased:
        return "No profile was erased."
    left = result.memberships_removed
    audiences = "1 audience" if left == 1 else f"{left:,} audiences"
    if result.erased == 1:
        if not left:
            return "Erased 1 profile; it was in no audience, so no partner is sent anything."
        return f"Erased 1 profile; it left {audiences}, and their connected partners are sent its removal."
    if not left:
        return f"Erased {result.erased:,} profiles; they were in no audience, so no partner is sent anything."
    return (
        f"Erased {result.erased:,} profiles; they left {audiences} in all, "
        f"and their connected partners are sent the removals."
    )


def erase_external_ids(external_ids, user=None, *, via_api: bool = False) -> ErasureResult:
    """Erase the profiles with these external IDs; the IDs no profile has are reported, not an error.

    An unknown ID is what a repeated request finds (the profile is already gone), so it is not refused.
    """
    wanted = list(dict.fromkeys(external_ids))
    result = erase_profiles(Profile.objects.filter(external_id__in=wanted), user, via_api=via_api)
    erased = set(result.erased_ids)
    result.unknown = [e for e in wanted if e not in erased]
    return result


def erase_profiles(profiles, user=None, *, via_api: bool = False) -> ErasureResult:
    """Remove `profiles` (a queryset) from every audience, queue the removals at every partner, delete them.

    The removals are logged and fanned out while the identities still exist, so each partner is told to
    remove them; the outbox forgets them once delivered. Audited as `user` (prefixed "API:" over the API).
    All or nothing: one transaction.
    """
    result = ErasureResult()
    with transaction.atomic():
        # Locked so that an ingest batch touching one of them waits for the erasure instead of racing it.
        rows = list(
            Profile.objects.filter(pk__in=profiles.values("pk")).select_for_update().values_list("pk", "external_id")
        )
        # A run per BULK_MAX_RECORDS profiles keeps each statement's list of IDs under the databases' limits
        # on bound parameters (an admin's "select all" can hold more).
        step = settings.BULK_MAX_RECORDS
        for start in range(0, len(rows), step):
            part = rows[start : start + step]
            result.memberships_removed += _erase(part, user, via_api)
            result.erased_ids += [external_id for _, external_id in part]
    return result


def _erase(rows, user, via_api) -> int:
    scope = Profile.objects.filter(pk__in=[pk for pk, _ in rows])
    scope_sql, scope_params = _sql(scope)
    _lock_audiences(scope_sql, scope_params)
    run = RefreshRun.objects.create(trigger=RefreshRun.Trigger.ERASURE)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {T_CHANGE} (run_id, audience_id, profile_id, action, created_at) "
            f"SELECT %s, m.audience_id, m.profile_id, 'remove', %s FROM {T_MEMBER} m "
            f"WHERE m.profile_id IN ({scope_sql})",
            [run.pk, now, *scope_params],
        )
        removed = cursor.rowcount
    if removed:
        apply_run(run)
    _finish(run, 0, removed)
    hooks.profiles_erased(scope)
    left = dict(MembershipChange.objects.filter(run=run).values_list("profile_id").annotate(n=Count("id")).order_by())
    entries = [(pk, external_id, _audit_message(left.get(pk, 0))) for pk, external_id in rows]
    if via_api:
        entries = [(pk, external_id, audit.api(message)) for pk, external_id, message in entries]
    audit.record_many(user, Profile, entries, "delete")
    scope.delete()
    return removed


def _audit_message(audiences_left: int) -> str:
    if not audiences_left:
        return "Erased: it was in no audience; deleted."
    audiences = "1 audience" if audiences_left == 1 else f"{audiences_left} audiences"
    return f"Erased: removed from {audiences} (and at every partner it reached), then deleted."


def _lock_audiences(scope_sql, scope_params) -> None:
    # The erasure moves the size of every audience its profiles leave, as a profile re-evaluation and a
    # static edit do: it takes their row locks first, in id order like they do, so the two never deadlock.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id FROM {T_AUDIENCE} WHERE id IN (SELECT m.audience_id FROM {T_MEMBER} m "
                f"WHERE m.profile_id IN ({scope_sql})) ORDER BY id FOR NO KEY UPDATE",
                scope_params,
            )
