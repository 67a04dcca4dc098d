from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "connections"
    verbose_name = "Connections"

    def ready(self):
        from django.db.models.signals import post_migrate

        from audiences import hooks
        from connections import fanout, reverify, slots, variants
        from connections.admin import inlines
        from connections.api import delete_guards
        from connections.schedules import ensure_schedules
        from outputs import hooks as output_hooks

        hooks.on_membership_changed(fanout.fan_out_run)
        hooks.on_identities_changed(fanout.fan_out_identity_changes)
        hooks.on_profiles_erased(fanout.forget_erased)
        hooks.on_variants(variants.Listener)
        output_hooks.on_output_changed(reverify.output_changed)
        output_hooks.on_partner_request(slots.one)
        inlines.register()
        delete_guards.register()
        post_migrate.connect(ensure_schedules, sender=self)
