import json
import logging
from contextlib import contextmanager

from django.core.management.base import CommandError
from rich.console import Console, Group
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from audiences.models import Audience
from config.commands import RelayCommand, called_wrongly
from connections import services, verification
from connections.funnel import Funnel
from connections.management.commands._common import console, get_connection
from connections.models import Connection
from outputs.models import Output

STYLE = {"ok": "green", "warning": "yellow", "failing": "bold red", "unverified": "dim", "checking": "dim"}


def verify_each(conns) -> list[tuple[Connection, Funnel]]:
    """Verify each connection (the result is stored on it) and compute its size funnel."""
    results = []
    with _quiet():
        for conn in conns:
            verification.verify(conn)
            results.append((conn, services.funnel(conn)))
    return results


@contextmanager
def _quiet():
    # Workers log each verification; here the table says it, and a log line would land on top of it.
    logger = logging.getLogger(verification.__name__)
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def table(results) -> Table:
    """One row per connection: its status, each check that needs attention with its hint, the ok ones named."""
    t = Table("ID", "Connection", "Status", "Checks", title="Verification", title_justify="left", show_lines=True)
    for conn, _ in results:
        t.add_row(str(conn.pk), services.label(conn), Text(conn.verification_status, STYLE[conn.verification_status]),
                  _checks(conn.verification_checks))  # fmt: skip
    return t


def _checks(checks) -> Group:
    lines = []
    for check in checks:
        if check["status"] == "ok":
            continue
        lines.append(Text.assemble((f"{check['name']}: ", STYLE[check["status"]]), check["detail"]))
        if check["hint"]:
            lines.append(Padding(Text(check["hint"], style="dim"), (0, 0, 0, 2)))
    passed = [c["name"] for c in checks if c["status"] == "ok"]
    if passed:
        lines.append(Text.assemble(("ok: ", "green"), ", ".join(passed)))
    return Group(*lines)


def render(out: Console, results) -> None:
    """The table, then each connection's funnel in one sentence per line (never wrapped, so it can be grepped)."""
    out.print(table(results))
    for conn, funnel in results:
        out.print(Text.assemble((f"{services.label(conn)} (ID {conn.pk}): ", "bold"), funnel.summary), soft_wrap=True)


def as_json(conn: Connection, funnel: Funnel) -> dict:
    partner = conn.partner
    return {
        "id": conn.pk,
        "audience": conn.source_name,
        "output": conn.output.name,
        "partner": {"slug": partner.slug, "name": partner.name},
        "status": conn.verification_status,
        "verified_at": conn.verified_at.isoformat() if conn.verified_at else None,
        "checks": conn.verification_checks,
        "funnel": funnel.as_dict(),
    }


class Command(RelayCommand):
    help = (
        "Verify connections now: credentials, destination and account preconditions at the partner, identity "
        "coverage, delivery health and the partner's own count. Prints a table with a hint for each check that "
        "needs attention and each connection's size funnel. Exit code 0 when all are ok or warning, 1 when any "
        "is failing, 2 on bad arguments."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--connection",
            action="append",
            type=int,
            default=[],
            metavar="ID",
            help="Only this connection (its ID); repeat for several. Default: every connection.",
        )
        parser.add_argument("--audience", metavar="NAME", help="Only connections of this audience (exact name).")
        parser.add_argument("--output", metavar="NAME", help="Only connections to this output (exact name).")
        parser.add_argument(
            "--json",
            action="store_true",
            dest="json_output",
            help='Print one JSON document instead of the table: {"connections": [{"id", "audience", "output", '
            '"partner", "status", "verified_at", "checks", "funnel"}]}.',
        )

    def handle(self, *args, connection, audience, output, json_output, **options):
        conns = self._select(connection, audience, output)
        results = verify_each(conns)
        failing = [conn for conn, _ in results if conn.verification_status == Connection.Verification.FAILING]
        if json_output:
            self._json(results)
        else:
            out = console(self)
            if results:
                render(out, results)
            else:
                out.print("No connection matches." if connection or audience or output else "There are no connections.")
        if failing:
            names = ", ".join(f"{services.label(conn)} (ID {conn.pk})" for conn in failing)
            noun = "connection" if len(results) == 1 else "connections"
            verb = "is" if len(failing) == 1 else "are"
            raise CommandError(f"{len(failing)} of {len(results)} {noun} {verb} failing: {names}.", returncode=1)

    def _json(self, results) -> None:
        doc = {"connections": [as_json(conn, funnel) for conn, funnel in results]}
        self.stdout.write(json.dumps(doc, indent=2, ensure_ascii=False))

    @staticmethod
    def _select(ids, audience, output) -> list[Connection]:
        # Bad arguments exit 2, as argparse's own do; a failing connection exits 1.
        qs = Connection.objects.select_related("audience", "variant", "output").order_by("pk")
        if ids:
            ids = [get_connection(pk).pk for pk in dict.fromkeys(ids)]
            qs = qs.filter(pk__in=ids)
        if audience is not None:
            if not Audience.objects.filter(name=audience).exists():
                raise called_wrongly(f"No audience named '{audience}'.")
            qs = qs.filter(audience__name=audience)
        if output is not None:
            if not Output.objects.filter(name=output).exists():
                raise called_wrongly(f"No output named '{output}'.")
            qs = qs.filter(output__name=output)
        return list(qs)
