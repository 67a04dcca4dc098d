from django.core.management.base import CommandError

from config.commands import RelayCommand
from connections import services
from connections.management.commands._common import console, get_connection


class Command(RelayCommand):
    help = "Resume a paused or faulted connection: its waiting messages go out now."

    def add_arguments(self, parser):
        parser.add_argument("id", type=int, help="The connection's ID (shown in the admin and by the API).")

    def handle(self, *args, id, **options):
        conn = get_connection(id)
        try:
            console(self).print(services.resume(conn))
        except services.Refused as exc:
            raise CommandError(str(exc)) from None
