"""Explicit membership edits for static audiences, logged like any other change."""

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from audiences.models import Audience, Identity, Profile, RefreshRun
from audiences.refresh import T_CHANGE, T_MEMBER, _finish, _sql, apply_run


class UnknownProfiles(ValueError):
    """Some of the external IDs or identities given name no profile; `errors` says which, under each field."""

    def __init__(self, external_ids=(), identities=()):
        self.errors = {}
        if external_ids:
            self.errors["external_ids"] = [_none_has(f"external ID '{e}'" for e in external_ids)]
        if identities:
            self.errors["identities"] = [_none_has(f"{t} '{v}'" for t, v in identities)]
        super().__init__(" ".join(sentence for sentences in self.errors.values() for sentence in sentences))


def _none_has(what) -> str:
    what = list(what)
    return "no profile has " + ", ".join(what[:20]) + (" …" if len(what) > 20 else "")


def resolve_profiles(external_ids=(), identities=()) -> list[int]:
    """Profile IDs for external IDs and normalized (type, value) pairs; every one must exist."""
    ids, missing_ids, missing_identities = set(), [], []
    if external_ids:
        found = dict(Profile.objects.filter(external_id__in=external_ids).values_list("external_id", "pk"))
        missing_ids = [e for e in external_ids if e not in found]
        ids.update(found.values())
    if identities:
        query = Q()
        for identity_type, value in identities:
            query |= Q(type=identity_type, value=value)
        found = {(t, v): pid for t, v, pid in Identity.objects.filter(query).values_list("type", "value", "profile_id")}
        missing_identities = [(t, v) for t, v in identities if (t, v) not in found]
        ids.update(found.values())
    if missing_ids or missing_identities:
        raise UnknownProfiles(missing_ids, missing_identities)
    return sorted(ids)


def change_static_members(audience: Audience, profile_ids, *, add: bool) -> RefreshRun:
    if audience.kind != Audience.Kind.STATIC:
        raise ValueError(f"'{audience.name}' is rule-based; its members follow its criteria.")
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic():
        audience = Audience.objects.select_for_update().get(pk=audience.pk)
        run = RefreshRun.objects.create(trigger=RefreshRun.Trigger.STATIC, audience=audience)
        scope_sql, scope_params = _sql(Profile.objects.filter(pk__in=list(profile_ids)))
        member = f"EXISTS (SELECT 1 FROM {T_MEMBER} m WHERE m.audience_id = %s AND m.profile_id = p.pid)"
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {T_CHANGE} (run_id, audience_id, profile_id, action, created_at) "
                f"SELECT %s, %s, p.pid, %s, %s FROM ({scope_sql}) p WHERE {'NOT ' if add else ''}{member}",
                [run.pk, audience.pk, "add" if add else "remove", now, *scope_params, audience.pk],
            )
            count = cursor.rowcount
        if count:
            apply_run(run)
        Audience.objects.filter(pk=audience.pk).update(last_refreshed_at=timezone.now())
        _finish(run, count if add else 0, 0 if add else count)
    return run
