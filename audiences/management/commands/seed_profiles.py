import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from audiences.seeding import DEFAULT_MIX, SEEDABLE_TYPES, SeedingError, parse_mix, seed_profiles
from config.commands import RelayCommand, called_wrongly


class Command(RelayCommand):
    help = (
        "Create realistic test profiles with identities and travel-video events "
        "(Play Video, View Destination, Search Flights, Book Trip). Fast: COPY on PostgreSQL."
    )

    def add_arguments(self, parser):
        default_mix = ",".join(f"{name}={probability:g}" for name, probability in DEFAULT_MIX.items())
        parser.add_argument("--count", type=int, required=True, help="Number of profiles to create (>= 1).")
        parser.add_argument(
            "--mix",
            help=(
                "Identity types and the probability that a profile has one, as type=probability pairs "
                f"separated by commas; types not listed get none. Types: {', '.join(SEEDABLE_TYPES)}. "
                f"Default: {default_mix}."
            ),
        )
        parser.add_argument(
            "--seed",
            type=int,
            help="Random seed: the same seed and prefix give the same data. Default: random.",
        )
        parser.add_argument(
            "--prefix",
            default="seed",
            help=(
                "External ID prefix, giving IDs like seed-0000001; lower-case letters, digits and hyphens. "
                "Use a new prefix to add another batch. Default: seed."
            ),
        )
        parser.add_argument(
            "--days", type=int, default=14, help="Spread events over this many past days (>= 1). Default: 14."
        )

        parser.add_argument(
            "--fast",
            action="store_true",
            help=(
                "PostgreSQL: generate the rows inside the database (same distributions, another random stream), "
                "rebuilding the indexes once; locks the profile tables while it runs. For millions of profiles."
            ),
        )

    def handle(self, *args, count, mix, seed, prefix, days, fast=False, **options):
        if count < 1:
            raise called_wrongly(f"--count must be at least 1, not {count}.")
        if days < 1:
            raise called_wrongly(f"--days must be at least 1, not {days}.")
        try:
            parsed_mix = parse_mix(mix) if mix is not None else None
        except SeedingError as exc:
            raise called_wrongly(f"Invalid --mix: {exc}.") from None

        console = Console(file=getattr(self.stderr, "_out", self.stderr), stderr=True)
        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        started = time.perf_counter()
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("Seeding profiles", total=count)
            try:
                created = seed_profiles(
                    count,
                    mix=parsed_mix,
                    seed=seed,
                    prefix=prefix,
                    days=days,
                    fast=fast,
                    progress=lambda done, total: bar.update(task, completed=done),
                )
            except SeedingError as exc:
                raise called_wrongly(f"{str(exc)[:1].upper()}{str(exc)[1:]}.") from None
        elapsed = time.perf_counter() - started
        rate = created["profiles"] / elapsed if elapsed else 0
        self.stdout.write(
            f"Created {created['profiles']:,} profiles, {created['identities']:,} identities "
            f"and {created['events']:,} events in {elapsed:.1f} s ({rate:,.0f} profiles/s)."
        )
