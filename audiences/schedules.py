"""django-q2 schedules owned by the audiences app, kept in step with settings after every migrate."""

from django.conf import settings

REFRESH_SCHEDULE_NAME = "Refresh rule-based audiences"


def ensure_schedules(**kwargs):
    from django_q.models import Schedule

    minutes = settings.AUDIENCE_REFRESH_MINUTES
    if minutes <= 0:
        Schedule.objects.filter(name=REFRESH_SCHEDULE_NAME).delete()
        return
    Schedule.objects.update_or_create(
        name=REFRESH_SCHEDULE_NAME,
        defaults={
            "func": "audiences.tasks.refresh_all_audiences",
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "repeats": -1,
        },
    )
