from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import CommandError
from django.db import transaction
from django.utils import timezone

from audiences.permissions import VIEW_IDENTITIES
from config.commands import RelayCommand, called_wrongly
from outputs.permissions import CHANGE_CREDENTIALS
from staff.models import ApiToken
from staff.roles import ROLES

# What a token's scope does not grant, and its user's permissions do.
WHAT_ROLES_ADD = [(CHANGE_CREDENTIALS, "set outputs' credentials"), (VIEW_IDENTITIES, "read member identities")]


class Command(RelayCommand):
    help = (
        "Create an API token for USERNAME (creating the user, without a password, if it does not exist) and print "
        "it. The token is shown this once: only its hash is stored. A user it creates has no permissions: "
        "its tokens may do what their scope allows, but not set outputs' credentials nor read member identities "
        "(see --role)."
    )

    def add_arguments(self, parser):
        parser.add_argument("username", help="The user the token authenticates as.")
        parser.add_argument("--name", default="", help="What uses the token (default: “USERNAME (command line)”).")
        parser.add_argument(
            "--scope", choices=["read", "write"], default="write", help="read: GET only; write (default): anything."
        )
        parser.add_argument(
            "--role",
            choices=sorted(ROLES),
            help="Put the user in a built-in group; "
            + "; ".join(f"{name} ({role.group}): its tokens may also {role.allows}" for name, role in ROLES.items())
            + ". Default: none, the least the scope allows.",
        )
        parser.add_argument("--expires-days", type=int, help="Expire after this many days (default: never).")
        parser.add_argument("--rotate", action="store_true", help="Revoke the user's other tokens.")

    def handle(self, *args, username, name, scope, role, expires_days, rotate, **options):
        username = username.strip()
        if not username:
            raise called_wrongly("USERNAME must not be empty.")
        if expires_days is not None and expires_days < 1:
            raise called_wrongly("--expires-days must be 1 or more; leave it out for a token that never expires.")
        name = name.strip() or f"{username} (command line)"
        if len(name) > ApiToken._meta.get_field("name").max_length:
            raise called_wrongly("--name must be 100 characters or fewer.")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        with transaction.atomic():
            user, created = get_user_model().objects.get_or_create(username=username)
            if created:
                user.set_unusable_password()
                user.save(update_fields=["password"])
            if role:
                group = Group.objects.filter(name=ROLES[role].group).first()
                if group is None:
                    raise CommandError(f"The {ROLES[role].group} group does not exist: run manage.py migrate first.")
                user.groups.add(group)
            revoked = 0
            if rotate:
                revoked = ApiToken.objects.filter(user=user, revoked_at__isnull=True).update(revoked_at=timezone.now())
            token, plaintext = ApiToken.issue(user, name, scope, expires_at)
        # Only the token goes to stdout, so `TOKEN=$(manage.py create_api_token NAME)` works; the rest is for people.
        if created:
            self.stderr.write(f"Created user {username}.")
        if revoked:
            self.stderr.write(f"Revoked {revoked} earlier token{'s' if revoked != 1 else ''} of {username}.")
        if role:
            self.stderr.write(f"{username} is in the {ROLES[role].group} group: its tokens may {ROLES[role].allows}.")
        else:
            lacks = [what for perm, what in WHAT_ROLES_ADD if not user.has_perm(perm)]
            if lacks:
                self.stderr.write(f"{username}'s tokens cannot {' nor '.join(lacks)}: add --role integrator for that.")
        until = f"expires {timezone.localtime(expires_at):%Y-%m-%d %H:%M}" if expires_at else "never expires"
        self.stderr.write(f"Token {token.prefix} ({scope}, {until}) for {username}; it is not shown again.")
        self.stdout.write(plaintext)
