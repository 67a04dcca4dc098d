from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from audiences.api.fields import StorableDictField
from outputs import schema
from outputs.models import Output
from outputs.partners import registry
from outputs.services import clean_base_url, clean_output_settings


class OutputSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=registry.choices(), help_text="The partner's slug (see /api/v1/partners/).")
    settings = StorableDictField(  # PostgreSQL cannot store NUL in JSON: a 400, not a 500
        required=False,
        help_text="The partner's output settings (see /api/v1/partners/). Secrets may be written here but "
        "are never returned; leave a secret out to keep the stored one.",
    )
    secrets_set = serializers.SerializerMethodField(help_text="Names of the secret settings that hold a value.")

    class Meta:
        model = Output
        fields = [
            "id",
            "kind",
            "name",
            "settings",
            "secrets_set",
            "base_url",
            "credentials_ok",
            "credentials_message",
            "credentials_checked_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["credentials_ok", "credentials_message", "credentials_checked_at"]

    def get_secrets_set(self, output) -> list[str]:
        return output.secret_names_set()

    def to_representation(self, output):
        data = super().to_representation(output)
        data["settings"] = dict(output.settings)  # non-secret values only, by construction
        return data

    def validate_kind(self, kind):
        if self.instance and kind != self.instance.kind:
            raise serializers.ValidationError("The partner of an output cannot change; create a new output.")
        return kind

    def validate_base_url(self, url):
        kind = self.instance.kind if self.instance else self.initial_data.get("kind")
        try:
            return clean_base_url(url, kind)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict["base_url"]) from None

    def validate(self, data):
        kind = data.get("kind") or self.instance.kind
        try:
            plain, secret = clean_output_settings(
                kind, data.get("settings", {}), self.instance, partial=self.partial and "settings" not in data
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"settings": exc.message_dict}) from None
        data["settings"], data["_secrets"] = plain, secret
        return data

    def create(self, data):
        secrets = data.pop("_secrets")
        output = Output(**data)
        output.set_secrets(secrets)
        output.save()
        return output

    def update(self, output, data):
        secrets = data.pop("_secrets")
        for key, value in data.items():
            setattr(output, key, value)
        output.set_secrets(secrets)
        output.save()
        return output


class CheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["ok", "warning", "failing"])
    detail = serializers.CharField()
    hint = serializers.CharField(allow_blank=True)


class SettingSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    help = serializers.CharField()
    type = serializers.CharField()
    required = serializers.BooleanField()
    secret = serializers.BooleanField()
    destination = serializers.BooleanField(
        help_text="Decides where credentials and member data are sent: changing it needs the credentials permission."
    )
    default = serializers.JSONField()
    choices = serializers.ListField(child=serializers.CharField(), allow_null=True)


class PartnerSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    pattern = serializers.ChoiceField(choices=["direct", "indirect"])
    docs_url = serializers.CharField()
    identity_types = serializers.ListField(child=serializers.CharField())
    hosts = serializers.ListField(
        child=serializers.CharField(),
        help_text="Where the partner's real API lives (*.example.com: any name under example.com); a base URL "
        "override elsewhere needs ALLOW_BASE_URL_OVERRIDE. Empty: the output's URL setting is the destination.",
    )
    delivery = serializers.DictField()
    limits = serializers.DictField()
    output_settings = SettingSerializer(many=True)
    connection_settings = SettingSerializer(many=True)

    def to_representation(self, partner):
        return {
            "slug": partner.slug,
            "name": partner.name,
            "pattern": partner.pattern,
            "docs_url": partner.docs_url,
            "identity_types": list(partner.identity_types),
            "hosts": list(partner.hosts),
            "delivery": {
                "mode": partner.delivery.mode,
                "every_minutes": partner.delivery.every_minutes,
                "every_messages": partner.delivery.every_messages,
                "summary": partner.delivery.describe(),
            },
            "limits": {
                "batch_size": partner.batch_size,
                "max_concurrency": partner.max_concurrency,
                "requests_per_second": partner.requests_per_second,
            },
            "output_settings": schema.describe(partner.output_settings),
            "connection_settings": schema.describe(partner.connection_settings),
        }
