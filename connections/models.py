import json

from django.db import models
from django.db.models import Q

from audiences.models import Audience, Variant
from identities import IdentityType
from outputs.models import Output
from staff import dates


class Connection(models.Model):
    """An audience forwarded to an output, with what the partner needs to place it (e.g. a List ID)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        PAUSED = "paused", "Paused"
        FAULTED = "faulted", "Faulted"
        DISCONNECTING = "disconnecting", "Disconnecting (removing members from the partner)"

    class Mode(models.TextChoices):
        REALTIME = "realtime", "Realtime"
        INTERVAL = "interval", "Interval upload"

    audience = models.ForeignKey(Audience, on_delete=models.PROTECT, related_name="connections")
    # Set: the connection forwards one variant of the audience (its members whose bucket is in the variant's
    # range), not the whole audience. A control variant is one nobody connects.
    variant = models.ForeignKey(
        Variant, null=True, blank=True, on_delete=models.PROTECT, related_name="connections", db_index=False
    )
    output = models.ForeignKey(Output, on_delete=models.PROTECT, related_name="connections")
    settings = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=15, choices=Status.choices, default=Status.ACTIVE)
    status_reason = models.CharField(max_length=1000, blank=True)
    delivery_mode = models.CharField(max_length=10, choices=Mode.choices)
    interval_minutes = models.PositiveIntegerField(null=True, blank=True)
    interval_messages = models.PositiveIntegerField(null=True, blank=True)

    # Counters survive the pruning of delivered messages.
    sent_count = models.BigIntegerField(default=0)
    accepted_count = models.BigIntegerField(default=0)
    rejected_count = models.BigIntegerField(default=0)
    failed_count = models.BigIntegerField(default=0)
    unaccepted_count = models.BigIntegerField(
        default=0, help_text="Membership changes of members with no identity type this partner accepts."
    )
    last_delivery_at = models.DateTimeField(null=True, blank=True)
    last_upload_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    # When a batch was first accepted after the last error; empty while no delivery has succeeded since, i.e.
    # while the error is current. The error itself is kept: it is the history an operator looks for.
    last_error_resolved_at = models.DateTimeField(null=True, blank=True)

    class Verification(models.TextChoices):
        UNVERIFIED = "unverified", "Unverified"
        OK = "ok", "OK"
        WARNING = "warning", "Warning"
        FAILING = "failing", "Failing"
        # Something the last verdict judged has changed since; a verification is queued (connections.reverify).
        CHECKING = "checking", "Re-checking"

    verification_status = models.CharField(max_length=10, choices=Verification.choices, default="unverified")
    verified_at = models.DateTimeField(null=True, blank=True)
    # When something a verdict depends on last changed (settings, secrets, status, a delivery that proved the
    # partner reachable). A verification stores its result only if this did not move while it ran.
    facts_changed_at = models.DateTimeField(null=True, blank=True)
    # [{"name", "status", "detail", "hint"}], as the last verification left them.
    verification_checks = models.JSONField(default=list, blank=True)
    # Set when a drain task is queued and cleared when it starts: at most one waits per connection.
    drain_queued_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["audience__name", "output__name"]
        indexes = [models.Index(fields=["status"], name="connection_status_idx")]

    def __str__(self):
        return f"{self.source_name} → {self.output}"

    @property
    def source_name(self) -> str:
        """What is forwarded: the audience, or one of its variants ("Potential Parisians · A")."""
        return f"{self.audience.name} · {self.variant.name}" if self.variant_id else self.audience.name

    @property
    def partner(self):
        return self.output.partner


# Module-level because the model's Meta (its indexes and constraints) cannot see names in the class body;
# elsewhere they are read as OutboxMessage.State, OutboxMessage.FINISHED and OutboxMessage.WAITING.
class MessageState(models.TextChoices):
    PENDING = "pending", "Pending"
    # Not stored since leases (OutboxLease): a message in flight is a pending one a live lease covers. Kept as a
    # label for the pages that tell the two apart, and for messages written before migration 0013.
    IN_FLIGHT = "in_flight", "In flight"
    DELIVERED = "delivered", "Delivered"
    REJECTED = "rejected", "Rejected"
    FAILED = "failed", "Failed"
    REPLACED = "replaced", "Replaced by a newer message"


# A finished message is never sent again; pruning deletes it once it is old enough.
FINISHED_STATES = (MessageState.DELIVERED, MessageState.REJECTED, MessageState.FAILED, MessageState.REPLACED)
# A waiting message is still on its way to the partner.
WAITING_STATES = (MessageState.PENDING, MessageState.IN_FLIGHT)


class OutboxMessage(models.Model):
    """One membership message for one connection: add or remove one identity at the partner."""

    State = MessageState
    FINISHED = FINISHED_STATES
    WAITING = WAITING_STATES

    id = models.BigAutoField(primary_key=True)
    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="messages", db_index=False)
    profile_id = models.BigIntegerField(null=True, blank=True)
    # The choices give every page the type's label ("Android advertising ID (AAID)"), never the slug.
    identity_type = models.CharField(max_length=20, choices=IdentityType.choices)
    value = models.CharField(max_length=255)
    action = models.CharField(max_length=6, choices=[("add", "Add"), ("remove", "Remove")])
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    # Counts the times a newer change replaced this pending message in place (connections.fanout). A claim
    # reads it and the record writes an outcome only where it is unchanged: a message replaced while it was in
    # flight stays pending, carrying the newer change.
    revision = models.PositiveIntegerField(default=0, db_default=0)
    # An earlier request for this identity got no answer and may still land at the partner until then
    # (connections.policy.settles_at): the message is not sent before, even when a newer change replaces it.
    settles_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=1000, blank=True)
    # Erased profiles: the row is deleted once delivered, so no identity outlives the erasure.
    forget_after_delivery = models.BooleanField(default=False)
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            # Coalescing: one unsent message per identity and connection; a newer
            # change replaces the waiting one instead of queueing behind it.
            models.UniqueConstraint(
                fields=["connection", "identity_type", "value"],
                condition=Q(state=MessageState.PENDING),
                name="outbox_one_pending_per_identity",
            )
        ]
        indexes = [
            models.Index(fields=["connection", "state", "next_attempt_at"], name="outbox_claim_idx"),
            # The claim walks outbox_claim_idx by (connection, state, next attempt): every due message is found
            # there in order. (A second partial index of unsent messages by id cost two index entries per
            # message written and no claim used it.)
            # Every outbox write adds an entry to each index whose condition the new row version meets, and a
            # message is written twice (queued, finished; a claim writes a lease): indexes here are few and partial
            # where they can be. Lookups of one identity (the in-flight check of the claim, the trace) go
            # through the value, which is all but unique.
            models.Index(fields=["value"], name="outbox_value_idx"),
            # Pruning reads finished messages only.
            models.Index(
                fields=["state", "finished_at"],
                condition=Q(state__in=list(FINISHED_STATES)),
                name="outbox_finished_idx",
            ),
        ]

    def __str__(self):
        return f"{self.action} {self.identity_type}:{self.value}"


class LeasedIds(models.Field):
    """The ids of the messages one lease covers: a bigint array on PostgreSQL, a JSON list on SQLite."""

    def db_type(self, connection):
        return "bigint[]" if connection.vendor == "postgresql" else "text"

    def from_db_value(self, value, expression, connection):
        return json.loads(value) if isinstance(value, str) else value

    def get_db_prep_value(self, value, connection, prepared=False):
        if value is None:
            return None
        ids = [int(v) for v in value]
        return ids if connection.vendor == "postgresql" else json.dumps(ids)


class OutboxLease(models.Model):
    """One claim: a batch of a connection's messages leased to one drain lane until `expires_at`.

    A claim writes this one row instead of stamping each message; a message is in flight while a live lease
    covers it (it stays pending). Recording the batch's outcomes deletes the lease in the same transaction; a
    lease whose worker died expires and the next claim of its connection deletes it (connections.outbox).
    """

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="+", db_index=False)
    message_ids = LeasedIds()
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["connection", "expires_at"], name="outbox_lease_idx")]

    def __str__(self):
        return f"Lease of {len(self.message_ids or [])} messages of connection {self.connection_id}"


class Delivery(models.Model):
    """One batch sent to the partner: what went, how it went, and what the partner said."""

    connection = models.ForeignKey(Connection, on_delete=models.CASCADE, related_name="deliveries")
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField("duration (ms)", default=0)
    messages = models.PositiveIntegerField(default=0)
    accepted = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    retried = models.PositiveIntegerField(default=0)
    http_status = models.PositiveSmallIntegerField("HTTP status", null=True, blank=True)
    requests = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=1000, blank=True)
    response_excerpt = models.TextField(blank=True)

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["connection", "-started_at"], name="delivery_recent_idx")]

    def __str__(self):
        return (
            f"Delivery of {self.messages:,} message{'' if self.messages == 1 else 's'} at {dates.when(self.started_at)}"
        )


class OutputSlot(models.Model):
    """A lease on one of an output's concurrent-request slots, shared by every worker.

    A drain holds a slot while it sends and renews the lease while it runs (connections/slots.py).
    """

    output = models.ForeignKey(Output, on_delete=models.CASCADE, related_name="+")
    slot = models.PositiveSmallIntegerField()
    holder = models.CharField(max_length=100, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["output", "slot"], name="output_slot_unique")]

    def __str__(self):
        return f"{self.output_id}#{self.slot}"
