import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

# How often last_used_at is written: a busy integration costs one UPDATE a minute, not one per request.
LAST_USED_EVERY_SECONDS = 60


class AuditEntry(LogEntry):
    """The admin's log under the name operators look for; entries are written by the admin and `staff.audit`."""

    class Meta:
        proxy = True
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"


def hash_secret(secret: str) -> str:
    # The secret is 32 random bytes, so a plain SHA-256 cannot be brute-forced; a slow KDF would only slow the API.
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_token(raw: str) -> tuple[str, str] | None:
    """`ar_<prefix>_<secret>` → (prefix, secret); None for anything else."""
    head, _, rest = raw.partition("_")
    prefix, _, secret = rest.partition("_")
    if head != "ar" or not prefix or not secret:
        return None
    return prefix, secret


class ApiToken(models.Model):
    """A key an integration sends as `Authorization: Bearer ar_<prefix>_<secret>`.

    Only the prefix (a public name for the token) and a hash of the secret are stored: the token is shown once,
    when it is created, and cannot be read back from the database.
    """

    class Scope(models.TextChoices):
        READ = "read", "read (GET only)"
        WRITE = "write", "read and write"

    name = models.CharField(max_length=100, help_text="What uses this token, e.g. “CRM nightly sync”.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="api_tokens",
        help_text=(
            "The API acts as this user: the audit history names them, and writing outputs' secrets "
            "needs their credentials permission."
        ),
    )
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scope = models.CharField(max_length=5, choices=Scope.choices, default=Scope.WRITE)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        verbose_name = "API token"
        ordering = ["-created_at", "-id"]

    def __str__(self):
        return f"{self.prefix} ({self.name})" if self.prefix else self.name

    def clean(self):
        if self._state.adding and self.expires_at is not None and self.expires_at <= timezone.now():
            past = "Choose a time in the future: a token that has expired cannot be used."
            raise ValidationError({"expires_at": past})

    @classmethod
    def issue(cls, user, name: str, scope: str = Scope.WRITE, expires_at=None) -> tuple["ApiToken", str]:
        """Create a token and return it with its plaintext, which exists nowhere else: show it once."""
        token = cls(user=user, name=name, scope=scope, expires_at=expires_at)
        return token, token.generate_and_save()

    def generate_and_save(self) -> str:
        """Give this unsaved token a prefix and a secret, save it and return the plaintext."""
        secret = secrets.token_urlsafe(32)
        self.key_hash = hash_secret(secret)
        for attempt in range(5):  # 8 hex characters: a collision is rare, and the unique index catches it
            self.prefix = secrets.token_hex(4)
            try:
                with transaction.atomic():
                    self.save()
                break
            except IntegrityError:
                if attempt == 4:
                    raise
        return f"ar_{self.prefix}_{secret}"

    @classmethod
    def find(cls, raw: str) -> "ApiToken | None":
        """The token `raw` names if its secret matches, revoked and expired ones included (the caller says which)."""
        parsed = parse_token(raw)
        if parsed is None:
            return None
        prefix, secret = parsed
        token = cls.objects.select_related("user").filter(prefix=prefix).first()
        if token is None or not hmac.compare_digest(hash_secret(secret), token.key_hash):
            return None
        return token

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and not self.is_expired

    def touch(self) -> None:
        """Record a use, writing at most once a minute (the filter keeps concurrent requests to one write)."""
        now = timezone.now()
        stale = now - timedelta(seconds=LAST_USED_EVERY_SECONDS)
        if self.last_used_at is not None and self.last_used_at > stale:
            return
        fresh = models.Q(last_used_at__isnull=True) | models.Q(last_used_at__lte=stale)
        type(self).objects.filter(fresh, pk=self.pk).update(last_used_at=now)
        self.last_used_at = now

    def revoke(self) -> bool:
        """Revoke now; False if it already was."""
        if self.revoked_at is not None:
            return False
        self.revoked_at = timezone.now()
        type(self).objects.filter(pk=self.pk, revoked_at__isnull=True).update(revoked_at=self.revoked_at)
        return True
