from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from rich.console import Console
from rich.table import Table

from audiences.erasure import ErasureResult, describe, erase_external_ids
from audiences.text import has_control_characters
from config.commands import RelayCommand, called_wrongly

# Who the audit entries name when --user is not given: a user that cannot sign in, created on first use.
SYSTEM_USER = "system"


class Command(RelayCommand):
    help = (
        "Erase profiles by external ID: each leaves every audience, every partner it reached is sent its "
        "removal, then it is deleted with its identities and events. IDs no profile has are listed, not refused "
        "(a repeated erasure finds them gone)."
    )

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "--external-id", action="append", metavar="ID", help="A profile's external ID; repeat for several."
        )
        source.add_argument(
            "--file", type=Path, help="A text file with one external ID per line (blank lines and # comments skipped)."
        )
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            help=f"Who asked for the erasure, named in the audit entries (default: the user “{SYSTEM_USER}”).",
        )

    def handle(self, *args, external_id=None, file=None, user=None, **options):
        ids = _read_ids(file) if file is not None else [e.strip() for e in external_id]
        bad = next((e for e in ids if not e or len(e) > 255 or has_control_characters(e)), None)
        if bad is not None:
            raise called_wrongly(f"Not an external ID: {bad!r} (1 to 255 characters, no control characters).")
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise called_wrongly(f"No external IDs in {file}: give one per line.")
        actor = _actor(user)
        result = ErasureResult()
        # One erasure run per BULK_MAX_RECORDS IDs, the API's limit: a file of any length, in bounded statements.
        step = settings.BULK_MAX_RECORDS
        for start in range(0, len(ids), step):
            part = erase_external_ids(ids[start : start + step], actor)
            result.erased_ids += part.erased_ids
            result.memberships_removed += part.memberships_removed
            result.unknown += part.unknown
        self._report(result, actor)

    def _report(self, result, actor):
        width = None if self.stdout.isatty() else 160
        console = Console(file=self.stdout, highlight=False, width=width)
        table = Table("Erased", "Audiences left", "Not found", title="Erasure")
        table.add_row(f"{result.erased:,}", f"{result.memberships_removed:,}", f"{len(result.unknown):,}")
        console.print(table)
        console.print(describe(result))
        if result.unknown:
            listed = ", ".join(result.unknown[:50]) + (
                f" … and {len(result.unknown) - 50:,} more" if len(result.unknown) > 50 else ""
            )
            console.print(f"No profile has these external IDs (never known, or already erased): {listed}")
        if result.memberships_removed:
            console.print("A qcluster worker sends the removals; `python manage.py forward --all` sends them now.")
        if result.erased:
            console.print(f"Audit entries name {actor.get_username()}.")


def _read_ids(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise called_wrongly(f"No file {path}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise called_wrongly(f"Cannot read {path}: {exc}.") from None
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _actor(username):
    users = get_user_model().objects
    if username is not None:
        actor = users.filter(username=username).first()
        if actor is None:
            raise called_wrongly(f"No user {username!r}: --user names an existing user, for the audit entries.")
        return actor
    actor, created = users.get_or_create(username=SYSTEM_USER, defaults={"is_active": False})
    if created:
        actor.set_unusable_password()
        actor.save(update_fields=["password"])
    return actor
