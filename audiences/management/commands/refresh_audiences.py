from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from audiences.models import Audience
from audiences.refresh import refresh_audience
from config.commands import RelayCommand, called_wrongly


class Command(RelayCommand):
    help = "Re-evaluate rule-based audiences now and print what changed (adds, removes, size, time)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--audience",
            action="append",
            metavar="NAME",
            help="Audience name; repeat for several. Default: all rule-based audiences.",
        )

    def handle(self, *args, audience=None, **options):
        audiences = Audience.objects.filter(kind=Audience.Kind.RULES)
        if audience:
            found = {a.name: a for a in Audience.objects.filter(name__in=audience)}
            unknown = [n for n in audience if n not in found]
            if unknown:
                raise called_wrongly(f"No audience named {', '.join(repr(n) for n in unknown)}.")
            static = [n for n in audience if found[n].kind != Audience.Kind.RULES]
            if static:
                raise called_wrongly(f"{', '.join(repr(n) for n in static)}: static lists change only when edited.")
            audiences = audiences.filter(name__in=audience)
        audiences = list(audiences)
        if not audiences:
            self.stdout.write("No rule-based audiences to refresh.")
            return
        console = Console(file=self.stdout, highlight=False)
        results = []
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress:
            task = progress.add_task("Refreshing", total=len(audiences))
            for item in audiences:
                progress.update(task, description=f"Refreshing {item.name}")
                results.append(refresh_audience(item))
                progress.advance(task)
        table = Table("Audience", "Added", "Removed", "Members", "Seconds", title="Refresh")
        for r in results:
            table.add_row(r.audience, f"{r.added:,}", f"{r.removed:,}", f"{r.size:,}", f"{r.seconds:.2f}")
        console.print(table)
        total = sum(r.seconds for r in results)
        console.print(
            f"Refreshed {len(results)} audience(s): {sum(r.added for r in results):,} added, "
            f"{sum(r.removed for r in results):,} removed in {total:.2f} s."
        )
