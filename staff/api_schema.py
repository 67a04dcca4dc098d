"""The API token scheme as the OpenAPI schema shows it (drf-spectacular finds extensions once imported)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiTokenScheme(OpenApiAuthenticationExtension):
    target_class = "staff.api_auth.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "ar_<prefix>_<secret>",
            "description": "Create one with `python manage.py create_api_token USERNAME` or in the admin.",
        }
