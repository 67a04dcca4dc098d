"""At 1,000,000 members each variant's share is within ±0.5 percentage points of its percentage.

PostgreSQL computes the buckets of profile IDs 1…1,000,000 (generate_series) with the very expression the
variants' queries use, for several audiences and split versions (each its own hash); the same figures are the
README's. SQLite computes the same arithmetic (tests/connections/test_variants.py compares the two).
"""

import pytest
from django.db import connection

from audiences import variants as split

pytestmark = pytest.mark.django_db

N = 1_000_000
SPLITS = [[45, 45, 10], [50, 50], [20, 20, 20, 20, 20], [90, 10]]


def shares(seeds, percents) -> list[float]:
    ranges = split._ranges([(str(i), p) for i, p in enumerate(percents)])
    counts = ", ".join(f"SUM(CASE WHEN b BETWEEN {first} AND {last} THEN 1 ELSE 0 END)" for _, _, first, last in ranges)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT {counts} FROM (SELECT {split.bucket_sql('g', seeds)} AS b FROM generate_series(1, %s) g) s", [N]
        )
        return [100 * n / N for n in cursor.fetchone()]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="generate_series: PostgreSQL")
@pytest.mark.parametrize("audience_id, version", [(1, 1), (2, 1), (7, 3), (123456, 9)])
def test_each_variant_is_within_half_a_point_of_its_share_at_a_million_members(audience_id, version):
    seeds = split.seed(audience_id, version)
    for percents in SPLITS:
        got = shares(seeds, percents)
        off = [round(g - p, 3) for g, p in zip(got, percents, strict=True)]
        assert all(abs(o) <= 0.5 for o in off), (percents, got)
