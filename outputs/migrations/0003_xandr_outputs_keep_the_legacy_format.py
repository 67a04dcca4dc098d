"""Xandr outputs made before the file format choice keep uploading legacy BSS files.

New outputs default to BSS Avro, the format Xandr prefers, but the format a member's uploads must use is set up
with Xandr. Writing the old format on the existing outputs (rather than only reading a missing key as "legacy")
means an admin form or API call that saves such an output shows and keeps its real format instead of filling in
the new default and silently sending files the member's Batch Segment Service cannot read.
"""

from django.db import migrations


def keep_the_legacy_format(apps, schema_editor):
    Output = apps.get_model("outputs", "Output")
    # A migration is frozen history: it may name the partner whose setting it fills in.
    for output in Output.objects.filter(kind="xandr").only("settings"):
        if "file_format" not in (output.settings or {}):
            output.settings = {**(output.settings or {}), "file_format": "legacy"}
            output.save(update_fields=["settings"])


class Migration(migrations.Migration):
    dependencies = [("outputs", "0002_credentials_permission")]

    operations = [migrations.RunPython(keep_the_legacy_format, migrations.RunPython.noop)]
