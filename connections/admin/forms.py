"""The connection's add and change form: the partner's connection settings become form fields per output."""

from django import forms
from django.core.exceptions import ValidationError

from connections import services
from connections.models import Connection
from connections.queries import duplicate_of
from outputs import schema
from outputs.models import Output

PREFIX = "setting__"


class ConnectionFormBase(forms.ModelForm):
    """The partner's connection settings are added per output by `form_for`; `services` validates them."""

    output: Output

    class Meta:
        model = Connection
        fields = ["audience", "variant", "delivery_mode", "interval_minutes", "interval_messages"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance.pk:
            self.instance.output = self.output
        if "audience" in self.fields:
            self.fields["audience"].help_text = (
                f"Its current members are queued for {self.output.partner.name} when you save (the backfill); "
                f"later membership changes follow."
            )
        if "variant" in self.fields:
            self.fields["variant"].queryset = self.fields["variant"].queryset.select_related("audience")
            self.fields["variant"].help_text = (
                "Optional: forward one A/B variant of the audience (its members whose bucket falls in the variant's "
                "share) instead of all of it. Empty: the whole audience."
            )
        if self.instance.pk:
            for name, value in self.instance.settings.items():
                if PREFIX + name in self.fields:
                    self.initial[PREFIX + name] = value
        default = self.output.partner.delivery
        if "delivery_mode" in self.fields:
            self.fields["delivery_mode"] = forms.ChoiceField(
                label="Delivery mode",
                required=False,
                choices=[("", f"{self.output.partner.name}'s default: {default.describe()}"), *Connection.Mode.choices],
                help_text="Interval: messages are queued and uploaded every N minutes or as soon as N are waiting.",
            )
        for name, limit, unit in (("interval_minutes", default.every_minutes, "minutes"),
                                  ("interval_messages", default.every_messages, "messages")):  # fmt: skip
            if name in self.fields and limit:
                partner = self.output.partner.name
                self.fields[name].help_text = f"Interval mode only. At most {limit:,} {unit} ({partner})."

    def settings_values(self) -> dict:
        return {k[len(PREFIX) :]: v for k, v in self.cleaned_data.items() if k.startswith(PREFIX)}

    def delivery_values(self) -> tuple:
        data = self.cleaned_data
        return data.get("delivery_mode") or None, data.get("interval_minutes"), data.get("interval_messages")

    def clean(self):
        data = super().clean()
        existing = Connection.objects.get(pk=self.instance.pk) if self.instance.pk else None
        try:
            cleaned, *_ = services.clean_connection(self.output, self.settings_values(), *self.delivery_values(),
                                                    existing=existing)  # fmt: skip
        except ValidationError as exc:
            for key, problems in exc.message_dict.items():
                field = PREFIX + key.removeprefix("settings.") if key.startswith("settings.") else key
                self.add_error(field if field in self.fields else None, problems)
            return data
        if existing is None and data.get("audience"):
            try:
                services.clean_variant(data["audience"], data.get("variant"))
                services.clean_variant_for(self.output, cleaned, data.get("variant"))
            except ValidationError as exc:
                self.add_error("variant", exc.message_dict["variant"])
            twin = duplicate_of(data["audience"], self.output, cleaned)
            if twin is not None:
                self.add_error(None, f"{services.label(twin)} already exists with these settings.")
        return data


def form_for(output: Output):
    partner = output.partner
    fields = {}
    for setting in partner.connection_settings:
        field = schema.form_field(setting)
        field.label = f"{setting.label}{' *' if setting.required else ''}"
        fields[PREFIX + setting.name] = field
    name = f"{partner.name.replace(' ', '')}ConnectionForm"
    return type(name, (ConnectionFormBase,), {**fields, "output": output})
