from django.apps import AppConfig


class AudiencesConfig(AppConfig):
    name = "audiences"
    verbose_name = "Audiences"

    def ready(self):
        from django.db.models.signals import post_migrate

        from audiences.schedules import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
