"""The seed document's story, end to end: an audience of 100, Mailchimp and AppNexus, forwarded by django-q2."""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audiences import variants as split
from audiences.ingest import ProfileInput, ingest_events, upsert_profiles
from audiences.models import Audience, Identity, Profile
from audiences.refresh import refresh_audience
from connections import services
from connections.models import Connection, OutboxMessage
from outputs.models import Output
from outputs.partners import registry
from outputs.services import clean_base_url, saved

AUDIENCE = "Potential Parisians"
POTENTIAL_PARISIANS = {
    "all": [
        {
            "event": "Play Video",
            "where": [
                {"attribute": "category", "op": "eq", "value": "Destination Intro"},
                {"attribute": "destination", "op": "eq", "value": "Paris"},
            ],
            "in_last_days": 3,
        },
        {"user": "status", "op": "eq", "value": "Premium"},
    ]
}
MAILCHIMP_KEY = "0123456789abcdef0123456789abcdef-us6"
MAILCHIMP_LIST = "a1b2c3d4e5"
# The A/B test of the story: two Mailchimp campaigns' lists, and a control group sent nowhere.
SPLIT = [{"name": "A", "percent": 45}, {"name": "B", "percent": 45}, {"name": "control", "percent": 10}]
CAMPAIGN_LISTS = {"A": "c1a0000001", "B": "c2b0000002"}
XANDR = {"username": "demo", "password": "demo-pass", "member_id": 1234, "segment_id": 5678}
# The ten members who stop qualifying in the second act: five have an email, all ten an Android advertising ID.
LEAVERS = [1, 2, 11, 12, 21, 22, 31, 32, 41, 42]


def aaid(n: int) -> str:
    return f"38400000-8cf0-41bd-b23e-{n:012d}"


def seed_people(now) -> None:
    """100 users who match (50 with an email, 80 with an Android advertising ID) and 60 who do not."""
    profiles, events = [], []
    for i in range(160):
        matches = i < 100
        identities = [("customer_id", f"CUST-{i:04d}")]
        if i % 2 == 0:
            identities.append(("email", f"traveller{i:03d}@example.com"))
        if i % 5 != 0:
            identities.append(("android_aaid", aaid(i)))
        status = "Premium" if matches or i % 3 == 0 else "Free"
        profiles.append(ProfileInput(f"demo-{i:03d}", {"status": status, "country": "US"}, identities))
        destination = "Paris" if matches or i % 3 != 0 else "Rome"
        events.append(
            {
                "external_id": f"demo-{i:03d}",
                "name": "Play Video",
                "source_id": f"demo-play-{i}",
                "attributes": {"category": "Destination Intro", "destination": destination},
                "occurred_at": now - dt.timedelta(hours=1 + i % 48),
            }
        )
    upsert_profiles(profiles)
    ingest_events(events)


def reset_demo_data() -> None:
    with transaction.atomic():
        for conn in Connection.objects.filter(audience__name=AUDIENCE):
            conn.delete()
        Output.objects.filter(name__in=["Mailchimp (demo)", "AppNexus (demo)"]).delete()
        Audience.objects.filter(name=AUDIENCE).delete()
        Profile.objects.filter(external_id__startswith="demo-").delete()


def _pointed_at(kind: str, sandbox_url: str) -> tuple[str, dict]:
    """The base URL and settings that point an output of `kind` at the sandbox, as its partner says."""
    fields = dict(registry.get(kind).sandbox_destination(sandbox_url))
    return fields.pop("base_url", ""), fields


def check_sandbox_allowed(sandbox_url: str) -> None:
    """Raise ValidationError (base_url) where this deployment would not send to the sandbox
    (ALLOW_BASE_URL_OVERRIDE, ALLOW_PRIVATE_DESTINATIONS): the demo stops before it changes anything."""
    for kind in ("mailchimp", "xandr"):
        clean_base_url(_pointed_at(kind, sandbox_url)[0], kind)


