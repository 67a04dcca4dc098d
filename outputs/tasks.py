"""Background work on outputs: tasks take IDs and call the same service functions as the admin and the API."""

from django.contrib.auth import get_user_model

from outputs import services
from outputs.models import Output
from staff import audit


def check_new_destination(output_id: int, user_id: int | None = None) -> str | None:
    """Check an output's credentials at the destination it was just moved to; the history says how it went."""
    output = Output.objects.filter(pk=output_id).first()
    if output is None:
        return None
    check = services.check_credentials(output)
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    message = f"Checked credentials at the new destination ({check.status}): {services.describe_check(check)}"
    audit.record(user, output, message)
    return check.status


def check_changed(output_id: int, user_id: int | None = None) -> str | None:
    """Check an output's credentials again after its settings or secrets changed; the history says how it went."""
    output = Output.objects.filter(pk=output_id).first()
    if output is None:
        return None
    check = services.check_credentials(output)
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    audit.record(
        user, output, f"Checked credentials after the change ({check.status}): {services.describe_check(check)}"
    )
    return check.status


def check_added(output_id: int, user_id: int | None = None) -> str | None:
    """Check a new output's credentials, so that whether they work is known before anyone connects it."""
    output = Output.objects.filter(pk=output_id).first()
    if output is None:
        return None
    check = services.check_credentials(output)
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    audit.record(user, output, f"Checked credentials when added ({check.status}): {services.describe_check(check)}")
    return check.status
