"""DRF's old tokens were stored in plaintext and no longer authenticate anyone: delete them so no key stays readable.

`rest_framework.authtoken` stays installed only so this migration (and its table) keep working.
"""

from django.db import migrations


def drop_plaintext_tokens(apps, schema_editor):
    apps.get_model("authtoken", "Token").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("authtoken", "0001_initial"),
        ("staff", "0002_api_tokens"),
    ]

    operations = [migrations.RunPython(drop_plaintext_tokens, migrations.RunPython.noop)]
