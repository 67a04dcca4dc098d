"""A viewset's filters narrow its list, and nothing else.

DRF's filter backend also filters the queryset a detail action looks its object up in, so `?name=` on
`GET /audiences/7/members/` would have turned a known audience into a 404, and drf-spectacular documents the
list's filters on every action answering a list (`members` documented `kind` and `name`). Actions with
filters of their own (a connection's messages) declare and apply them themselves.
"""

from django_filters.rest_framework import DjangoFilterBackend


def filters_apply(view) -> bool:
    return getattr(view, "action", "list") == "list"


class ListFilterBackend(DjangoFilterBackend):
    def filter_queryset(self, request, queryset, view):
        if not filters_apply(view):
            return queryset
        return super().filter_queryset(request, queryset, view)
