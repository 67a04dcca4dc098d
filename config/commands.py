"""What every management command of ours shares: one exit-code rule, and only its own output.

Exit codes, the same for every command (README, "Management commands"):
- 0: done;
- 1: the work failed (a partner fault, a failing verification, secrets that cannot be read, a port taken);
- 2: the command was called wrongly: a bad argument, or a name or ID that does not exist. argparse's own
  errors (a missing or unknown option) exit 2 as well, so one mistake exits alike whoever notices it.
"""

import logging

from django.core.management.base import BaseCommand, CommandError

CALLED_WRONGLY = 2


def called_wrongly(message: str) -> CommandError:
    return CommandError(message, returncode=CALLED_WRONGLY)


class RelayCommand(BaseCommand):
    def execute(self, *args, **options):
        # Commands queue work for the workers; django-q2 logs each task it queues ("Enqueued …") at INFO, which
        # would land in the middle of the command's own output. Its warnings and errors still show.
        logger = logging.getLogger("django-q")
        level = logger.level
        logger.setLevel(max(level, logging.WARNING))
        try:
            return super().execute(*args, **options)
        finally:
            logger.setLevel(level)
