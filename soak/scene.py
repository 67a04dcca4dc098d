"""What every soak shares: the scratch database, a Mailchimp and a Braze connection with a backlog in the
partner sandbox, qclusters with fast lease and retry settings, progress, and the check of every member at
the partner (nothing lost, repeats counted)."""

from __future__ import annotations

import math
import os
import re
import time

from bench import harness

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/soak"
AUDIENCE = "soak: members"
LIST = "soaklist"
ATTRIBUTE = "relay_audiences"
BATCH = {"mailchimp": 500, "braze": 75}
# Short enough that a soak sees a dead worker's batch claimed again within seconds; the product's
# defaults (120 s lease, 5 s retry base) stretch the same recovery over minutes.
FAST_ENV = {
    "OUTBOX_LEASE_SECONDS": "10",
    "RETRY_BASE_SECONDS": "0.2",
    "RETRY_MAX_SECONDS": "2",
    # The faults soak's timeout holds a request 4 s and the workers give up after 2 s: 4 s more covers it.
    "OUTCOME_SETTLE_SECONDS": "4",
    "DRAIN_MAX_SECONDS": "5",
    "SLOT_WAIT_SECONDS": "2",
    # ORM broker: a task a killed cluster had taken is handed out again after Q_RETRY (> Q_TIMEOUT), which is
    # what the ORM crash soak waits for; Q_TIMEOUT stays above a drain's 5 s and a request in flight.
    "Q_TIMEOUT": "12",
    "Q_RETRY": "15",
    "ALLOW_PRIVATE_DESTINATIONS": "true",  # the sandbox listens on 127.0.0.1
    "ALLOW_BASE_URL_OVERRIDE": "true",  # and stands in for the partners' hosts
    "CONNECTION_FAULT_HOOK": "",
    "API_THROTTLE_RATE": "",
}


# FAST_ENV's keys that tune the forwarding; `--defaults` runs the workers without them, on the product's defaults.
TUNING = (
    "OUTBOX_LEASE_SECONDS",
    "RETRY_BASE_SECONDS",
    "RETRY_MAX_SECONDS",
    "OUTCOME_SETTLE_SECONDS",
    "DRAIN_MAX_SECONDS",
    "SLOT_WAIT_SECONDS",
    "Q_TIMEOUT",
    "Q_RETRY",
)


def use_defaults() -> None:
    """Run every qcluster of this soak with the product's forwarding defaults (what the README's figures show)."""
    for key in TUNING:
        FAST_ENV.pop(key, None)


def check_scratch(url: str) -> None:
    if not re.match(r"(soak|test_)", harness.db_name(url)):
        raise SystemExit(
            f"refusing to soak in {harness.db_name(url)!r}: the soaks empty audiences, outputs and connections. "
            "Point DATABASE_URL at a scratch database whose name starts with 'soak' (created when missing)."
        )


def database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    return f"postgres://{s['USER']}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


def cluster_env(redis_url: str = "", extra: dict | None = None) -> dict:
    """The settings a qcluster (or gunicorn) child of this soak runs with: same database, same secrets keys."""
    from django.conf import settings

    return {
        **FAST_ENV,
        "DEBUG": "false" if settings.SECRETS_ENCRYPTION_KEYS else "true",
        "SECRET_KEY": settings.SECRET_KEY,
        "SECRETS_ENCRYPTION_KEYS": ",".join(settings.SECRETS_ENCRYPTION_KEYS),
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "LOG_LEVEL": os.environ.get("SOAK_LOG_LEVEL", "WARNING"),
        **(extra or {}),
    }


def email(n: int) -> str:
    return f"soak{n}@soak.example.com"


def customer_id(n: int) -> str:
    return f"SOAK-{n:08d}"


