from django.core.exceptions import ValidationError
from rich.console import Console
from rich.table import Table

from audiences import variants as split
from audiences.models import Audience
from config.commands import RelayCommand, called_wrongly


class Command(RelayCommand):
    help = (
        "Show an audience's A/B variants with their sizes, or change them: --set 'A=45 B=45 control=10' "
        "(2 to 5 variants, whole percentages adding up to 100) or --remove. A change says how many members move "
        "and queues their removes and adds at the variants' connections."
    )

    def add_arguments(self, parser):
        parser.add_argument("audience", metavar="AUDIENCE", help="The audience's name, exactly as shown.")
        change = parser.add_mutually_exclusive_group()
        change.add_argument("--set", metavar="'NAME=PERCENT …'", help="The variants, in order, such as 'A=50 B=50'.")
        change.add_argument("--remove", action="store_true", help="Remove the variants: one audience again.")
        parser.add_argument(
            "--disconnect",
            choices=["remove", "keep"],
            help="When variants that go away have connections: remove their members from the partners first "
            "(then run the change again once those connections are gone), or keep them there.",
        )

    def handle(self, *args, audience, set=None, remove=False, disconnect=None, **options):
        found = Audience.objects.filter(name=audience).first()
        if found is None:
            raise called_wrongly(f"No audience named '{audience}'.")
        console = Console(file=self.stdout, highlight=False, width=None if self.stdout.isatty() else 160)
        if set is not None or remove:
            try:
                spec = [] if remove else split.parse_split(set)
                result = split.change_split(found, spec, disconnect)
            except ValidationError as exc:
                flags = {"variants": "--set", "disconnect": "--disconnect"}
                raise called_wrongly(
                    "\n".join(f"{flags.get(k, k)}: {p}" for k, ps in exc.message_dict.items() for p in ps)
                ) from None
            console.print(result.detail)
            found.refresh_from_db()
        variants = list(found.variants.all())
        if not variants:
            console.print(f"'{found.name}' has no variants ({found.size:,} members).")
            return
        sizes = split.sizes(found)
        table = Table("variant", "percent", "buckets", "members", "connections")
        for v in variants:
            table.add_row(
                v.name,
                f"{v.percent}%",
                f"{v.first_bucket}–{v.last_bucket}",
                f"{sizes[v.pk]:,}",
                str(v.connections.count()) if hasattr(v, "connections") else "-",
            )
        console.print(table)
