"""DRF's old tokens were stored in plaintext and no longer authenticate anyone: drop their table so no key stays
readable.

`rest_framework.authtoken` is not installed: its table exists only in a database made while it was, hence the
IF EXISTS (a fresh database never has it, and nothing refers to it).
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("staff", "0002_api_tokens"),
    ]

    operations = [migrations.RunSQL("DROP TABLE IF EXISTS authtoken_token", migrations.RunSQL.noop)]
