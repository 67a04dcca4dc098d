"""How the API knows who is calling and what they may do: hashed API tokens, their scope, a rate per token."""

import logging
import math

from django.conf import settings
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.throttling import SimpleRateThrottle

from staff.models import ApiToken

log = logging.getLogger(__name__)

# `Token` is what clients of DRF's old token scheme send; the tokens they send must be ours.
KEYWORDS = {b"bearer", b"token"}
INVALID = "Invalid API token."
PERIODS = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}


def _day(moment) -> str:
    return timezone.localtime(moment).date().isoformat()


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer ar_<prefix>_<secret>`. A revoked, expired or unknown token is a 401 saying which."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in KEYWORDS:
            return None  # not ours: the session (staff in the browser) may still authenticate the request
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Send one API token after “Bearer”, with no spaces in it.")
        try:
            raw = parts[1].decode()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed(INVALID) from None
        token = ApiToken.find(raw)
        if token is None:
            raise exceptions.AuthenticationFailed(INVALID)
        if token.revoked_at is not None:
            raise exceptions.AuthenticationFailed(f"This API token was revoked on {_day(token.revoked_at)}.")
        if token.is_expired:
            raise exceptions.AuthenticationFailed(f"This API token expired on {_day(token.expires_at)}.")
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("The user of this API token is deactivated.")
        token.touch()
        return token.user, token

    def authenticate_header(self, request):
        # Makes a missing or bad token a 401 (DRF answers 403 when no scheme is announced).
        return 'Bearer realm="api"'


class TokenScope(BasePermission):
    """A read-scoped token may only read; staff signed in to the browser (no token) are not limited here."""

    message = (
        "This API token is read-only: it may only use GET, HEAD and OPTIONS. "
        "Use a token with the write scope to change anything."
    )

    def has_permission(self, request, view):
        token = request.auth
        if isinstance(token, ApiToken) and token.scope == ApiToken.Scope.READ:
            return request.method in SAFE_METHODS
        return True


class StaffModelPermissions(BasePermission):
    """Staff signed in to the admin use the API with their admin permissions.

    The admin's live pages call the API with the browser's session, and a session can call any endpoint: a
    Viewer must not delete an output through the API that the admin would not let them touch. Reading needs
    the model's view permission, creating add, deleting delete, and changing or running an operation
    (pause, refresh, bulk writes…) change, as in the admin. Actions that write nothing (`preview`) need view.
    API tokens are for integrations and are governed by their scope (TokenScope), not by this.

    A view without a queryset declares whose permissions it needs: `staff_model = SomeModel`, or
    `staff_model = None` for a page every staff user may read (the API root, which only lists URLs). A view
    that declares nothing and whose model cannot be found is refused: a check that cannot run grants nothing.
    """

    # Erasing profiles in bulk deletes them, like DELETE does.
    ACTIONS = {"create": "add", "update": "change", "partial_update": "change", "destroy": "delete", "erase": "delete"}
    READ_ONLY_ACTIONS = {"preview"}
    message = "Your staff account does not have the permission for this in the admin, so not through the API either."

    def has_permission(self, request, view):
        if request.auth is not None or request.user.is_superuser:
            return True
        model = view_model(view)
        if model is None:
            # Declared open to all staff, for reading only; a view whose model is unknown is refused.
            return hasattr(view, "staff_model") and request.method in SAFE_METHODS
        action = getattr(view, "action", None)
        if request.method in SAFE_METHODS or action in self.READ_ONLY_ACTIONS:
            perm = "view"
        else:
            perm = self.ACTIONS.get(action, "change")
        return request.user.has_perm(f"{model._meta.app_label}.{perm}_{model._meta.model_name}")


def view_model(view):
    """The model whose admin permissions govern `view`: declared, or its queryset's; None when there is none."""
    if hasattr(view, "staff_model"):
        return view.staff_model
    model = getattr(getattr(view, "queryset", None), "model", None)
    if model is None:
        try:
            model = view.get_queryset().model
        except Exception:  # no queryset (a plain ViewSet) or one that needs a request it lacks: no model known
            log.warning("API view %s has no model to check staff permissions against", type(view).__name__)
            return None
    return model


class Throttled(exceptions.Throttled):
    """DRF's 429 with our sentence instead of its own (Retry-After is set from `wait` by the exception handler)."""

    def __init__(self, wait: float, detail: str):
        exceptions.APIException.__init__(self, detail)
        self.wait = math.ceil(wait)


class ApiThrottle(SimpleRateThrottle):
    """API_THROTTLE_RATE requests per token (per user for browser sessions); empty turns the limit off.

    The counts live in Django's cache: with the default local-memory cache each process counts on its own.
    """

    scope = "api"

    def get_rate(self):
        # Read at each request (DRF would read its THROTTLE_RATES once, at import) so a change takes effect.
        return settings.API_THROTTLE_RATE or None

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ApiToken):
            ident = f"token_{request.auth.prefix}"
        elif request.user and request.user.is_authenticated:
            ident = f"user_{request.user.pk}"
        else:
            ident = f"ip_{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}

    def allow_request(self, request, view):
        if super().allow_request(request, view):
            return True
        wait = math.ceil(self.wait() or self.duration)
        who = "this API token" if isinstance(request.auth, ApiToken) else "this user"
        period = PERIODS.get(self.duration, f"{self.duration} seconds")
        raise Throttled(
            wait,
            f"Too many requests with {who}: the limit is {self.num_requests} a {period}. "
            f"Try again in {wait} second{'s' if wait != 1 else ''}.",
        )
