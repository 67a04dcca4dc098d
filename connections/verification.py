"""Does a connection work, and if not, what should a person do? Checks, a status, and hints.

The partner module checks what needs the partner (credentials, destination,
account preconditions); the checks here read our own state (coverage, delivery
health) and compare the partner's count with what was forwarded.
"""

import datetime as dt
import logging
from dataclasses import asdict

from django.db.models import Count, Max, Min
from django.utils import timezone

from connections import funnel as funnel_mod
from connections import refresh, shared_lists
from connections.hints import hint
from connections.models import Connection, OutboxMessage
from outputs import services as outputs_services
from outputs.partners import redact
from outputs.partners.base import Check
from staff import dates

log = logging.getLogger(__name__)

RANK = {"ok": 0, "warning": 1, "failing": 2}
REALTIME_GRACE = dt.timedelta(minutes=15)
UNREACHABLE = "partner"  # the check of a partner that did not answer: it says nothing about the credentials


def overall(checks) -> str:
    return max((c.status for c in checks), key=RANK.__getitem__, default="ok")


def partner_checks(conn: Connection) -> list[Check]:
    name = conn.partner.name
    return outputs_services.partner_checks(
        conn.output,
        lambda partner, account: partner.verify(account, conn.settings),
        name="partner",
        # No answer at all: the same warning whichever partner it is (a partner that answers with an error is
        # the partner module's to explain).
        unreachable=lambda detail: Check(UNREACHABLE, "warning", detail, hint("unreachable", partner=name)),
    )


def _messages(n: int) -> str:
    return f"{n:,} message{'' if n == 1 else 's'}"


def coverage_check(conn: Connection, f: funnel_mod.Funnel) -> Check:
    partner = conn.partner
    size, reachable = f.steps[0].count, f.steps[1].count
    if size == 0:
        return Check("identity coverage", "warning", "The audience has no members yet.", hint("no_members"))
    if reachable == 0:
        types = funnel_mod.types_phrase(partner.accepted_types(conn.settings))
        return Check(
            "identity coverage",
            "warning",
            f"None of the {size:,} members has an identity {partner.name} accepts.",
            hint("no_accepted_identities", partner=partner.name, types=types),
        )
    return Check(
        "identity coverage", "ok", f"{reachable:,} of {size:,} members have an identity {partner.name} accepts."
    )


def cap_check(conn: Connection) -> Check | None:
    """Members of this audience past what the partner keeps of the list they share (a Braze array or string).

    One query: the connections sharing the list are those of the same output whose settings match what the
    partner names; their audiences' memberships are measured per member of this audience."""
    partner = conn.partner
    shared = partner.shared_list(conn.output.settings, conn.settings)
    if shared is None:
        return None
    return partner.cap_check(shared_lists.over_cap(conn, shared), shared, conn.settings)


