"""Data whose identity values are easy to spot in any page, and the staff users who look at it.

The world is made the way production makes it: profiles through the bulk API's service, a connection that
queues its backfill, a real delivery to the partner sandbox that refuses one member with a reason naming
it, a verification, and an audit entry written before identities were kept out of the history.
"""

import hashlib
import importlib

from django.apps import apps
from django.contrib import admin
from django.contrib.admin.models import CHANGE
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection as db

from audiences.ingest import ProfileInput, upsert_profiles
from audiences.models import Audience, Profile
from audiences.static import change_static_members
from connections import services
from connections.drain import drain
from staff.models import ApiToken, AuditEntry
from tests.audiences.factories import EventFactory
from tests.connections.factories import StaticAudienceFactory, sandbox_output
from tests.outputs.factories import LIST_ID

EMAIL = "pii-marker-ada@example.com"
REFUSED_EMAIL = "pii-marker-fake@example.com"  # the sandbox refuses it, with a reason that names it
PHONE = "+14155550199"
DEVICE_ID = "6d92078a-8246-4ba4-ae5b-76104861e7dc"
CUSTOMER_ID = "pii-marker-cust-7731"
EXTERNAL_ID = "walk-profile-1"  # not an identity: shown to everyone who may view profiles

VALUES = [EMAIL, REFUSED_EMAIL, PHONE, DEVICE_ID, CUSTOMER_ID]
# What the partners are sent for an email address: its MD5 (Mailchimp's member path) and its SHA-256.
HASHES = [hashlib.md5(e.encode()).hexdigest() for e in (EMAIL, REFUSED_EMAIL)] + [
    hashlib.sha256(e.encode()).hexdigest() for e in (EMAIL, REFUSED_EMAIL)
]
MARKERS = VALUES + HASHES


def _migrate(name: str, function: str) -> None:
    """Run a data migration's function again (a transactional test's flush empties what they made)."""
    getattr(importlib.import_module(f"staff.migrations.{name}"), function)(
        apps, type("Editor", (), {"connection": db})()
    )


def seed(sandbox) -> dict:
    _migrate("0001_groups", "create_groups")
    _migrate("0005_operators_see_identities", "grant")
    upsert_profiles(
        [
            ProfileInput(
                EXTERNAL_ID,
                {"plan": "gold"},
                [("email", EMAIL), ("mobile_number", PHONE), ("android_aaid", DEVICE_ID), ("customer_id", CUSTOMER_ID)],
            ),
            ProfileInput("walk-profile-2", {}, [("email", REFUSED_EMAIL)]),
        ]
    )
    profile = Profile.objects.get(external_id=EXTERNAL_ID)
    EventFactory(profile=profile, name="purchase")
    audience = StaticAudienceFactory(name="Walkers")
    change_static_members(audience, list(Profile.objects.values_list("pk", flat=True)), add=True)
    audience = Audience.objects.get(pk=audience.pk)
    sandbox.mailchimp_rejection(REFUSED_EMAIL, "fake")
    conn = services.connect(audience, sandbox_output(sandbox), {"list_id": LIST_ID})
    drain(conn.pk)
    services.verify(conn)
    # The history as Django wrote it before an identity's name left out its value, then the migration.
    AuditEntry.objects.create(
        user=_user("olderadmin", is_superuser=True),
        content_type=ContentType.objects.get_for_model(Profile),
        object_id=str(profile.pk),
        object_repr=EXTERNAL_ID,
        action_flag=CHANGE,
        change_message=f'[{{"added": {{"name": "identity", "object": "email:{EMAIL}"}}}}]',
    )
    _migrate("0006_history_forgets_identity_values", "forget_identity_values")
    ApiToken.issue(_user("tokenowner"), "CRM nightly sync")
    return {"profile": profile, "audience": audience, "connection": conn, "output": conn.output}


def _user(username, **flags):
    from django.contrib.auth import get_user_model

    # No password: the tests sign in with force_login, and hashing one per user would take most of their time.
    return get_user_model().objects.create_user(username, password=None, is_staff=True, **flags)


def view_permissions() -> list[Permission]:
    """The view permission of every model the admin shows (a new admin page brings its own user), not the
    identities permission itself."""
    models = list(admin.site._registry)
    types = ContentType.objects.get_for_models(*models, for_concrete_models=False).values()
    permissions = Permission.objects.filter(content_type__in=types, codename__startswith="view_")
    return list(permissions.exclude(codename="view_identities").order_by("codename"))


def staff_without_identities() -> list:
    """A staff user with no permission, one with exactly each view permission, and a Viewer."""
    users = [_user("nobody")]
    for permission in view_permissions():
        user = _user(f"only-{permission.codename}")
        user.user_permissions.add(permission)
        users.append(user)
    viewer = _user("viewer")
    viewer.groups.add(Group.objects.get(name="Viewers"))
    users.append(viewer)
    return users


def operator():
    user = _user("operator")
    user.groups.add(Group.objects.get(name="Operators"))
    return user


def leaks(body: str) -> list[str]:
    return [marker for marker in MARKERS if marker in body]


def body_of(response) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return response.content.decode(errors="replace")
