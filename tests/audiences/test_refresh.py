import datetime as dt

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from audiences import hooks
from audiences.models import Audience, Membership, MembershipChange, RefreshRun
from audiences.refresh import refresh_audience
from audiences.static import change_static_members
from tests.audiences.factories import AudienceFactory, EventFactory, MembershipFactory, ProfileFactory

pytestmark = pytest.mark.django_db

PREMIUM = {"user": "status", "op": "eq", "value": "Premium"}


def members(audience):
    return set(Membership.objects.filter(audience=audience).values_list("profile__external_id", flat=True))


def changes(run):
    return {(c.profile_id, c.action) for c in MembershipChange.objects.filter(run=run)}


def test_it_adds_matching_profiles_and_logs_each_add():
    premium = ProfileFactory.create_batch(3, attributes={"status": "Premium"})
    ProfileFactory.create_batch(2, attributes={"status": "Free"})
    audience = AudienceFactory(criteria=PREMIUM)

    result = refresh_audience(audience)

    assert (result.added, result.removed, result.size) == (3, 0, 3)
    assert members(audience) == {p.external_id for p in premium}
    run = RefreshRun.objects.get(audience=audience, trigger="full")
    assert changes(run) == {(p.pk, "add") for p in premium}
    audience.refresh_from_db()
    assert audience.size == 3 and audience.last_refreshed_at is not None


def test_it_removes_members_that_no_longer_match_and_leaves_the_rest_alone():
    stays = ProfileFactory(attributes={"status": "Premium"})
    leaves = ProfileFactory(attributes={"status": "Premium"})
    audience = AudienceFactory(criteria=PREMIUM)
    refresh_audience(audience)
    since = Membership.objects.get(audience=audience, profile=stays).since

    leaves.attributes = {"status": "Free"}
    leaves.save()
    result = refresh_audience(audience)

    assert (result.added, result.removed, result.size) == (0, 1, 1)
    assert members(audience) == {stays.external_id}
    assert Membership.objects.get(audience=audience, profile=stays).since == since
    assert changes(RefreshRun.objects.latest("pk")) == {(leaves.pk, "remove")}


def test_a_refresh_without_change_writes_nothing_to_the_log():
    ProfileFactory.create_batch(2, attributes={"status": "Premium"})
    audience = AudienceFactory(criteria=PREMIUM)
    refresh_audience(audience)
    logged = MembershipChange.objects.count()

    result = refresh_audience(audience)

    assert (result.added, result.removed) == (0, 0)
    assert MembershipChange.objects.count() == logged


def test_the_change_log_ids_only_grow():
    profile = ProfileFactory(attributes={"status": "Premium"})
    audience = AudienceFactory(criteria=PREMIUM)
    refresh_audience(audience)
    profile.attributes = {"status": "Free"}
    profile.save()
    refresh_audience(audience)

    log = list(MembershipChange.objects.filter(audience=audience).order_by("id").values_list("action", flat=True))
    assert log == ["add", "remove"]


def test_members_leave_when_their_events_age_out_of_the_window():
    audience = AudienceFactory(criteria={"event": "Play Video", "in_last_days": 3})
    EventFactory(profile__external_id="fresh", occurred_at=timezone.now() - dt.timedelta(days=1))
    EventFactory(profile__external_id="ageing", occurred_at=timezone.now() - dt.timedelta(days=2, hours=12))
    refresh_audience(audience)
    assert members(audience) == {"fresh", "ageing"}

    result = refresh_audience(audience, now=timezone.now() + dt.timedelta(days=1))

    assert result.removed == 1
    assert members(audience) == {"fresh"}


def test_listeners_hear_about_runs_that_changed_membership():
    heard = []
    listener = hooks.on_membership_changed(lambda run: heard.append((run.added, run.removed)))
    try:
        ProfileFactory(attributes={"status": "Premium"})
        audience = AudienceFactory(criteria=PREMIUM)
        refresh_audience(audience)
        refresh_audience(audience)
    finally:
        hooks._membership_listeners.remove(listener)
    assert heard == [(1, 0)]


def test_a_static_audience_cannot_be_refreshed():
    audience = AudienceFactory(kind=Audience.Kind.STATIC, criteria=None, name="VIPs")
    with pytest.raises(ValueError, match="'VIPs' is a static list"):
        refresh_audience(audience)


def test_static_members_are_added_and_removed_once():
    audience = AudienceFactory(kind=Audience.Kind.STATIC, criteria=None)
    a, b = ProfileFactory(), ProfileFactory()
    MembershipFactory(audience=audience, profile=a)
    Audience.objects.filter(pk=audience.pk).update(size=1)

    run = change_static_members(audience, [a.pk, b.pk], add=True)
    assert (run.added, changes(run)) == (1, {(b.pk, "add")})

    run = change_static_members(audience, [a.pk], add=False)
    assert (run.removed, changes(run)) == (1, {(a.pk, "remove")})
    audience.refresh_from_db()
    assert members(audience) == {b.external_id} and audience.size == 1


@pytest.mark.skipif(connection.vendor != "postgresql", reason="work_mem is PostgreSQL's")
@override_settings(REFRESH_WORK_MEM="96MB")
def test_a_refresh_compares_members_with_refresh_work_mem_and_gives_the_session_its_own_back():
    ProfileFactory.create_batch(2, attributes={"status": "Premium"})
    audience = AudienceFactory(criteria=PREMIUM)
    seen = []

    def record_work_mem(execute, sql, params, many, context):
        if "NOT EXISTS" in sql:  # the anti-joins that hash every match and every member
            context["cursor"].execute("SELECT current_setting('work_mem')")
            seen.append(context["cursor"].fetchone()[0])
        return execute(sql, params, many, context)

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('work_mem')")
        before = cursor.fetchone()[0]
    with connection.execute_wrapper(record_work_mem):
        assert refresh_audience(audience).added == 2

    assert seen == ["96MB", "96MB"]  # the add and the remove anti-joins
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('work_mem')")
        assert cursor.fetchone()[0] == before != "96MB"
