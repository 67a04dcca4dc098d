"""django-q2 schedules owned by the connections app, kept in step after every migrate."""

SCHEDULES = {
    "Forward due messages": {"func": "connections.tasks.sweep", "schedule_type": "I", "minutes": 1},
    "Prune finished messages": {"func": "connections.tasks.prune", "schedule_type": "D"},
    "Verify connections": {"func": "connections.tasks.verify_all", "schedule_type": "H"},
    "Refresh expiring members": {"func": "connections.refresh.refresh_all", "schedule_type": "H"},
}


def ensure_schedules(**kwargs):
    from django_q.models import Schedule

    for name, fields in SCHEDULES.items():
        Schedule.objects.update_or_create(name=name, defaults={**fields, "repeats": -1})
