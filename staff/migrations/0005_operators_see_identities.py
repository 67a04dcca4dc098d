"""Operators see member identities (they troubleshoot deliveries member by member); Viewers do not.

Idempotent like 0001_groups: the permission is created if missing and added, never removed.
"""

from django.db import migrations


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    alias = schema_editor.connection.alias
    app_config = apps.get_app_config("audiences")
    # create_permissions skips apps without a models module, which is every app of the migration state.
    models_module = getattr(app_config, "models_module", None)
    app_config.models_module = models_module or True
    create_permissions(app_config, apps=apps, verbosity=0, using=alias)
    app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    permission = Permission.objects.using(alias).get(content_type__app_label="audiences", codename="view_identities")
    group, _ = Group.objects.using(alias).get_or_create(name="Operators")
    group.permissions.add(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("staff", "0004_token_user_help"),
        ("audiences", "0003_profile_view_identities_permission"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
