from django.core.management.base import CommandError
from django.db import transaction

from config.commands import RelayCommand
from outputs import crypto
from outputs.models import Output


class Command(RelayCommand):
    help = (
        "Re-encrypt every output's secrets under the first key of SECRETS_ENCRYPTION_KEYS. "
        "Rotation: put the new key first (keep the old one after it), run this, then remove the old key."
    )

    def handle(self, *args, **options):
        rotated = 0
        with transaction.atomic():
            for output in Output.objects.select_for_update().exclude(secrets_encrypted=""):
                try:
                    token = crypto.rotate(output.secrets_encrypted)
                except Exception:
                    raise CommandError(
                        f"Output '{output.name}': its secrets cannot be decrypted with any configured key; "
                        "nothing was changed."
                    ) from None
                Output.objects.filter(pk=output.pk).update(secrets_encrypted=token)
                rotated += 1
        self.stdout.write(f"Re-encrypted the secrets of {rotated} output(s) under the current key.")
