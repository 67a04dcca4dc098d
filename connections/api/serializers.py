from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from audiences.api.fields import StorableDictField
from audiences.models import Audience, Variant
from connections import last_problem, services
from connections.models import Connection, Delivery, OutboxMessage
from connections.queries import duplicate_of, pending_of
from outputs.models import Output

MAX_INT = 2**31 - 1


def api_errors(exc: DjangoValidationError) -> dict:
    """`{"settings.list_id": [...]}` from the services becomes `{"settings": {"list_id": [...]}}`."""
    errors: dict = {}
    for key, problems in exc.message_dict.items():
        if key.startswith("settings."):
            errors.setdefault("settings", {})[key.removeprefix("settings.")] = problems
        else:
            errors[key] = problems
    return errors


class PartnerRefSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()


class VerificationCheckSerializer(serializers.Serializer):
    name = serializers.CharField(
        help_text="What was checked: credentials, destination (or segment, audience), account preconditions, "
        "identity coverage, status, rejections, failures, waiting, delivery, partner count."
    )
    status = serializers.ChoiceField(choices=["ok", "warning", "failing"])
    detail = serializers.CharField(help_text="What the check found, in one sentence.")
    hint = serializers.CharField(help_text="What to do about it, when the check did not pass; empty otherwise.")


class VerificationSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=Connection.Verification.choices, help_text="The worst status of the checks."
    )
    verified_at = serializers.DateTimeField()
    checks = VerificationCheckSerializer(many=True)
    detail = serializers.CharField(help_text="What happened, in one sentence.")


class FunnelStepSerializer(serializers.Serializer):
    name = serializers.CharField()
    count = serializers.IntegerField(allow_null=True, help_text="null: the partner does not report its count.")
    lost = serializers.IntegerField(help_text="How many the previous step had that this one does not.")
    reason = serializers.CharField(help_text="Why, in words.")


class FunnelSerializer(serializers.Serializer):
    steps = FunnelStepSerializer(
        many=True,
        help_text="audience members → members with an accepted identity → identities valid after normalization "
        "→ forwarded → accepted by the partner → the partner's own count.",
    )
    summary = serializers.CharField(help_text="The funnel in sentences, as the seed's example tells it.")


