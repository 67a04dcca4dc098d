"""Read-only numbers about audiences, computed in the database."""

from django.db.models import Count

from audiences.models import Identity
from identities import IdentityType


def identity_breakdown(profiles_queryset) -> dict[str, int]:
    """Members per identity type: how many of these profiles have at least one identity of each type."""
    counts = dict(
        Identity.objects.filter(profile__in=profiles_queryset.values("pk"))
        .values_list("type")
        .annotate(n=Count("profile_id", distinct=True))
        .values_list("type", "n")
    )
    return {t: counts.get(t, 0) for t in IdentityType.values}


def audience_breakdown(audience_id) -> dict[str, int]:
    """Members of one audience per identity type."""
    counts = dict(
        Identity.objects.filter(profile__memberships__audience_id=audience_id)
        .values_list("type")
        .annotate(n=Count("profile_id", distinct=True))
        .values_list("type", "n")
    )
    return {t: counts.get(t, 0) for t in IdentityType.values}
