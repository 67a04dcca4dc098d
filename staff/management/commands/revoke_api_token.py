from django.utils import timezone

from config.commands import RelayCommand, called_wrongly
from staff.models import ApiToken, parse_token


class Command(RelayCommand):
    help = "Revoke an API token by its prefix (as list_api_tokens shows it); it stops working at once."

    def add_arguments(self, parser):
        parser.add_argument("prefix", help="The token's prefix, such as 3f9a1c0e (the whole token works too).")

    def handle(self, *args, prefix, **options):
        prefix = prefix.strip()
        parsed = parse_token(prefix)
        if parsed is not None:
            prefix = parsed[0]  # someone pasted the whole token: its prefix names it
        token = ApiToken.objects.select_related("user").filter(prefix=prefix).first() if prefix else None
        if token is None:
            raise called_wrongly(f"No API token with prefix {prefix!r}; list_api_tokens shows them.")
        described = f"{token.prefix} ({token.name}, {token.user.username})"
        if not token.revoke():
            day = timezone.localtime(token.revoked_at).date().isoformat()
            self.stdout.write(f"Token {described} was already revoked on {day}.")
            return
        self.stdout.write(f"Revoked token {described}; it stops working now.")
