from django.core.management.base import BaseCommand
from django.db import transaction
from rich.console import Console
from rich.table import Table

from audiences.identity_types import IdentityType
from audiences.models import Audience, Profile
from audiences.refresh import refresh_audience
from audiences.seeding import seed_profiles
from audiences.stats import audience_breakdown

POTENTIAL_PARISIANS = {
    "all": [
        {
            "event": "Play Video",
            "where": [
                {"attribute": "category", "op": "eq", "value": "Destination Intro"},
                {"attribute": "destination", "op": "eq", "value": "Paris"},
            ],
            "in_last_days": 3,
        },
        {"user": "status", "op": "eq", "value": "Premium"},
    ]
}


class Command(BaseCommand):
    help = "Seed demo profiles, build the 'Potential Parisians' audience and show who is in it."

    def add_arguments(self, parser):
        parser.add_argument("--profiles", type=int, default=400, help="How many demo profiles to create.")

    def handle(self, *args, profiles, **options):
        console = Console(file=self.stdout, highlight=False)
        with transaction.atomic():
            # The demo owns the profiles it made and its audience: start clean each run.
            Profile.objects.filter(external_id__startswith="demo-").delete()
            Audience.objects.filter(name="Potential Parisians").delete()
        counts = seed_profiles(profiles, prefix="demo", seed=7, days=7)
        console.print(
            f"Seeded {counts['profiles']:,} profiles with {counts['identities']:,} identities "
            f"and {counts['events']:,} travel-video events."
        )
        audience = Audience.objects.create(
            name="Potential Parisians",
            description="Premium users who watched the Paris destination intro in the last 3 days.",
            criteria=POTENTIAL_PARISIANS,
        )
        result = refresh_audience(audience)
        console.print(f"Audience '{audience.name}': {result.size:,} members (refreshed in {result.seconds:.2f} s).")
        table = Table("Identity type", "Members", title="Members by identity type")
        breakdown = audience_breakdown(audience.pk)
        for value, label in IdentityType.choices:
            if breakdown[value]:
                table.add_row(label, f"{breakdown[value]:,}")
        console.print(table)
