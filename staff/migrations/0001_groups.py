"""The two staff groups. Idempotent: groups and permissions are created if missing, never removed.

Permissions are normally created after all migrations (post_migrate); they are created here first so that
the groups can be filled on a fresh database in the same `migrate`.
"""

from django.db import migrations

VIEW = ["view"]
EDIT = ["view", "change"]

# (app_label, model) -> actions. Operators run the connection operations (sync, pause, resume, retry failed),
# which need change_connection; adding and deleting outputs, audiences and connections stays with administrators.
OPERATORS = {
    ("audiences", "audience"): EDIT,
    ("audiences", "profile"): EDIT,
    ("audiences", "identity"): ["view", "add", "change", "delete"],  # a profile's identities are edited inline
    ("audiences", "event"): VIEW,
    ("audiences", "membership"): VIEW,
    ("audiences", "refreshrun"): VIEW,
    ("outputs", "output"): EDIT,  # not change_output_credentials
    ("connections", "connection"): EDIT,
    ("connections", "outboxmessage"): VIEW,
    ("connections", "delivery"): VIEW,
    ("staff", "auditentry"): VIEW,
}
VIEWERS = {key: VIEW for key in OPERATORS}
GROUPS = {"Operators": OPERATORS, "Viewers": VIEWERS}


def create_groups(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    alias = schema_editor.connection.alias
    for app_config in apps.get_app_configs():
        # create_permissions skips apps without a models module, which is every app of the migration state.
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = models_module or True
        create_permissions(app_config, apps=apps, verbosity=0, using=alias)
        app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, grants in GROUPS.items():
        group, _ = Group.objects.using(alias).get_or_create(name=name)
        for (app_label, model), actions in grants.items():
            codenames = [f"{action}_{model}" for action in actions]
            perms = Permission.objects.using(alias).filter(content_type__app_label=app_label, codename__in=codenames)
            if perms.count() != len(codenames):
                raise RuntimeError(f"Missing permissions for {app_label}.{model}: {codenames}")
            group.permissions.add(*perms)


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("admin", "0003_logentry_add_action_flag_choices"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("audiences", "0002_membership_audience_no_extra_index"),
        ("outputs", "0002_credentials_permission"),
        ("connections", "0002_verification"),
    ]

    operations = [
        migrations.CreateModel(
            name="AuditEntry",
            fields=[],
            options={"verbose_name": "audit entry", "verbose_name_plural": "audit entries", "proxy": True,
                     "indexes": [], "constraints": []},
            bases=("admin.logentry",),
        ),
        migrations.RunPython(create_groups, migrations.RunPython.noop),
    ]
