"""The Integrators group: what an integration needs to run the whole seed workflow through the API.

A token's scope lets it write profiles, audiences, outputs and connections; creating an output with its API
key, or pointing it somewhere, needs the credentials permission, which only a user (or a group) can hold. The
group also sees member identities: whoever may set an output's destination can already send every member's
identities there, so hiding them in the API's answers would protect nothing from this user.

Idempotent like 0001_groups: the group and permissions are created if missing and added, never removed.
"""

from django.db import migrations

PERMISSIONS = [("outputs", "change_output_credentials"), ("audiences", "view_identities")]


def create_integrators(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    alias = schema_editor.connection.alias
    for app_label in {app for app, _ in PERMISSIONS}:
        app_config = apps.get_app_config(app_label)
        # create_permissions skips apps without a models module, which is every app of the migration state.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        create_permissions(app_config, apps=apps, verbosity=0, using=alias)
        app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(alias).get_or_create(name="Integrators")
    for app_label, codename in PERMISSIONS:
        group.permissions.add(
            Permission.objects.using(alias).get(content_type__app_label=app_label, codename=codename)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("staff", "0006_history_forgets_identity_values"),
        ("outputs", "0002_credentials_permission"),
        ("audiences", "0003_profile_view_identities_permission"),
    ]

    operations = [migrations.RunPython(create_integrators, migrations.RunPython.noop)]
