"""django-q2 entry points: thin wrappers taking IDs, calling the same services as the admin, API and commands."""

import logging

from audiences.models import Audience
from audiences.refresh import refresh_audience

log = logging.getLogger(__name__)


def refresh_audience_task(audience_id: int):
    audience = Audience.objects.filter(pk=audience_id, kind=Audience.Kind.RULES).first()
    if audience is None:
        return None
    result = refresh_audience(audience)
    log.info("Refreshed %s: +%d -%d, %d members", result.audience, result.added, result.removed, result.size)
    return result.__dict__


def refresh_all_audiences():
    """The scheduled refresh: catches membership that changes as time passes (events ageing out)."""
    return [
        refresh_audience_task(pk)
        for pk in Audience.objects.filter(kind=Audience.Kind.RULES).values_list("pk", flat=True)
    ]


def queue_refresh(audience_id: int):
    from django_q.tasks import async_task

    async_task("audiences.tasks.refresh_audience_task", audience_id, task_name=f"refresh-audience-{audience_id}")
