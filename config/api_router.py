"""One router for the whole API; each app keeps its viewsets in `<app>/api/views.py`."""

from rest_framework.routers import DefaultRouter

from audiences.api.views import AudienceViewSet, EventViewSet, ProfileViewSet

router = DefaultRouter()
router.register("profiles", ProfileViewSet, basename="profile")
router.register("events", EventViewSet, basename="event")
router.register("audiences", AudienceViewSet, basename="audience")

app_name = "api"
urlpatterns = router.urls
