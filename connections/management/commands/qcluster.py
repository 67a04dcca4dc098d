"""`manage.py qcluster`: django-q2's cluster, ended as soon as it has stopped.

django-q2's command starts the cluster and returns, leaving the main process to wait for it in Python's exit
handlers; once a SIGTERM or Ctrl-C has stopped it, the interpreter then tears down everything Django loaded, a
garbage collection of every object of the process that took 5-20 s on a busy machine, with no worker left. A
supervisor waiting for the process (or a deploy replacing it) waited that long for nothing. Here the main
process waits for the cluster itself, then flushes the logs, closes its database connections and ends.
"""

import logging
import os

from django.conf import settings
from django.db import connections
from django_q.cluster import Cluster
from django_q.management.commands.qcluster import Command as DjangoQCommand


class Command(DjangoQCommand):
    def handle(self, *args, **options):
        settings.SECRET_KEY  # noqa: B018 (as django-q2's command: no cluster without a signing key)
        if options.get("cluster_name"):
            os.environ["Q_CLUSTER_NAME"] = options["cluster_name"]  # as django-q2's command does
        cluster = Cluster()
        cluster.start()  # django-q2's handler stops the cluster on SIGTERM and SIGINT
        if options.get("run_once"):
            cluster.stop()
        elif cluster.sentinel is not None:
            cluster.sentinel.join()  # returns once a signal has stopped the cluster (or its sentinel died)
        connections.close_all()
        logging.shutdown()
        for stream in (self.stdout, self.stderr):
            stream.flush()
        os._exit(0)
