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


def cluster_env():
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "Q_WORKERS": "1",
        "LOG_LEVEL": "INFO",
    }


def test_the_qcluster_ends_as_soon_as_its_cluster_has_stopped(tmp_path):
    log = tmp_path / "qcluster.log"
    env = cluster_env()
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


def test_the_qcluster_ends_when_its_whole_process_group_is_told_to_stop(tmp_path):
    """systemd (KillMode=control-group), Ctrl-C in a terminal and `kill -- -PGID` signal every process at once.

    Before, django-q2's handler in the main process could wait forever on a worker that had already died."""
    log = tmp_path / "qcluster.log"
    env = {**cluster_env(), "Q_WORKERS": "2"}
    with open(log, "w") as out:
        cluster = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until(lambda: "running." in log.read_text(), 120, "the cluster starting")

        os.killpg(cluster.pid, signal.SIGTERM)
        cluster.wait(timeout=30)
    finally:
        if cluster.poll() is None:
            os.killpg(cluster.pid, signal.SIGKILL)

    assert cluster.returncode == 0
