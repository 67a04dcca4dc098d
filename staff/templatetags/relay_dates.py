from django import template

from staff import dates

register = template.Library()


@register.filter
def when(moment):
    """{{ delivery.started_at|when }}: the admin's one way to write a moment (staff.dates)."""
    return dates.when(moment)
