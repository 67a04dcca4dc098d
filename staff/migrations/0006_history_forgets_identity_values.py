"""The history named an identity by its value ("Added identity “email:ada@example.com”"), read by staff
without the identities permission and kept after the profile is erased: old entries name its type instead."""

import json

from django.db import migrations

from identities import IdentityType

LABELS = dict(IdentityType.choices)


def forget_identity_values(apps, schema_editor):
    LogEntry = apps.get_model("admin", "LogEntry")
    alias = schema_editor.connection.alias
    # Only entries of a profile's identity inline hold one; a one-off pass over those, not the whole history.
    for pk, raw in (
        LogEntry.objects.using(alias).filter(change_message__contains='"identity"').values_list("pk", "change_message")
    ):
        try:
            parts = json.loads(raw)
        except ValueError:
            continue
        changed = False
        for part in parts if isinstance(parts, list) else ():
            for detail in part.values() if isinstance(part, dict) else ():
                if isinstance(detail, dict) and detail.get("name") == "identity" and ":" in str(detail.get("object")):
                    kind = str(detail["object"]).partition(":")[0]
                    detail["object"] = LABELS.get(kind, "identity")
                    changed = True
        if changed:
            LogEntry.objects.using(alias).filter(pk=pk).update(change_message=json.dumps(parts))


class Migration(migrations.Migration):
    dependencies = [
        ("staff", "0005_operators_see_identities"),
        ("admin", "0003_logentry_add_action_flag_choices"),
    ]

    operations = [migrations.RunPython(forget_identity_values, migrations.RunPython.noop)]
