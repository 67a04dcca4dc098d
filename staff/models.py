from django.contrib.admin.models import LogEntry


class AuditEntry(LogEntry):
    """The admin's log under the name operators look for; entries are written by the admin and `staff.audit`."""

    class Meta:
        proxy = True
        verbose_name = "audit entry"
        verbose_name_plural = "audit entries"
