"""`manage.py qcluster` ends promptly after SIGTERM: a supervisor or a deploy does not wait for nothing."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.connections.test_crash import ROOT, database_url
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_qcluster_ends_as_soon_as_its_cluster_has_stopped(tmp_path):
    log = tmp_path / "qcluster.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "Q_WORKERS": "1",
        "LOG_LEVEL": "INFO",
    }
    with open(log, "w") as out:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(lambda: "running." in log.read_text(), 120, "the cluster starting")

        cluster.send_signal(signal.SIGTERM)
        wait_until(lambda: "has stopped." in log.read_text(), 60, "the cluster stopping", every=0.005)
        stopped = time.monotonic()
        cluster.wait(timeout=60)
        lingered = time.monotonic() - stopped
    finally:
        if cluster.poll() is None:
            cluster.kill()

    assert cluster.returncode == 0
    # Before, the main process then tore the interpreter down for 5-20 s with no worker left.
    assert lingered < 0.5, f"the main process lingered {lingered:.1f} s after its cluster had stopped"