class ConnectionSerializer(serializers.ModelSerializer):
    audience = serializers.PrimaryKeyRelatedField(queryset=Audience.objects.all(), help_text="Audience ID.")
    variant = serializers.PrimaryKeyRelatedField(
        queryset=Variant.objects.select_related("audience"),
        required=False,
        allow_null=True,
        help_text="A variant ID of the audience (GET /api/v1/audiences/{id}/variants/): forward that variant's "
        "members only. Null: the whole audience.",
    )
    variant_name = serializers.CharField(source="variant.name", read_only=True, allow_null=True, default=None)
    output = serializers.PrimaryKeyRelatedField(queryset=Output.objects.all(), help_text="Output ID.")
    audience_name = serializers.CharField(source="audience.name", read_only=True)
    output_name = serializers.CharField(source="output.name", read_only=True)
    partner = serializers.SerializerMethodField()
    settings = StorableDictField(  # PostgreSQL cannot store NUL in JSON: a 400, not a 500
        required=False,
        help_text="The partner's connection settings, such as Mailchimp's list_id (see /api/v1/partners/).",
    )
    delivery_mode = serializers.ChoiceField(
        choices=Connection.Mode.choices, required=False, help_text="Default: the partner's delivery mode."
    )
    # The columns are positive integers (at most 2³¹-1 on PostgreSQL): out of range would be a database error.
    interval_minutes = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_INT,
        help_text="Interval mode: upload at least this often (minutes).",
    )
    interval_messages = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        max_value=MAX_INT,
        help_text="Interval mode: upload as soon as this many messages wait.",
    )
    pending = serializers.SerializerMethodField(help_text="Messages waiting or in flight.")
    sent = serializers.IntegerField(source="sent_count", read_only=True)
    accepted = serializers.IntegerField(source="accepted_count", read_only=True)
    rejected = serializers.IntegerField(source="rejected_count", read_only=True)
    failed = serializers.IntegerField(source="failed_count", read_only=True)
    unaccepted = serializers.IntegerField(
        source="unaccepted_count",
        read_only=True,
        help_text="Membership changes of members with no identity type this partner accepts (counted, not sent).",
    )
    last_error_resolved_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When a batch was first accepted after the last error; null while none has been since.",
    )
    last_error_current = serializers.SerializerMethodField(
        help_text="Whether last_error is a current problem: false once deliveries have succeeded since it, or once "
        "an active connection's verification passed after it; false when there is no error."
    )
    verification_status = serializers.ChoiceField(
        choices=Connection.Verification.choices,
        read_only=True,
        help_text="The last verification's result (POST …/verify/ to verify now).",
    )
    verification_checks = VerificationCheckSerializer(
        many=True, read_only=True, help_text="The checks the last one ran."
    )

    class Meta:
        model = Connection
        fields = [
            "id", "audience", "audience_name", "variant", "variant_name", "output", "output_name", "partner",
            "settings",
            "status", "status_reason", "delivery_mode", "interval_minutes", "interval_messages",
            "pending", "sent", "accepted", "rejected", "failed", "unaccepted",
            "last_delivery_at", "last_upload_at", "last_error", "last_error_at", "last_error_resolved_at",
            "last_error_current", "verification_status", "verified_at", "verification_checks", "created_at",
            "updated_at",
        ]  # fmt: skip
        read_only_fields = [
            "status", "status_reason", "last_delivery_at", "last_upload_at", "last_error", "last_error_at",
            "last_error_resolved_at", "verified_at",
        ]  # fmt: skip

    def get_partner(self, conn) -> PartnerRefSerializer:
        partner = conn.output.partner
        return {"slug": partner.slug, "name": partner.name}

    def get_pending(self, conn) -> int:
        return pending_of(conn)

    def get_last_error_current(self, conn) -> bool:
        problem = last_problem.of(conn)
        return bool(problem and problem.current)

    def to_representation(self, conn):
        data = super().to_representation(conn)
        secret = {s.name for s in conn.output.partner.connection_settings if s.secret}
        data["settings"] = {k: v for k, v in conn.settings.items() if k not in secret}
        return data

    def validate(self, data):
        if self.instance is not None:
            for field in ("audience", "variant", "output"):
                if field in data and data[field] != getattr(self.instance, field):
                    raise serializers.ValidationError(
                        {field: [f"A connection's {field} cannot change; create a new connection."]}
                    )
            # Fields left out of a PATCH keep their stored values.
            for field in ("delivery_mode", "interval_minutes", "interval_messages"):
                data.setdefault(field, getattr(self.instance, field))
            data.setdefault("settings", {})
            return data
        try:
            services.clean_variant(data["audience"], data.get("variant"))
            cleaned, *_ = services.clean_connection(
                data["output"],
                data.get("settings", {}),
                data.get("delivery_mode"),
                data.get("interval_minutes"),
                data.get("interval_messages"),
            )
            services.clean_variant_for(data["output"], cleaned, data.get("variant"))
        except DjangoValidationError as exc:
            raise serializers.ValidationError(api_errors(exc)) from None
        twin = duplicate_of(data["audience"], data["output"], cleaned)
        if twin is not None:
            raise serializers.ValidationError(
                {
                    "non_field_errors": [
                        f"{services.describe_connections([twin])} already exists (connection {twin.pk})."
                    ]
                }
            )
        return data

    def create(self, data):
        try:
            return services.connect(
                data["audience"],
                data["output"],
                data.get("settings", {}),
                data.get("delivery_mode"),
                data.get("interval_minutes"),
                data.get("interval_messages"),
                variant=data.get("variant"),
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(api_errors(exc)) from None

    def update(self, conn, data):
        try:
            conn.queued_on_update = services.update_connection(
                conn, data["settings"], data["delivery_mode"], data["interval_minutes"], data["interval_messages"]
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(api_errors(exc)) from None
        return conn


class CreatedConnectionSerializer(ConnectionSerializer):
    queued = serializers.SerializerMethodField(
        help_text="Backfill: messages queued for the audience's current members (on create, and on an update "
        "that changed the destination)."
    )

    class Meta(ConnectionSerializer.Meta):
        fields = [*ConnectionSerializer.Meta.fields, "queued"]

    def get_queued(self, conn) -> int:
        return getattr(conn, "queued_on_connect", getattr(conn, "queued_on_update", 0))


class OperationResultSerializer(ConnectionSerializer):
    detail = serializers.CharField(read_only=True, help_text="What happened, in one or two sentences.")
    # Always present (null but for retry-failed), so the answer is what the schema says.
    requeued = serializers.SerializerMethodField(help_text="retry-failed: messages requeued; null otherwise.")

    class Meta(ConnectionSerializer.Meta):
        fields = [*ConnectionSerializer.Meta.fields, "detail", "requeued"]

    def get_requeued(self, conn) -> int | None:
        return getattr(conn, "requeued", None)


class DisconnectingSerializer(serializers.Serializer):
    """The answer to deleting an audience or output with ?disconnect=remove while connections remain."""

    status = serializers.CharField()
    detail = serializers.CharField()
    connections = serializers.ListField(child=serializers.IntegerField(), help_text="The connections disconnecting.")


class RemovingSerializer(serializers.Serializer):
    status = serializers.CharField()
    detail = serializers.CharField()
    pending = serializers.IntegerField()


class MessageSerializer(serializers.ModelSerializer):
    # A pending message a worker holds (a live lease covers it) is shown in flight (queries.with_state_shown).
    state = serializers.ChoiceField(choices=OutboxMessage.State.choices, source="state_shown", read_only=True)

    class Meta:
        model = OutboxMessage
        fields = [
            "id", "identity_type", "value", "action", "state", "attempts", "next_attempt_at", "last_error",
            "created_at", "updated_at", "finished_at",
        ]  # fmt: skip


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = [
            "id", "started_at", "duration_ms", "messages", "accepted", "rejected", "retried", "http_status",
            "requests", "error", "response_excerpt",
        ]  # fmt: skip
