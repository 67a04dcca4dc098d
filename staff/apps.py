from django.apps import AppConfig


class StaffConfig(AppConfig):
    name = "staff"
    verbose_name = "Staff and audit history"

    def ready(self):
        from staff import (
            api_schema,  # noqa: F401  (registers the token scheme with drf-spectacular)
            links,
        )

        links.install()
