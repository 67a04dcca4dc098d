from config.commands import RelayCommand
from connections import services
from connections.management.commands._common import console, get_connection


class Command(RelayCommand):
    help = (
        "Disconnect an audience from an output. Say what happens to the audience's members at the partner: "
        "--remove-from-partner removes them first (the connection is deleted once the removals are sent), "
        "--keep-at-partner leaves them there and deletes the connection now."
    )

    def add_arguments(self, parser):
        parser.add_argument("id", type=int, help="The connection's ID (shown in the admin and by the API).")
        choice = parser.add_mutually_exclusive_group(required=True)
        choice.add_argument(
            "--remove-from-partner",
            action="store_true",
            help="Remove the audience's members at the partner first; the connection goes once that is sent.",
        )
        choice.add_argument(
            "--keep-at-partner",
            action="store_true",
            help="Leave the members at the partner as they are and delete the connection now.",
        )

    def handle(self, *args, id, remove_from_partner, keep_at_partner, **options):
        conn = get_connection(id)
        _, sentence = services.disconnect(conn, remove_from_partner=remove_from_partner)
        out = console(self)
        out.print(sentence)
        if remove_from_partner:
            out.print(f"A qcluster worker sends them; `python manage.py forward --connection {id}` sends them now.")
