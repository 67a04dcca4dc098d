from django.contrib.auth import get_user_model
from django.utils import timezone

from config.commands import RelayCommand, called_wrongly
from staff.models import ApiToken

COLUMNS = ["prefix", "user", "name", "scope", "created", "expires", "last used", "revoked"]


def _when(moment, empty="-") -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M}" if moment else empty


class Command(RelayCommand):
    help = "List API tokens (never their secrets): prefix, user, name, scope, created, expires, last used, revoked."

    def add_arguments(self, parser):
        parser.add_argument("--user", help="Only this user's tokens.")
        parser.add_argument("--active", action="store_true", help="Leave out revoked and expired tokens.")

    def handle(self, *args, user, active, **options):
        tokens = ApiToken.objects.select_related("user").order_by("user__username", "created_at")
        if user:
            if not get_user_model().objects.filter(username=user).exists():
                raise called_wrongly(f"No user named {user!r}.")
            tokens = tokens.filter(user__username=user)
        if active:
            now = timezone.now()
            tokens = tokens.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)
        rows = [
            [
                t.prefix,
                t.user.username,
                t.name,
                t.scope,
                _when(t.created_at),
                _when(t.expires_at, "never") + (" (expired)" if t.is_expired else ""),
                _when(t.last_used_at, "never"),
                _when(t.revoked_at),
            ]
            for t in tokens
        ]
        if not rows:
            self.stdout.write("No API tokens.")
            return
        widths = [max(len(str(r[i])) for r in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
        for row in [COLUMNS, *rows]:
            self.stdout.write("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
