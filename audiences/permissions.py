"""Who may see member identities: one rule for every admin page, export and API endpoint that shows them.

Identity values (email addresses, phone numbers, device IDs, customer IDs) are personal data; the other
permissions say which objects someone may open, this one whether the members' identities are shown on them.
Superusers have it; an API token acts as its user, so the token's user needs it too. A profile's external ID
is the source system's key, not an identity, and stays visible.

- A page or endpoint that is only identities (the outbox messages, the CSV export, the trace, the API's
  member and profile lists) answers 403 with `REFUSED`.
- A page with more to it (a profile, a connection, an audience) leaves the identities out and says why
  with `HIDDEN`.
"""

from django.core.exceptions import PermissionDenied
from rest_framework.permissions import SAFE_METHODS, BasePermission

VIEW_IDENTITIES = "audiences.view_identities"
NEEDS = "needs the “Can see member identities” permission"
REFUSED = (
    f"This shows member identities (email addresses, phone numbers, device and customer IDs): seeing them {NEEDS}."
)
HIDDEN = f"Identities are hidden: seeing them {NEEDS}."
API_REFUSED = (
    f"This answer holds member identities (email addresses, phone numbers, device and customer IDs): reading it "
    f"{NEEDS}, which an API token takes from its user."
)


def can_see_identities(user) -> bool:
    return bool(user and user.is_active and user.has_perm(VIEW_IDENTITIES))


def require_identities(user) -> None:
    if not can_see_identities(user):
        raise PermissionDenied(REFUSED)


class SeesIdentities(BasePermission):
    """API: a viewset lists in `identity_actions` the actions whose answers to a read carry identity values."""

    message = API_REFUSED

    def has_permission(self, request, view):
        if request.method not in SAFE_METHODS or getattr(view, "action", None) not in getattr(
            view, "identity_actions", ()
        ):
            return True
        return can_see_identities(request.user)


class IdentityPagesAdmin:
    """Admin: a ModelAdmin whose pages are all identities (outbox messages). Without the permission it is
    hidden from the index and each of its pages answers 403 with `REFUSED`."""

    def has_view_permission(self, request, obj=None):
        return can_see_identities(request.user) and super().has_view_permission(request, obj)

    def changelist_view(self, request, extra_context=None):
        require_identities(request.user)
        return super().changelist_view(request, extra_context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        require_identities(request.user)
        return super().change_view(request, object_id, form_url, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        require_identities(request.user)
        return super().history_view(request, object_id, extra_context)
