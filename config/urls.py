from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config.health import health
from config.metrics import metrics
from connections.trace import trace_view

admin.site.site_header = "Audience Relay"
admin.site.site_title = "Audience Relay"
admin.site.index_title = "Operations"

urlpatterns = [
    # Operator pages beside the admin's own (the dashboard is on the admin index itself).
    path("admin/trace/", admin.site.admin_view(trace_view), name="relay-trace"),
    path("admin/", admin.site.urls),
    path("health/", health, name="health"),
    path("metrics", metrics, name="metrics"),
    path("api/v1/", include("config.api_router")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
]


def not_found(request, exception=None):
    """JSON under /api/ (an integration reads the answer), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": f"There is no API endpoint at {request.path}; see /api/docs/."}, status=404)
    return page_not_found(request, exception)


handler404 = not_found
