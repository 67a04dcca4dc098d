"""The fault soaks at a small scale (soak/run.py runs them at 100,000 messages): worker crashes, partner
faults, sustained API load and a PostgreSQL restart, each checked member by member at the partner.

They need PostgreSQL; the Redis crash soak needs Redis, the load soak wrk, the restart pg_ctlcluster.
The restart ends every connection to the server, other test runs' included: it runs last, and its own
test tolerates the connections it breaks (it reconnects before it checks).
"""

import shutil

import pytest
from django.db import connection

from bench import harness
from soak import crashes, dbrestart, faults, load, scene

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sandbox_process():
    if connection.vendor != "postgresql":
        pytest.skip("the soaks run on PostgreSQL (DATABASE_URL=postgres://…)")
    running = harness.SandboxProcess()
    running.start()
    yield running
    running.stop()


@pytest.mark.parametrize("broker", ["orm", "redis"])
def test_it_loses_nothing_when_workers_are_killed(sandbox_process, broker):
    if broker == "redis" and not harness.redis_reachable(scene.redis_url()):
        pytest.skip(f"the Redis crash soak needs Redis at {scene.redis_url()}")

    result = crashes.run_crashes(sandbox_process, broker, each=2_000, kills=2, latency=0.1, timeout=150)

    assert result["kills"] == 2
    assert result["lost"] == 0 and result["extra"] == 0
    assert result["states"] == {"delivered": 4_000}
    assert result["duplicate_batches"] <= crashes.repeat_bound(2), result


def test_it_delivers_everything_when_30_percent_of_partner_requests_fail(sandbox_process):
    result = faults.run_faults(sandbox_process, each=1_500, timeout=150)

    assert result["states"] == {"delivered": 3_000}
    assert result["lost"] == 0
    assert 0.15 <= result["failed_share"] <= 0.5, result["faults_applied"]  # 30% of some 60 requests
    assert result["retries"] > 0 and result["first_attempt"] < 1
    # Retries due within seconds are waited for by the worker, not left to the scheduler's 30-second tick
    # (which made this drain take minutes).
    assert result["seconds"] < 90


def test_the_bulk_endpoints_take_sustained_load_without_errors_while_forwarding(sandbox_process):
    if shutil.which("wrk") is None:
        pytest.skip("the load soak needs wrk (apt-get install -y wrk)")

    result = load.run_load(sandbox_process, seconds=5, each=1_000)

    assert result["requests"] > 0
    assert result["profiles_forwarded"] == result["audience_members"] > 0
    assert result["connect"] + result["read"] + result["write"] + result["timeout"] == 0, result
    assert result["non_2xx"] == 0, result


def test_it_recovers_by_itself_when_postgresql_restarts_mid_drain(sandbox_process):
    if dbrestart.restart_command() is None:
        pytest.skip("restarting PostgreSQL needs pg_ctlcluster and /etc/postgresql/<version>/main")

    result = dbrestart.run_dbrestart(sandbox_process, each=3_000, latency=0.1, timeout=150)

    assert result["cluster_alive"]
    assert result["states"] == {"delivered": 6_000}
    assert result["lost"] == 0
