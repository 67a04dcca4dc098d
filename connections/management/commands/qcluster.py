"""`manage.py qcluster`: django-q2's cluster, ended as soon as it has stopped.

django-q2's command starts the cluster and returns, leaving the main process to wait for it in Python's exit
handlers; once a SIGTERM or Ctrl-C has stopped it, the interpreter then tears down everything Django loaded, a
garbage collection of every object of the process that took 5-20 s on a busy machine, with no worker left. A
supervisor waiting for the process (or a deploy replacing it) waited that long for nothing. Here the main
process waits for the cluster itself, then flushes the logs, closes its database connections and ends.
"""

import logging
import os
import threading

from django.conf import settings
from django.db import connections
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand


class _Cluster(Cluster):
    """django-q2's cluster, stopped from a thread when a signal comes.

    django-q2's handler stops the cluster inside the signal handler, setting a multiprocessing Event. When the
    whole process group gets the signal (systemd's default KillMode, Ctrl-C in a terminal, `kill -- -PGID`), a
    worker or the sentinel can die while waiting on that Event, and setting it then waits forever for that
    process to wake: the main process hung until SIGKILL. From a thread, the handler returns at once, and the
    main thread ends when the sentinel does, whether or not that thread ever returns. The handler is the one
    django-q2 installs (in __init__, before start), so a signal during start-up is covered too.
    """

    def sig_handler(self, signum, frame):
        if getattr(self, "_stopping", None) is None:
            self._stopping = threading.Thread(target=self.stop, daemon=True)
            self._stopping.start()

    def stopped(self, timeout: float) -> None:
        if getattr(self, "_stopping", None) is not None:
            self._stopping.join(timeout)


class Command(DjangoQCommand):
    def handle(self, *args, **options):
        settings.SECRET_KEY  # noqa: B018 (as django-q2's command: no cluster without a signing key)
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]  # as django-q2's command does
        cluster = _Cluster()
        cluster.start()
        if options.get("run_once"):
            cluster.stop()
        elif cluster.sentinel is not None:
            cluster.sentinel.join()  # returns once a signal has stopped the cluster (or its sentinel died)
            cluster.stopped(timeout=2)  # its "has stopped." log line, unless it is stuck as _Cluster says
        connections.close_all()
        logging.shutdown()
        for stream in (self.stdout, self.stderr):
            stream.flush()
        os._exit(0)
