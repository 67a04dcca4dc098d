import pytest
from django.core.management import CommandError, call_command

from tests.audiences.factories import AudienceFactory, ProfileFactory

pytestmark = pytest.mark.django_db


def test_refresh_audiences_prints_a_summary(capsys):
    AudienceFactory(name="Premium")
    ProfileFactory.create_batch(2, attributes={"status": "Premium"})
    call_command("refresh_audiences", "--audience", "Premium")
    out = capsys.readouterr().out
    assert "Refreshed 1 audience(s): 2 added, 0 removed" in out


def test_refresh_audiences_refuses_an_unknown_name():
    with pytest.raises(CommandError, match="No audience named 'Nope'."):
        call_command("refresh_audiences", "--audience", "Nope")


def test_migrate_keeps_a_refresh_schedule_and_its_task_refreshes_everything(settings):
    from django_q.models import Schedule

    from audiences.schedules import REFRESH_SCHEDULE_NAME, ensure_schedules
    from audiences.tasks import refresh_all_audiences

    settings.AUDIENCE_REFRESH_MINUTES = 5
    ensure_schedules()
    schedule = Schedule.objects.get(name=REFRESH_SCHEDULE_NAME)
    assert (schedule.func, schedule.minutes) == ("audiences.tasks.refresh_all_audiences", 5)

    AudienceFactory(name="Premium")
    ProfileFactory(attributes={"status": "Premium"})
    assert [r["added"] for r in refresh_all_audiences()] == [1]

    settings.AUDIENCE_REFRESH_MINUTES = 0
    ensure_schedules()
    assert not Schedule.objects.filter(name=REFRESH_SCHEDULE_NAME).exists()
