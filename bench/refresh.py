"""Time a full refresh of "Potential Parisians" and a refresh after 1% of profiles changed.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/refresh.py --profiles 100000

Seeds the profiles when the database has fewer than asked (prefix `bench`),
then prints the figures. Run it against a scratch database.
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from audiences.models import Audience, Membership, Profile  # noqa: E402
from audiences.refresh import refresh_audience  # noqa: E402
from audiences.seeding import seed_profiles  # noqa: E402
from connections.demo import POTENTIAL_PARISIANS  # noqa: E402


def churn(fraction):
    """Flip the status of `fraction` of profiles (Premium <-> Free) in one statement."""
    table = Profile._meta.db_table
    with connection.cursor() as cursor:
        step = max(1, round(1 / fraction))
        if connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {table} SET attributes = jsonb_set(attributes, '{{status}}', "
                f"CASE WHEN attributes->>'status' = 'Premium' THEN '\"Free\"' ELSE '\"Premium\"' END::jsonb) "
                f"WHERE id %% %s = 0",
                [step],
            )
        else:
            cursor.execute(
                f"UPDATE {table} SET attributes = json_set(attributes, '$.status', "
                f"CASE WHEN json_extract(attributes, '$.status') = 'Premium' THEN 'Free' ELSE 'Premium' END) "
                f"WHERE id %% %s = 0",
                [step],
            )
        return cursor.rowcount


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    have = Profile.objects.count()
    if have < args.profiles:
        started = time.monotonic()
        seed_profiles(args.profiles - have, prefix=f"bench{have}", seed=42)
        print(f"seeded {args.profiles - have:,} profiles in {time.monotonic() - started:.1f} s")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    Audience.objects.filter(name="bench: Potential Parisians").delete()
    audience = Audience.objects.create(name="bench: Potential Parisians", criteria=POTENTIAL_PARISIANS)
    first = refresh_audience(audience)
    print(
        f"full refresh of {Profile.objects.count():,} profiles: +{first.added:,} -{first.removed:,} "
        f"= {first.size:,} members in {first.seconds:.2f} s"
    )
    changed = churn(0.01)
    again = refresh_audience(audience)
    print(
        f"refresh after {changed:,} profiles (1%) changed status: +{again.added:,} -{again.removed:,} "
        f"in {again.seconds:.2f} s"
    )
    assert again.size == Membership.objects.filter(audience=audience).count()


if __name__ == "__main__":
    main()
