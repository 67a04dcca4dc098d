from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = "Print an API token for USERNAME, creating the user (without a password) if it does not exist."

    def add_arguments(self, parser):
        parser.add_argument("username", help="The user the token authenticates as.")
        parser.add_argument("--rotate", action="store_true", help="Replace the user's existing token with a new one.")

    def handle(self, *args, username, rotate, **options):
        username = username.strip()
        if not username:
            raise CommandError("USERNAME must not be empty.")
        user, created = get_user_model().objects.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        if rotate:
            Token.objects.filter(user=user).delete()
        token, _ = Token.objects.get_or_create(user=user)
        if created:
            self.stderr.write(f"Created user {username}.")
        self.stdout.write(token.key)
