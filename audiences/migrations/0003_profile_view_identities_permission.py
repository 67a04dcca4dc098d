from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("audiences", "0002_membership_audience_no_extra_index"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="profile",
            options={"ordering": ["id"], "permissions": [("view_identities", "Can see member identities")]},
        ),
    ]
