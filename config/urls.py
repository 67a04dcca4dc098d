from django.contrib import admin
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, include, path, re_path, resolve
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import health
from config.metrics import metrics
from connections.trace import trace_view

admin.site.site_header = "Audience Relay"
admin.site.site_title = "Audience Relay"
admin.site.index_title = "Operations"
# The app list beside every page took 290 of 1,280 px from the lists, pushing their last columns (the errors)
# out of view; the index and the breadcrumbs lead everywhere it did.
admin.site.enable_nav_sidebar = False


def permission_denied(request, exception=None):
    """A refused admin page keeps the site's header and the user's links, and says why it was refused."""
    reason = str(exception) if exception and str(exception) else ""
    context = {**admin.site.each_context(request), "exception": reason, "title": "403 Forbidden"}
    return render(request, "403.html", context, status=403)


handler403 = "config.urls.permission_denied"


def api_not_found(request, exception=None):
    """An integration reads the answer: one sentence, and the slash it forgot when that is all that is wrong."""
    path = request.path
    if not path.endswith("/"):
        try:
            with_slash = resolve(f"{request.path_info}/").url_name != "api-not-found"
        except Resolver404:
            with_slash = False
        if with_slash:
            detail = f"There is no API endpoint at {path}: the API's paths end with a slash ({path}/)."
            return JsonResponse({"detail": detail}, status=404)
    return JsonResponse({"detail": f"There is no API endpoint at {path}; see /api/docs/."}, status=404)


urlpatterns = [
    # Operator pages beside the admin's own (the dashboard is on the admin index itself).
    path("admin/trace/", admin.site.admin_view(trace_view), name="relay-trace"),
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("api/v1/", include("config.api_router")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Last: any other path under /api/ is a JSON 404 with DEBUG on or off (Django uses handler404 only when it
    # is off, and answers its HTML debug page when it is on).
    re_path(r"^api/", api_not_found, name="api-not-found"),
]


def not_found(request, exception=None):
    """JSON under /api/ (an Http404 raised outside the API's own views), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return api_not_found(request)
    return page_not_found(request, exception)


handler404 = not_found
