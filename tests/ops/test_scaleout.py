"""Two qclusters on PostgreSQL and Redis share the forwarding: no message twice, the output's limit held."""

import pytest
from django.db import connection

from bench import harness
from bench.scaleout import run_scaleout

REDIS_URL = "redis://127.0.0.1:6379/13"  # a database of its own: the test empties it

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox_process():
    running = harness.SandboxProcess()
    running.start()
    yield running
    running.stop()


def test_two_clusters_share_the_work_send_nothing_twice_and_hold_the_output_limit(sandbox_process):
    if connection.vendor != "postgresql":
        pytest.skip("scale-out runs on PostgreSQL (DATABASE_URL=postgres://…); SQLite is one machine's database")
    if not harness.redis_reachable(REDIS_URL):
        pytest.skip(f"scale-out needs Redis at {REDIS_URL}")

    result = run_scaleout(sandbox_process, REDIS_URL, connections=6, messages=30_000, timeout=120)

    assert result["states"] == {"delivered": 30_000}
    assert all(held == 5_000 for held in result["held"].values()), result["held"]
    busy = {name: batches for name, batches in result["batches_by_cluster"].items() if batches}
    assert set(busy) == {"cluster 1", "cluster 2"}, result["batches_by_cluster"]
    assert sum(busy.values()) >= 60  # 30,000 messages in batches of at most 500
    assert result["duplicates"] == 0
    assert result["max_concurrent"] <= 10
