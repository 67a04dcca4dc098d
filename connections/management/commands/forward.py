import time

from django.core.management.base import CommandError
from django.utils import timezone
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from config.commands import RelayCommand, called_wrongly
from connections import policy, reverify, services
from connections.drain import drain
from connections.management.commands._common import console, get_connection
from connections.models import Connection, OutboxMessage

COUNTS = ("batches", "messages", "accepted", "rejected", "retried", "failed")


def due_count(conn) -> int:
    return OutboxMessage.objects.filter(policy.due(timezone.now()), connection=conn).count()


class Command(RelayCommand):
    help = (
        "Send what is due now, in this process (no qcluster needed): drains each connection through its "
        "partner with a progress bar, then prints a summary per connection. Exits non-zero if one faulted."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--connection",
            action="append",
            type=int,
            default=[],
            metavar="ID",
            help="A connection's ID; repeat for several.",
        )
        parser.add_argument(
            "--all", action="store_true", help="Every connection that is sending (active or disconnecting)."
        )
        parser.add_argument(
            "--max-seconds",
            type=float,
            metavar="S",
            help="Stop each connection after about S seconds (default: no limit; the rest stays queued).",
        )

    def handle(self, *args, connection, all, max_seconds, **options):
        if not connection and not all:
            raise called_wrongly("Say what to forward: --connection ID (repeatable) or --all.")
        if connection and all:
            raise called_wrongly("Give either --connection or --all, not both.")
        if max_seconds is not None and max_seconds <= 0:
            raise called_wrongly("--max-seconds must be more than 0.")
        if all:
            conns = list(Connection.objects.select_related("audience", "variant", "output").order_by("pk"))
        else:
            conns = [get_connection(pk) for pk in dict.fromkeys(connection)]
        out = console(self)
        rows, faults = [], []
        for conn in conns:
            if conn.status not in policy.SENDING:
                reason = f" ({conn.status_reason})" if conn.status_reason else ""
                out.print(f"Skipped {services.label(conn)}: it is {conn.get_status_display().lower()}{reason}. "
                          f"Resume it to send.")  # fmt: skip
                continue
            totals = self._drain(conn, out, max_seconds)
            rows.append((conn, totals))
            if totals["fault"]:
                faults.append(f"{services.label(conn)}: {totals['fault']}")
        if rows:
            out.print(self._table(rows))
            for conn, totals in rows:
                if totals["note"]:
                    out.print(f"{services.label(conn)}: {totals['note']}")
        elif not conns:
            out.print("There are no connections.")
        if faults:
            raise CommandError(
                f"{len(faults)} connection(s) faulted and stopped; fix the cause, then resume:\n" + "\n".join(faults)
            )

    def _drain(self, conn, out, max_seconds) -> dict:
        totals = dict.fromkeys(COUNTS, 0) | {"seconds": 0.0, "fault": "", "note": "", "why": ""}
        totals["started"] = timezone.now()
        deadline = time.monotonic() + max_seconds if max_seconds else None
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
            transient=True,
            disable=not out.is_terminal,
        ) as progress:
            task = progress.add_task(services.label(conn), total=due_count(conn))

            def on_batch(counts):
                progress.advance(task, counts["messages"])

            while True:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                report = drain(conn.pk, max_seconds=left, progress=on_batch)
                for key in COUNTS:
                    totals[key] += getattr(report, key)
                totals["seconds"] += report.seconds
                totals["fault"] = report.fault
                if not report.more_due or report.fault:
                    break
                if not report.batches:
                    totals["note"] = "Other workers hold every slot of this output; they are sending."
                    break
        self._after(conn, totals)
        return totals

    @staticmethod
    def _after(conn, totals) -> None:
        """What the drain task does after a drain: note an interval upload, finish a disconnect, and have the
        verdict checked again after a fault or a delivery that contradicts it."""
        conn = Connection.objects.filter(pk=conn.pk).select_related("audience", "variant", "output").first()
        if conn is None:
            return
        # The outbox's record keeps the partner's reason for the batch's last refusal or retry on the connection.
        if conn.last_error_at and conn.last_error_at >= totals["started"]:
            totals["why"] = conn.last_error
        if totals["fault"]:
            reverify.changed([conn.pk])
        else:
            reverify.delivered(conn, totals["accepted"])
        if totals["batches"] and conn.delivery_mode == Connection.Mode.INTERVAL:
            Connection.objects.filter(pk=conn.pk).update(last_upload_at=timezone.now())
        if conn.status == Connection.Status.DISCONNECTING and services.finish_disconnect(conn):
            totals["note"] = "Members removed at the partner; the connection is now deleted."

    @staticmethod
    def _table(rows) -> Table:
        table = Table("ID", "Connection", title="Forwarded")
        for name in ("Batches", "Sent", "Accepted", "Rejected", "Retried", "Failed", "Not sent", "Seconds"):
            table.add_column(name, justify="right")
        table.add_column("What happened")
        for conn, t in rows:
            counts = [t["batches"], t["accepted"] + t["rejected"], t["accepted"], t["rejected"], t["retried"]]
            counts += [t["failed"], t["messages"] - sum(t[k] for k in ("accepted", "rejected", "retried", "failed"))]
            table.add_row(
                str(conn.pk), services.label(conn), *(f"{n:,}" for n in counts), f"{t['seconds']:.2f}", _what(t)
            )
        return table


def _what(t) -> Text:
    """What happened to the connection's messages and why, in the words of the partner's answer."""
    if t["fault"]:
        return Text(f"Stopped, nothing more sent: {t['fault']}", style="red")
    parts = []
    if t["retried"] or t["failed"]:
        retried = f"{t['retried']:,} to send again later" if t["retried"] else ""
        failed = f"{t['failed']:,} given up (past the retry window)" if t["failed"] else ""
        parts.append("; ".join(p for p in (retried, failed) if p) + f": {t['why']}")
    elif t["rejected"]:
        parts.append(f"{t['rejected']:,} refused by the partner, for good: {t['why']}")
    if not parts:
        parts.append("All sent." if t["messages"] else "Nothing was due.")
    return Text(" ".join(parts), style="yellow" if t["retried"] or t["failed"] else "")
