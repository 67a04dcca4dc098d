from django.db import models

from outputs import crypto
from outputs.partners import registry


class Output(models.Model):
    """A configured partner account: which partner, its settings, and its credentials (encrypted)."""

    # Validated against the partner registry, not declared as choices: a new partner needs no migration.
    kind = models.CharField("partner", max_length=30, validators=[registry.validate_kind])
    name = models.CharField(max_length=255, unique=True)
    settings = models.JSONField(default=dict, blank=True, help_text="Non-secret settings, per the partner's schema.")
    # A Fernet token of a JSON object {setting name: value}; never plaintext.
    secrets_encrypted = models.TextField(blank=True, editable=False)
    base_url = models.URLField(
        "base URL override",
        blank=True,
        help_text="Empty in production (the partner's real host). Set to the partner sandbox for demos and tests.",
    )
    credentials_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    credentials_ok = models.BooleanField(null=True, editable=False)
    credentials_message = models.CharField(max_length=500, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        # Staff without it open an output with its secrets read-only (outputs.permissions).
        permissions = [("change_output_credentials", "Can change output credentials")]

    def __str__(self):
        return self.name

    @property
    def partner(self):
        return registry.get(self.kind)

    @property
    def secrets(self) -> dict:
        return crypto.decrypt(self.secrets_encrypted)

    def set_secrets(self, values: dict) -> None:
        self.secrets_encrypted = crypto.encrypt({k: v for k, v in values.items() if v not in (None, "")})

    def secret_names_set(self) -> list[str]:
        return sorted(self.secrets)

    def account(self):
        """The output as a partner module sees it: plain settings with secrets decrypted."""
        from outputs.partners.base import Account

        return Account(settings={**self.settings, **self.secrets}, base_url=self.base_url)
