from django.core.management.base import CommandError

from config.commands import RelayCommand
from connections import services
from connections.management.commands._common import console, get_connection


class Command(RelayCommand):
    help = "Pause a connection: nothing is sent until it is resumed; membership changes keep queueing."

    def add_arguments(self, parser):
        parser.add_argument("id", type=int, help="The connection's ID (shown in the admin and by the API).")

    def handle(self, *args, id, **options):
        conn = get_connection(id)
        try:
            console(self).print(services.pause(conn))
        except services.Refused as exc:
            raise CommandError(str(exc)) from None
