"""Braze connections made before the membership choice keep writing one array attribute.

New connections default to one attribute per audience. Writing the old mode on the existing ones (rather than
only reading a missing key as "array") means an admin form or API call that saves such a connection shows and
keeps its real mode instead of filling in the new default and silently moving its members to other attributes.
"""

from django.db import migrations


def keep_the_array(apps, schema_editor):
    Connection = apps.get_model("connections", "Connection")
    # A migration is frozen history: it may name the partner whose setting it fills in.
    for conn in Connection.objects.filter(output__kind="braze").only("settings"):
        if "membership" not in (conn.settings or {}):
            conn.settings = {**(conn.settings or {}), "membership": "array"}
            conn.save(update_fields=["settings"])


class Migration(migrations.Migration):
    dependencies = [("connections", "0005_outputslot_drop_next_request_at")]

    operations = [migrations.RunPython(keep_the_array, migrations.RunPython.noop)]
