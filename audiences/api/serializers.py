from datetime import datetime

from django.conf import settings
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

from audiences import criteria as criteria_lang
from audiences.api.fields import AttributesField, json_problem, refuse_control_characters
from audiences.criteria import text_problem
from audiences.models import Audience, Event, Membership, Profile
from audiences.text import has_control_characters
from identities import IdentityType, InvalidIdentity, normalize


class IdentitySerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=IdentityType.choices)
    value = serializers.CharField(trim_whitespace=False, max_length=1000)

    def validate(self, data):
        try:
            data["value"] = normalize(data["type"], data["value"])
        except InvalidIdentity as exc:
            raise serializers.ValidationError({"value": [str(exc)]}) from None
        return data

    def to_representation(self, instance):
        return {"type": instance.type, "value": instance.value}


def _refuse_big_batch(data, key):
    """Count the records before validating any of them: a batch too big is refused without the work."""
    items = data.get(key) if isinstance(data, dict) else None
    if isinstance(items, list) and len(items) > settings.BULK_MAX_RECORDS:
        raise serializers.ValidationError(
            {key: [f"at most {settings.BULK_MAX_RECORDS} {key} per request; this one has {len(items)}"]}
        )


def _check_duplicates(items, key):
    seen = {}
    for index, item in enumerate(items):
        value = item.get(key)
        if value is not None and value in seen:
            raise serializers.ValidationError(
                {index: {key: [f"'{value}' appears twice in this batch (first at index {seen[value]})"]}}
            )
        seen[value] = index


class ProfileInputSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=255, validators=[refuse_control_characters])
    attributes = AttributesField(required=False)
    identities = IdentitySerializer(many=True, required=False)

    def validate_identities(self, identities):
        return list(dict.fromkeys((i["type"], i["value"]) for i in identities))


class ProfileBatchSerializer(serializers.Serializer):
    profiles = ProfileInputSerializer(many=True, allow_empty=False)

    def to_internal_value(self, data):
        _refuse_big_batch(data, "profiles")
        return super().to_internal_value(data)

    def validate_profiles(self, profiles):
        _check_duplicates(profiles, "external_id")
        owner = {}
        for index, profile in enumerate(profiles):
            for pair in profile.get("identities") or ():
                if pair in owner and owner[pair] != index:
                    raise serializers.ValidationError(
                        {index: {"identities": [f"{pair[0]} '{pair[1]}' is also given to profiles[{owner[pair]}]"]}}
                    )
                owner[pair] = index
        return profiles


class ErasureSerializer(serializers.Serializer):
    external_ids = serializers.ListField(
        child=serializers.CharField(max_length=255, validators=[refuse_control_characters]), allow_empty=False
    )

    def to_internal_value(self, data):
        _refuse_big_batch(data, "external_ids")
        return super().to_internal_value(data)


class ErasureResultSerializer(serializers.Serializer):
    erased = serializers.IntegerField(help_text="Profiles erased.")
    memberships_removed = serializers.IntegerField(help_text="Audiences left, summed over the erased profiles.")
    unknown = serializers.ListField(
        child=serializers.CharField(), help_text="External IDs no profile has (never known, or already erased)."
    )


class EventInputSerializer(serializers.Serializer):
    external_id = serializers.CharField(max_length=255, validators=[refuse_control_characters])
    name = serializers.CharField(max_length=255, validators=[refuse_control_characters])
    attributes = AttributesField(required=False)
    occurred_at = serializers.DateTimeField()
    source_id = serializers.CharField(
        max_length=255,
        required=False,
        validators=[refuse_control_characters],
        help_text="Your event ID; a repeat is ignored.",
    )


