"""Operations on outputs, shared by the admin, the API and the commands."""

import logging

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from outputs import hooks, netguard, schema
from outputs.crypto import SecretsUnreadable
from outputs.models import Output
from outputs.partners import destinations, redact, registry
from outputs.partners.base import Check
from outputs.partners.http import DestinationAnswer, TransportError

log = logging.getLogger(__name__)


def clean_output_settings(kind: str, data: dict, output: Output | None = None, partial: bool = False):
    """Validated (plain, secret) settings for a partner; raises ValidationError keyed by setting name."""
    try:
        partner = registry.get(kind)
    except KeyError as exc:
        raise ValidationError({"kind": [str(exc.args[0])]}) from None
    existing = {**output.settings, **output.secrets} if output and output.pk else {}
    cleaned = schema.clean_settings(partner.output_settings, data, existing=existing, partial=partial)
    return schema.split_secrets(partner.output_settings, cleaned)


def clean_base_url(url: str, kind: str) -> str:
    """A base URL override as saved: empty (the partner's real host) or a destination we send to.

    A host `kind`'s partner does not declare is refused unless ALLOW_BASE_URL_OVERRIDE is on (an unknown
    kind is left to the kind's own error).
    """
    url = (url or "").strip()
    problem = netguard.refusal(url) if url else ""
    if not problem and isinstance(kind, str) and kind in registry.slugs():
        problem = destinations.base_url_refusal(registry.get(kind), url)
    if problem:
        raise ValidationError({"base_url": [problem]})
    return url


# The start of a check's sentence when the partner could not be asked for want of a free request slot.
NOT_CHECKED = "Not checked this time:"


def partner_checks(output: Output, ask, name: str = "credentials", unreachable=None) -> list[Check]:
    """What `ask(partner, account)` answers, as checks a person can read whatever went wrong on the way.

    Something that answered about the destination itself (a redirect, a web page) is a failing check with its
    hint; no answer at all is "Could not reach …" (failing, or the check `unreachable(detail)` makes of it);
    secrets that cannot be decrypted name the configuration.
    Every sentence loses the output's secrets in any form the partner may have echoed them in.
    """
    partner = output.partner
    try:
        account = output.account()
    except SecretsUnreadable as exc:
        return [Check(name, "failing", str(exc))]
    try:
        with hooks.partner_request(output):
            checks = list(ask(partner, account))
    except hooks.SlotsBusy as exc:
        checks = [Check(name, "warning", f"{NOT_CHECKED} {exc}")]
    except DestinationAnswer as exc:
        checks = [Check(name, "failing", exc.fault.message, exc.fault.hint)]
    except TransportError as exc:
        detail = f"Could not reach {partner.name}: {exc}"
        checks = [unreachable(detail) if unreachable else Check(name, "failing", detail)]
    keys = redact.account_secrets(partner, account)
    return [Check(c.name, c.status, redact.secrets(c.detail, *keys), redact.secrets(c.hint, *keys)) for c in checks]


def check_credentials(output: Output) -> Check:
    """Ask the partner whether the output's credentials work, and remember the answer on the output."""
    (check,) = partner_checks(output, lambda partner, account: [partner.check_credentials(account)])
    if not check.detail.startswith(NOT_CHECKED):  # the partner was not asked: what is known stays
        record_credentials(output, check)
    log.info("Checked credentials of output %s (%s): %s", output.pk, output.kind, check.status)
    return check


def record_credentials(output: Output, check: Check) -> bool:
    """Remember a credentials check on the output, unless the output was saved since it was read.

    A check of the settings as they were must not overwrite the re-check their change queued (`saved`).
    """
    return bool(
        Output.objects.filter(pk=output.pk, updated_at=output.updated_at).update(
            credentials_checked_at=timezone.now(),
            credentials_ok=check.status == "ok",
            credentials_message=_sentence(check)[:500],
        )
    )


def facts(output: Output) -> dict:
    """What a verdict about the output depends on: where it points, its settings and its secrets (decrypted, so
    that the same values encrypted again are no change). Compared in memory, never written anywhere."""
    try:
        secrets = output.secrets if output.pk else {}
    except SecretsUnreadable:
        secrets = None
    return {"base_url": output.base_url, "settings": dict(output.settings), "secrets": secrets}


def saved(output: Output, before: dict | None, user=None, moved: bool = False) -> bool:
    """After any door saved an output: a new one has its credentials checked; a changed one, its verdicts again.

    `before` is `facts(output)` as stored before the save, None for a new output: its credentials are checked
    in a worker at once, so that whether they work is known before anyone connects it. A moved destination is
    checked there (`destination_changed`); other changed settings or secrets have their credentials checked
    again in a worker. Either way the old answer is forgotten at once, and the listeners (connections: its
    verifications) hear of it. Returns whether anything a verdict judged changed.
    """
    if before is None:
        _queue_check(output, user, "outputs.tasks.check_added", CHECKING)
        return False
    if facts(output) == before:
        return False
    if moved:
        destination_changed(output, user)
    else:
        _queue_check(output, user, "outputs.tasks.check_changed", RECHECKING)
    hooks.output_changed(output)
    return True


CHECKING = "Checking the credentials of the new output."
RECHECKING = "Re-checking the credentials after the change."


def _queue_check(output: Output, user, task: str, message: str) -> None:
    """Forget the old answer now; ask the partner in a worker once the save is committed."""
    from django_q.tasks import async_task

    _forget_credentials(output, message)
    user_id = getattr(user, "pk", None)
    transaction.on_commit(lambda: async_task(task, output.pk, user_id, task_name=f"check-{output.pk}"))


def _forget_credentials(output: Output, message: str = RECHECKING) -> None:
    Output.objects.filter(pk=output.pk).update(
        credentials_checked_at=None, credentials_ok=None, credentials_message=message
    )


def destination_changed(output: Output, user=None) -> None:
    """After a destination change is saved: forget the old check and ask the new place, once committed.

    Only here, after the save by someone allowed to make it, do the credentials go to the new place; nothing
    that validates a change contacts it. The check runs in a worker (a partner may take seconds to answer) and
    its result is written on the output and in its history, in the name of whoever made the change.
    """
    from django_q.tasks import async_task

    _forget_credentials(output)
    user_id = getattr(user, "pk", None)
    transaction.on_commit(
        lambda: async_task("outputs.tasks.check_new_destination", output.pk, user_id, task_name=f"check-{output.pk}")
    )


def _sentence(check: Check) -> str:
    return f"{check.detail} {check.hint}".strip()


def describe_check(check: Check) -> str:
    return _sentence(check)