def create_outputs(sandbox_url: str):
    base_url, extra = _pointed_at("mailchimp", sandbox_url)
    mailchimp = Output(
        kind="mailchimp",
        name="Mailchimp (demo)",
        base_url=base_url,
        settings={"email_type": "html", "double_optin": False, "delete_on_subscription_end": False, **extra},
    )
    mailchimp.set_secrets({"api_key": MAILCHIMP_KEY})
    mailchimp.save()
    base_url, extra = _pointed_at("xandr", sandbox_url)
    xandr = Output(
        kind="xandr",
        name="AppNexus (demo)",
        base_url=base_url,
        settings={
            "username": XANDR["username"],
            "member_id": XANDR["member_id"],
            "file_format": "avro",
            **extra,
        },
    )
    xandr.set_secrets({"password": XANDR["password"]})
    xandr.save()
    for output in (mailchimp, xandr):
        saved(output, None)  # their credentials are checked by the demo's workers, as any new output's are
    return mailchimp, xandr


def leave(indexes) -> None:
    upsert_profiles([ProfileInput(f"demo-{i:03d}", {"status": "Free", "country": "US"}) for i in indexes])


class QCluster:
    """A real `manage.py qcluster` in the background: the demo's forwarding goes through django-q2."""

    def __init__(self):
        self.process = None

    def __enter__(self):
        root = Path(settings.BASE_DIR)
        self.process = subprocess.Popen(
            [sys.executable, str(root / "manage.py"), "qcluster"],
            cwd=root,
            env={**os.environ, "Q_WORKERS": "2", "LOG_LEVEL": "WARNING"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def __exit__(self, *exc):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def wait_until_forwarded(connections, timeout=90) -> bool:
    deadline = time.monotonic() + timeout
    busy = OutboxMessage.objects.filter(connection__in=connections, state__in=OutboxMessage.WAITING)
    while time.monotonic() < deadline:
        if not busy.filter(next_attempt_at__lte=timezone.now() + dt.timedelta(minutes=10)).exists():
            return True
        time.sleep(0.3)
    return False


def request_uploads(connections) -> None:
    """Interval partners upload on their schedule; the demo asks for the upload now, as "Sync now" does."""
    for conn in connections:
        if conn.delivery_mode == Connection.Mode.INTERVAL:
            with transaction.atomic():
                services.sync_now(conn)


def partner_holds(client, conn) -> int:
    """What the sandbox holds in the demo's list or segment, from its control API: the seed's "check your list"."""
    read = {
        "mailchimp": lambda: client.mailchimp_list_state(MAILCHIMP_LIST)["member_count"],
        "xandr": lambda: client.xandr_segment_state(XANDR["segment_id"])["count"],
    }
    return read[conn.output.kind]()


def split_and_connect(audience, mailchimp) -> list[Connection]:
    """Split the audience 45/45/10 and connect variants A and B to a campaign list each; control stays unconnected."""
    split.change_split(audience, SPLIT)
    variants = {v.name: v for v in audience.variants.all()}
    return [
        services.connect(audience, mailchimp, {"list_id": list_id}, variant=variants[name])
        for name, list_id in CAMPAIGN_LISTS.items()
    ]


def variant_lines(audience, client) -> list[str]:
    """One line per variant: its size, where it goes, and what the sandbox list holds (the emails among them)."""
    audience.refresh_from_db()
    sizes = split.sizes(audience)
    held = {name: set(client.mailchimp_list_state(lid)["members"]) for name, lid in CAMPAIGN_LISTS.items()}
    lines = []
    for v in audience.variants.all():
        emails = set(
            Identity.objects.filter(type="email", profile_id__in=split.members(v).values("profile_id")).values_list(
                "value", flat=True
            )
        )
        if v.name in CAMPAIGN_LISTS:
            right = "exactly its members with an email" if held[v.name] == emails else "NOT its members"
            lines.append(
                f"  {v.name} ({v.percent}%): {sizes[v.pk]} members, {len(emails)} with an email → Mailchimp list "
                f"{CAMPAIGN_LISTS[v.name]} holds {len(held[v.name])}: {right}."
            )
        else:
            elsewhere = sum(len(emails & h) for h in held.values())
            lines.append(
                f"  {v.name} ({v.percent}%): {sizes[v.pk]} members, connected nowhere; "
                f"{elsewhere} of them in either campaign list."
            )
    return lines


def refreshed(audience):
    return refresh_audience(audience)
