"""Queries about profiles shared by the admin, the API and the trace."""

from audiences.models import Identity
from identities import IdentityType, InvalidIdentity, normalize


def profiles_with_identity(raw: str):
    """Profile IDs holding `raw` under any type, normalizing it the way each type stores values."""
    candidates = {raw.strip()}
    for identity_type in IdentityType.values:
        try:
            candidates.add(normalize(identity_type, raw))
        except InvalidIdentity:
            pass
    return Identity.objects.filter(value__in=candidates).values("profile_id")