def _plain_text(value, max_length=255):
    """`value` as a CharField (trimmed, not blank, storable, no control characters) accepts it, or None."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > max_length or has_control_characters(value) or text_problem(value):
        return None
    return value


SCALARS = (str, int, float, bool, type(None))


def _flat_and_storable(attributes: dict) -> bool:
    """True when `attributes` is one level of text keys and plain values whose text the database can store:
    what json_problem accepts, checked with one scan of the joined text instead of a call per key and value.
    False means only "look closer" (json_problem then says whether and where something is wrong)."""
    texts = []
    for key, value in attributes.items():
        if type(key) is not str or not isinstance(value, SCALARS):
            return False
        texts.append(key)
        if type(value) is str:
            texts.append(value)
    return text_problem("".join(texts)) is None


def _occurred_at_parser(zone):
    """A function reading `occurred_at` as DateTimeField(default_timezone=zone) does, faster for ISO 8601 text
    with an offset (the common case): DRF's ISO parsing is `datetime.fromisoformat` first, then a move to `zone`.
    Anything else (naive times, other formats, no time zone in use) goes through the field itself."""
    field = serializers.DateTimeField(default_timezone=zone).to_internal_value
    formats = getattr(api_settings, "DATETIME_INPUT_FORMATS", None) or ()
    if zone is None or not formats or str(formats[0]).lower() != ISO_8601:
        return field

    def parse(value):
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                return field(value)
            if parsed.tzinfo is not None:
                try:
                    return parsed.astimezone(zone)
                except OverflowError:
                    pass
        return field(value)

    return parse


def _plain_events(data) -> list[dict] | None:
    """The batch's events as EventInputSerializer would validate them, when every one is well-formed, else None.

    One pass of plain checks over the batch instead of a field object per value: a batch of thousands is
    validated in a fraction of the time. Anything it does not accept goes through the serializer, which
    says what is wrong and where.
    """
    items = data.get("events") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        return None
    # The current time zone read once for the batch, not once per event; the field is otherwise the serializer's.
    zone = serializers.DateTimeField().default_timezone()
    occurred_at = _occurred_at_parser(zone)
    depth = settings.ATTRIBUTES_MAX_DEPTH
    events = []
    for item in items:
        if not isinstance(item, dict):
            return None
        event = {"external_id": _plain_text(item.get("external_id")), "name": _plain_text(item.get("name"))}
        if event["external_id"] is None or event["name"] is None:
            return None
        if "attributes" in item:
            attributes = item["attributes"]
            if not isinstance(attributes, dict):
                return None
            if not (depth >= 1 and _flat_and_storable(attributes)) and json_problem(attributes, max_depth=depth):
                return None
            event["attributes"] = attributes
        try:
            event["occurred_at"] = occurred_at(item.get("occurred_at"))
        except serializers.ValidationError:
            return None
        if "source_id" in item:
            event["source_id"] = _plain_text(item["source_id"])
            if event["source_id"] is None:
                return None
        events.append(event)
    return events


class EventBatchSerializer(serializers.Serializer):
    events = EventInputSerializer(many=True, allow_empty=False)

    def to_internal_value(self, data):
        _refuse_big_batch(data, "events")
        events = _plain_events(data)
        if events is not None:
            try:
                return {"events": self.validate_events(events)}
            except serializers.ValidationError:
                pass  # the serializer reports it, under its field
        return super().to_internal_value(data)

    def validate_events(self, events):
        _check_duplicates(events, "source_id")
        return events


class IngestResultSerializer(serializers.Serializer):
    created = serializers.IntegerField(help_text="Profiles created.")
    updated = serializers.IntegerField(help_text="Profiles whose attributes changed.")
    unchanged = serializers.IntegerField(help_text="Profiles of the batch left as they were.")
    identities_added = serializers.IntegerField()
    identities_removed = serializers.IntegerField()
    memberships_added = serializers.IntegerField(help_text="Audiences joined, summed over the profiles.")
    memberships_removed = serializers.IntegerField(help_text="Audiences left, summed over the profiles.")


class EventsResultSerializer(serializers.Serializer):
    events_created = serializers.IntegerField(help_text="Events stored.")
    duplicates = serializers.IntegerField(
        help_text="Events whose source_id was already stored: a re-send, ignored (not stored again)."
    )
    profiles_created = serializers.IntegerField(help_text="Bare profiles created for external IDs not seen before.")
    memberships_added = serializers.IntegerField(help_text="Audiences joined, summed over the profiles.")
    memberships_removed = serializers.IntegerField(help_text="Audiences left, summed over the profiles.")


class EventSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(source="profile.external_id", read_only=True)

    class Meta:
        model = Event
        fields = ["id", "external_id", "name", "attributes", "occurred_at", "source_id"]


class MembershipOfProfileSerializer(serializers.ModelSerializer):
    audience = serializers.CharField(source="audience.name")

    class Meta:
        model = Membership
        fields = ["audience", "since"]


class ProfileSerializer(serializers.ModelSerializer):
    identities = IdentitySerializer(many=True, read_only=True)

    class Meta:
        model = Profile
        fields = ["external_id", "attributes", "identities", "created_at", "updated_at"]


class ProfileDetailSerializer(ProfileSerializer):
    memberships = MembershipOfProfileSerializer(many=True, read_only=True)
    recent_events = serializers.SerializerMethodField()

    class Meta(ProfileSerializer.Meta):
        fields = ProfileSerializer.Meta.fields + ["memberships", "recent_events"]

    def get_recent_events(self, profile) -> list[dict]:
        events = profile.events.order_by("-occurred_at")[:20]
        return EventSerializer(events, many=True).data


class CriteriaField(serializers.JSONField):
    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        try:
            criteria_lang.validate(data)
        except criteria_lang.CriteriaError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return data


class AudienceSerializer(serializers.ModelSerializer):
    criteria = CriteriaField(required=False, allow_null=True)
    criteria_summary = serializers.SerializerMethodField()

    class Meta:
        model = Audience
        fields = [
            "id",
            "name",
            "description",
            "kind",
            "criteria",
            "criteria_summary",
            "size",
            "last_refreshed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["size", "last_refreshed_at", "created_at", "updated_at"]

    def get_criteria_summary(self, audience) -> str:
        return criteria_lang.describe(audience.criteria) if audience.criteria else ""

    def validate(self, data):
        kind = data.get("kind", getattr(self.instance, "kind", Audience.Kind.RULES))
        has_criteria = data.get("criteria", getattr(self.instance, "criteria", None)) is not None
        if kind == Audience.Kind.RULES and not has_criteria:
            raise serializers.ValidationError({"criteria": ["a rule-based audience needs criteria"]})
        if kind == Audience.Kind.STATIC and data.get("criteria") is not None:
            raise serializers.ValidationError({"criteria": ["a static audience has no criteria; edit its members"]})
        return data


class PreviewSerializer(serializers.Serializer):
    criteria = CriteriaField()


class PreviewResultSerializer(serializers.Serializer):
    size = serializers.IntegerField()
    identity_types = serializers.DictField(child=serializers.IntegerField())


class MemberSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(source="profile.external_id")
    identities = IdentitySerializer(source="profile.identities", many=True)

    class Meta:
        model = Membership
        fields = ["external_id", "since", "identities"]


class MemberChangeSerializer(serializers.Serializer):
    external_ids = serializers.ListField(child=serializers.CharField(max_length=255), required=False, default=list)
    identities = IdentitySerializer(many=True, required=False, default=list)

    def validate(self, data):
        if not data["external_ids"] and not data["identities"]:
            raise serializers.ValidationError({"external_ids": ["give external_ids or identities (or both)"]})
        if len(data["external_ids"]) + len(data["identities"]) > settings.BULK_MAX_RECORDS:
            raise serializers.ValidationError({"external_ids": [f"at most {settings.BULK_MAX_RECORDS} per request"]})
        data["identities"] = [(i["type"], i["value"]) for i in data["identities"]]
        return data


class RefreshResultSerializer(serializers.Serializer):
    audience = serializers.CharField()
    added = serializers.IntegerField()
    removed = serializers.IntegerField()
    size = serializers.IntegerField()
    seconds = serializers.FloatField()


class VariantSerializer(serializers.Serializer):
    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(max_length=100)
    percent = serializers.IntegerField(help_text="Whole-number share of the members, 1 to 99.")
    first_bucket = serializers.IntegerField(read_only=True, help_text="The variant's bucket range (0–9,999).")
    last_bucket = serializers.IntegerField(read_only=True)
    size = serializers.SerializerMethodField(help_text="Members in the variant now.")

    def get_size(self, variant) -> int:
        return self.context.get("sizes", {}).get(variant.pk, 0)


class SplitSerializer(serializers.Serializer):
    """An audience's variants: 2 to 5, whole-number percentages adding up to 100; an empty list removes them."""

    variants = VariantSerializer(many=True, allow_empty=True)


class SplitStateSerializer(serializers.Serializer):
    split_version = serializers.IntegerField(
        help_text="Part of every member's hash; goes up when the set of variants changes (a new test)."
    )
    variants = VariantSerializer(many=True)


class SplitResultSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["changed", "unchanged", "disconnecting"],
        help_text="disconnecting: variants that go away still had connections, which now remove their members "
        "from the partners first; nothing else changed (put the split again once they are gone).",
    )
    detail = serializers.CharField(help_text="What happened, in one or two sentences.")
    members = serializers.IntegerField(help_text="Members of the audience.")
    moved = serializers.IntegerField(help_text="Members now in another variant than before.")
    queued = serializers.IntegerField(help_text="Messages queued to move them at the connected partners.")
    split_version = serializers.IntegerField()
    variants = VariantSerializer(many=True)
