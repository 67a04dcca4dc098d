"""A worker killed mid-batch loses nothing: the lease expires, the batch goes again, the partner's upsert absorbs it."""

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from audiences.ingest import ProfileInput, upsert_profiles
from audiences.models import Audience
from audiences.refresh import refresh_audience
from connections import policy, services
from connections.drain import drain
from connections.models import OutboxLease, OutboxMessage, OutputSlot
from outputs.models import Output
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
WORKER = """
import django, sys
django.setup()
from connections.drain import drain
drain(int(sys.argv[1]))
"""


def database_url():
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgres://{s['USER']}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"


def test_a_killed_worker_loses_no_message_and_the_repeat_has_no_extra_effect(sandbox):
    sandbox.mailchimp_account(MAILCHIMP_KEY)
    sandbox.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Crash test")
    output = Output(
        kind="mailchimp",
        name="Mailchimp",
        base_url=sandbox.url + "/mailchimp/{dc}",
        settings={"email_type": "html", "double_optin": False, "delete_on_subscription_end": False},
    )
    output.set_secrets({"api_key": MAILCHIMP_KEY})
    output.save()
    upsert_profiles(
        [ProfileInput(f"u{i}", {"status": "Premium"}, [("email", f"u{i}@example.com")]) for i in range(1200)]
    )
    audience = Audience.objects.create(name="Crash", criteria={"user": "status", "op": "eq", "value": "Premium"})
    refresh_audience(audience)
    conn = services.connect(audience, output, {"list_id": LIST_ID})
    # Every request hangs for a while at the partner: the worker dies with its batches in flight.
    sandbox.fault("mailchimp", "slow", delay=3, count=3)
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(conn.pk)], cwd=ROOT, env=env)

    def claimed():
        assert worker.poll() is None, "the worker ended before it was killed"
        return OutboxMessage.objects.filter(policy.in_flight(timezone.now()), connection=conn).exists()

    # A loaded machine can take many seconds just to start Django.
    wait_until(claimed, timeout=60, what="the worker claiming a batch")
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    in_flight = OutboxMessage.objects.filter(policy.in_flight(timezone.now()), connection=conn).count()
    assert in_flight > 0

    # The dead worker's leases run out: moved into the past rather than waited for.
    expired = timezone.now() - dt.timedelta(seconds=1)
    OutboxLease.objects.filter(connection=conn).update(expires_at=expired)
    OutputSlot.objects.filter(output=output).update(lease_expires_at=expired)
    # The requests the dead worker left hanging still reach the partner: let them land before the repeat (and
    # before the next test empties the sandbox).
    wait_until(
        lambda: sandbox.stats()["in_flight"]["mailchimp"] == 0,
        timeout=30,
        what="the partner finishing the dead worker's requests",
    )
    sandbox.clear_faults()
    report = drain(conn.pk)

    assert OutboxMessage.objects.filter(connection=conn).exclude(state="delivered").count() == 0
    list_state = sandbox.mailchimp_list_state(LIST_ID)
    assert list_state["member_count"] == 1200
    duplicates = sandbox.stats()["duplicates"]["mailchimp"]
    assert duplicates <= in_flight  # at most the batches the dead worker had in flight went twice
    assert report.messages >= in_flight
    # The dead worker's leases are gone, and each counted as an attempt of the messages they held.
    assert not OutboxLease.objects.filter(connection=conn).exists()
    assert OutboxMessage.objects.filter(connection=conn, attempts=2).count() == in_flight
