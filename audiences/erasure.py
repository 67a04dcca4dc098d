"""Erasure requests: a profile leaves every audience (so every partner removes it), then is deleted."""

from django.db import connection, transaction
from django.utils import timezone

from audiences.models import Profile, RefreshRun
from audiences.refresh import T_CHANGE, T_MEMBER, _finish, apply_run


def erase_profile(profile: Profile) -> int:
    """Remove the profile from every audience and delete it; returns the number of audiences it left.

    The removals are logged and fanned out while its identities still exist,
    so each partner is told to remove them; the outbox forgets them once
    delivered.
    """
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic():
        run = RefreshRun.objects.create(trigger=RefreshRun.Trigger.ERASURE)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {T_CHANGE} (run_id, audience_id, profile_id, action, created_at) "
                f"SELECT %s, m.audience_id, m.profile_id, 'remove', %s FROM {T_MEMBER} m WHERE m.profile_id = %s",
                [run.pk, now, profile.pk],
            )
            left = cursor.rowcount
        if left:
            apply_run(run)
        _finish(run, 0, left)
        profile.delete()
    return left
