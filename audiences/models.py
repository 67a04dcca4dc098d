from django.db import models
from django.db.models import Q

from identities import IdentityType


class Profile(models.Model):
    """One user, known to the source systems by its external ID."""

    external_id = models.CharField(max_length=255, unique=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        # Identity values (emails, phones, device and customer IDs) are shown only to staff with it
        # (audiences.permissions); the external ID is the source system's key, not an identity.
        permissions = [("view_identities", "Can see member identities")]

    def __str__(self):
        return self.external_id


class Identity(models.Model):
    """A value by which partners can target a profile; stored normalized."""

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="identities")
    type = models.CharField(max_length=20, choices=IdentityType.choices)
    value = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "identities"
        constraints = [models.UniqueConstraint(fields=["type", "value"], name="identity_type_value_unique")]
        indexes = [models.Index(fields=["value"], name="identity_value_idx")]

    def __str__(self):
        # Not the value: this name is written into the audit history ("Added identity …"), which staff read
        # without the identities permission and which outlives an erased profile.
        return f"{self.get_type_display()} #{self.pk}" if self.pk else self.get_type_display()


class Event(models.Model):
    """Something a user did; most audiences are built from events."""

    # No index of its own: event_profile_name_time_idx leads with the profile and serves every lookup by it;
    # with a second one the planner picked the narrow index for a batch's re-evaluation and filtered out a
    # third of the rows it fetched by name and time (and every event written paid one index entry more).
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="events", db_index=False)
    name = models.CharField(max_length=255)
    attributes = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField()
    # The sender's own event ID, so a re-sent batch is not counted twice.
    source_id = models.CharField(max_length=255, null=True, blank=True, unique=True)

    class Meta:
        indexes = [
            models.Index(fields=["name", "occurred_at"], name="event_name_time_idx"),
            models.Index(fields=["profile", "name", "occurred_at"], name="event_profile_name_time_idx"),
        ]

    def __str__(self):
        return f"{self.name} @ {self.occurred_at:%Y-%m-%d %H:%M}"


class Audience(models.Model):
    class Kind(models.TextChoices):
        RULES = "rules", "Rule-based"
        STATIC = "static", "Static list"

    name = models.CharField(max_length=255, unique=True)
    description = models.TextField(blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.RULES)
    criteria = models.JSONField(null=True, blank=True, help_text="Rule criteria (see docs/criteria.md).")
    size = models.PositiveIntegerField(default=0, editable=False)
    last_refreshed_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Part of every member's variant hash: a new set of variants (one added, removed or renamed) is a new test
    # and shuffles the members afresh; new percentages alone move only the members at the shifted boundaries.
    split_version = models.PositiveIntegerField(default=0, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="static") | Q(criteria__isnull=False), name="rule_audience_has_criteria"
            )
        ]

    def __str__(self):
        return self.name


class Membership(models.Model):
    # No index of its own: the unique (audience, profile) index serves every
    # lookup by audience, and with a second one the planner may pick the
    # single-column index and filter each anti-join probe row by row.
    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    # Looked up by profile through membership_profile_idx, which holds the audience too: a batch's memberships
    # (ingest, the per-profile path) are read from the index alone instead of one heap page per membership.
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="memberships", db_index=False)
    since = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["audience", "profile"], name="membership_audience_profile_unique")
        ]
        indexes = [models.Index(fields=["profile", "audience"], name="membership_profile_idx")]

    def __str__(self):
        return f"{self.profile} in {self.audience}"


class RefreshRun(models.Model):
    """One evaluation that changed (or could have changed) membership.

    Its change rows are exactly the changes it made, which is how the
    forwarding side finds them without racing other runs' sequence numbers.
    """

    class Trigger(models.TextChoices):
        FULL = "full", "Full refresh"
        PROFILES = "profiles", "Profile update"
        STATIC = "static", "Static list edit"
        ERASURE = "erasure", "Profile erasure"

    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    audience = models.ForeignKey(Audience, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    added = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)

    def __str__(self):
        return f"{self.get_trigger_display()} #{self.pk}"


class MembershipChange(models.Model):
    """Append-only log of membership changes, written with the change itself."""

    class Action(models.TextChoices):
        ADD = "add", "Add"
        REMOVE = "remove", "Remove"

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(RefreshRun, on_delete=models.CASCADE, related_name="changes")
    # Looked up by audience through change_audience_profile_idx, which it leads.
    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="+", db_index=False)
    # No foreign key: the log outlives an erased profile's row.
    profile_id = models.BigIntegerField()
    action = models.CharField(max_length=6, choices=Action.choices)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["audience", "profile_id"], name="change_audience_profile_idx")]

    def __str__(self):
        return f"{self.action} {self.profile_id} {self.audience_id}"


class Variant(models.Model):
    """One share of an audience's members, for an A/B test: members are assigned by a stable hash (see
    audiences/variants.py) into buckets 0–9,999, and a variant holds the members of its bucket range."""

    audience = models.ForeignKey(Audience, on_delete=models.CASCADE, related_name="variants")
    name = models.CharField(max_length=100)
    percent = models.PositiveSmallIntegerField()
    position = models.PositiveSmallIntegerField()
    # Written with the split: the variants of an audience cover 0–9,999 in position order, without gaps.
    first_bucket = models.PositiveSmallIntegerField(editable=False)
    last_bucket = models.PositiveSmallIntegerField(editable=False)

    class Meta:
        ordering = ["audience__name", "position"]
        constraints = [
            models.UniqueConstraint(fields=["audience", "name"], name="variant_audience_name_unique"),
        ]

    def __str__(self):
        return f"{self.audience.name} · {self.name}"