class Backlog:
    """A static audience with `each` Mailchimp and `each` Braze members waiting in the outbox."""

    def __init__(self, sandbox, each: int):
        from connections.schedules import ensure_schedules
        from outputs.sandbox.client import SandboxClient

        self.sandbox, self.each = sandbox, each
        self.client = SandboxClient(sandbox.url, timeout=120)
        harness.reset_state()
        ensure_schedules()  # the sweep that re-queues drains a dead worker left behind
        self.client.reset()
        self.client.mailchimp_list(harness.MAILCHIMP_KEY, LIST, "soak")
        self.client.braze_key(harness.BRAZE_KEY)
        self.connections = self._connect()

    def latency(self, seconds: float) -> None:
        """Every partner request takes `seconds`, as a real API's does: a drain lasts long enough to be hit.

        Added after any other fault: the sandbox applies the first fault that matches a request.
        """
        if seconds:
            self.client.fault("*", "slow", delay=seconds, probability=1.0, seed=0)

    def _connect(self):
        from audiences.models import Audience
        from bench.forward import queue_messages

        audience = Audience.objects.create(name=AUDIENCE, kind="static")
        mailchimp = harness.connection(audience, harness.mailchimp_output(self.sandbox.url), {"list_id": LIST})
        braze = harness.connection(
            audience,
            harness.braze_output(self.sandbox.url),
            {"membership": "array", "attribute_name": ATTRIBUTE, "identifier": "external_id"},
        )
        queue_messages(mailchimp.pk, "email", self.each, "soak", "@soak.example.com")
        queue_messages(braze.pk, "customer_id", self.each, "SOAK-", width=8)
        harness.settle()
        return {"mailchimp": mailchimp, "braze": braze}

    @property
    def total(self) -> int:
        return 2 * self.each

    def ids(self) -> list[int]:
        return [c.pk for c in self.connections.values()]

    def accepted(self) -> int:
        from django.db.models import Sum

        from connections.models import Connection

        return Connection.objects.filter(pk__in=self.ids()).aggregate(n=Sum("accepted_count"))["n"] or 0

    def waiting(self) -> int:
        from connections.models import OutboxMessage

        return OutboxMessage.objects.filter(connection_id__in=self.ids(), state__in=OutboxMessage.WAITING).count()

    def wait_until_sent(self, timeout: float) -> float:
        """Seconds until nothing is pending or in flight (tolerating a database that is restarting)."""
        started = time.monotonic()
        while True:
            try:
                if not self.waiting():
                    return time.monotonic() - started
            except Exception:  # the database is restarting: ask again on a fresh connection
                reconnect()
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{self.waiting():,} messages still pending or in flight after {timeout:g} s")
            time.sleep(0.25)

    def wait_for_progress(self, share: float, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.accepted() < share * self.total:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the drain did not reach {share:.0%} within {timeout:g} s")
            time.sleep(0.05)

    def kick(self, env: dict) -> None:
        """Queue one drain per connection through this run's broker, as fan-out does."""
        harness.child("soak.scene:request_drains", {"ids": self.ids()}, env=env)

    def outbox_states(self) -> dict:
        from django.db.models import Count

        from connections.models import OutboxMessage

        rows = OutboxMessage.objects.filter(connection_id__in=self.ids()).values_list("state").annotate(n=Count("id"))
        return dict(rows)

    def partner_check(self) -> dict:
        """Every member, one by one, at the partner: lost ones, and repeated operations (duplicates)."""
        members = self.client.mailchimp_list_state(LIST)["members"]
        expected = {email(n) for n in range(self.each)}
        subscribed = {m for m, v in members.items() if v["status"] == "subscribed"}
        users = self.client.braze_users()["users"]
        tagged = {k for k, u in users.items() if AUDIENCE in (u.get(ATTRIBUTE) or [])}
        expected_braze = {f"external_id:{customer_id(n)}" for n in range(self.each)}
        stats = self.client.stats()["duplicates"]
        dups = {"mailchimp": stats["mailchimp"], "braze": stats["braze"]}
        return {
            "lost": len(expected - subscribed) + len(expected_braze - tagged),
            "extra": len(subscribed - expected) + len(tagged - expected_braze),
            "duplicates": dups,
            # A repeated request repeats a whole batch (every batch here is full): members repeated / batch size.
            "duplicate_batches": sum(math.ceil(n / BATCH[p]) for p, n in dups.items()),
        }


def request_drains(ids: list[int]) -> dict:
    from connections.tasks import request_drain

    return {"queued": request_drain(ids, force=True)}


def reconnect() -> None:
    from django.db import connection

    try:
        connection.close()
    except Exception:
        pass
    time.sleep(0.5)


def redis_url() -> str:
    return os.environ.get("SOAK_REDIS_URL", "redis://127.0.0.1:6379/12")