def delivery_checks(conn: Connection, now) -> list[Check]:
    checks = []
    name = conn.partner.name
    if conn.status == Connection.Status.PAUSED:
        checks.append(Check("status", "warning", "The connection is paused.", hint("paused", id=conn.pk)))
    elif conn.status == Connection.Status.FAULTED:
        checks.append(Check("status", "failing", f"Forwarding stopped: {conn.status_reason}", hint("faulted")))
    else:
        checks.append(Check("status", "ok", f"The connection is {conn.get_status_display().lower()}."))
    messages = OutboxMessage.objects.filter(connection=conn)
    day_ago = now - dt.timedelta(hours=24)
    rejected = messages.filter(state=OutboxMessage.State.REJECTED, finished_at__gte=day_ago)
    rejected_count = rejected.count()
    if rejected_count:
        # The message's reason may name its member; the check is shown to staff who may not see identities.
        reason, first, last = (
            rejected.values("last_error")
            .annotate(n=Count("pk"), first=Min("value"), last=Max("value"))
            .order_by("-n")
            .values_list("last_error", "first", "last")[0]
        )
        reason = redact.identities(reason, {first, last})
        checks.append(
            Check(
                "rejections",
                "warning",
                f"{_messages(rejected_count)} refused by {name} in the last 24 hours.",
                hint("rejections", partner=name, reason=reason),
            )
        )
    failed = messages.filter(state=OutboxMessage.State.FAILED).count()
    if failed:
        checks.append(
            Check(
                "failures",
                "warning",
                f"{_messages(failed)} could not be delivered within the retry window.",
                hint("failures", id=conn.pk),
            )
        )
    if conn.status == Connection.Status.ACTIVE:
        # Realtime messages go within seconds; an interval upload may wait for its period. Both get a grace
        # period for retries with backoff before they count as late.
        allowed = (
            REALTIME_GRACE
            if conn.delivery_mode == Connection.Mode.REALTIME
            else dt.timedelta(minutes=conn.interval_minutes or 15) + REALTIME_GRACE
        )
        late = messages.filter(state__in=OutboxMessage.WAITING, created_at__lt=now - allowed)
        found = late.aggregate(oldest=Min("created_at"), count=Count("pk"))
        if found["count"]:
            minutes = int(allowed.total_seconds() // 60)
            checks.append(
                Check(
                    "waiting",
                    "warning",
                    f"{_messages(found['count'])} waiting longer than {minutes} minutes.",
                    hint("waiting", since=dates.when(found["oldest"])),
                )
            )
    if not any(c.name in ("rejections", "failures", "waiting") for c in checks):
        checks.append(Check("delivery", "ok", "No rejections in the last 24 hours, no failures, nothing late."))
    return checks


def expiry_check(conn: Connection, now) -> Check | None:
    """Where the partner drops members it was not sent again, members last added before that are gone there."""
    partner = conn.partner
    days = partner.membership_expires_days
    if not days:
        return None
    expired = refresh.expired_count(conn, days, now)
    if not expired:
        return Check("expiry", "ok", f"Every member was added to {partner.name} within the last {days} days.")
    refresh_days = partner.refresh_days(conn.settings) or days
    return Check(
        "expiry",
        "failing",
        f"{expired:,} member{'' if expired == 1 else 's'} of the audience {'was' if expired == 1 else 'were'} "
        f"last added to {partner.name} more than {days} days ago, so {partner.name} has dropped "
        f"{'it' if expired == 1 else 'them'}.",
        hint("expired", partner=partner.name, days=days, refresh=refresh_days),
    )


def count_check(conn: Connection, f: funnel_mod.Funnel) -> Check | None:
    partner_count, accepted = f.steps[5].count, f.steps[4].count
    partner = conn.partner
    name = partner.name
    if partner_count is None:
        return None
    if partner.count_is_estimate:
        # An estimate of matched people that lags the uploads by up to a day: shown, never compared.
        detail = f"{name} estimates at least {partner_count:,} people; {accepted:,} identities were accepted."
        return Check("partner count", "ok", detail)
    if accepted and partner_count == 0:
        return Check(
            "partner count",
            "warning",
            f"{name} reports no members; {accepted:,} were forwarded and accepted.",
            hint("partner_count_zero", partner=name, forwarded=f"{accepted:,}"),
        )
    if partner_count < accepted:
        return Check(
            "partner count",
            "warning",
            f"{name} reports {partner_count:,}; {accepted:,} were forwarded and accepted.",
            hint("partner_count_lower", partner=name, count=f"{partner_count:,}", forwarded=f"{accepted:,}"),
        )
    if partner_count > accepted:
        # More at the partner than the audience holds: members added there by other means, or a change that
        # landed after a newer one (a request held past its timeout). Either way the destination is not the
        # audience, and nobody would notice from a count that passes.
        return Check(
            "partner count",
            "warning",
            f"{name} reports {partner_count:,}; {accepted:,} {'was' if accepted == 1 else 'were'} forwarded and "
            "accepted.",
            hint("partner_count_higher", partner=name, count=f"{partner_count:,}", forwarded=f"{accepted:,}"),
        )
    if partner_count == 0:
        return Check("partner count", "ok", f"{name} reports no members, and none were forwarded yet.")
    # About the count only: whether the connection works is the verdict of all the checks, not of this one.
    return Check("partner count", "ok", f"{name} reports {partner_count:,}, as many as were forwarded and accepted.")


def verify(conn: Connection) -> tuple[str, list[Check]]:
    """Run every check, store the result on the connection, and return it.

    The result is stored only if nothing it judged changed while the checks ran (`connections.reverify`): the
    verification queued by that change stores the newer verdict. Where the partner answered, its first check
    (the credentials, by the partner contract) is also the output's credentials verdict.
    """
    now = timezone.now()
    facts_at = Connection.objects.filter(pk=conn.pk).values_list("facts_changed_at", flat=True).first()
    checks = partner_checks(conn)
    if checks and checks[0].name != UNREACHABLE:
        outputs_services.record_credentials(conn.output, checks[0])
    partner_ok = all(c.status == "ok" for c in checks)
    f = funnel_mod.compute(conn, partner_count=... if partner_ok else None)
    checks.append(coverage_check(conn, f))
    cap = cap_check(conn)
    if cap is not None:
        checks.append(cap)
    checks.extend(delivery_checks(conn, now))
    expiry = expiry_check(conn, now)
    if expiry is not None:
        checks.append(expiry)
    count = count_check(conn, f)
    if count is not None:
        checks.append(count)
    status = overall(checks)
    same_facts = {"facts_changed_at__isnull": True} if facts_at is None else {"facts_changed_at": facts_at}
    stored = Connection.objects.filter(pk=conn.pk, **same_facts).update(
        verification_status=status, verified_at=now, verification_checks=[asdict(c) for c in checks]
    )
    conn.verification_status, conn.verified_at, conn.verification_checks = status, now, [asdict(c) for c in checks]
    if stored:
        log.info("Verified connection %s: %s", conn.pk, status)
    else:
        log.info("Verified connection %s: %s, not stored: it changed meanwhile and is verified again", conn.pk, status)
    return status, checks
