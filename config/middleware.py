"""Pages outside the API (the admin) when the deployment's configuration, not the request, is the problem."""

from django.contrib import admin
from django.shortcuts import render

from outputs.crypto import SecretsUnreadable


class ConfigurationProblemMiddleware:
    """Stored secrets that no configured key decrypts are a page that says so (503), not a server error: any
    admin page that shows or uses an output's secrets would otherwise fail with a traceback."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, SecretsUnreadable):
            context = {**admin.site.each_context(request), "title": "Configuration problem", "problem": str(exception)}
            return render(request, "configuration_problem.html", context, status=503)
        return None
