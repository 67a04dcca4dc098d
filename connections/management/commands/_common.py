"""What the connection commands share: finding a connection by ID, and printing sentences with rich."""

from rich.console import Console

from config.commands import called_wrongly
from connections.models import Connection
from connections.queries import with_pending


def get_connection(pk: int) -> Connection:
    conn = with_pending(Connection.objects.select_related("audience", "variant", "output")).filter(pk=pk).first()
    if conn is None:
        raise called_wrongly(
            f"No connection with ID {pk}. The admin's connection list and GET /api/v1/connections/ show the IDs."
        )
    return conn


def console(command) -> Console:
    # Piped or captured output gets a wide page, so tables keep whole names for the reader or the script.
    width = None if command.stdout.isatty() else 160
    return Console(file=command.stdout, highlight=False, width=width)
