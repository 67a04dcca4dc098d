"""One router for the whole API; each app keeps its viewsets in `<app>/api/views.py`."""

from rest_framework.routers import DefaultRouter

from audiences.api.views import AudienceViewSet, EventViewSet, ProfileViewSet
from connections.api.views import ConnectionViewSet
from outputs.api.views import OutputViewSet, PartnerViewSet


class ApiRoot(DefaultRouter.APIRootView):
    staff_model = None  # lists the endpoints' URLs, nothing a model permission governs: any staff user may read it


router = DefaultRouter()
router.APIRootView = ApiRoot
router.register("profiles", ProfileViewSet, basename="profile")
router.register("events", EventViewSet, basename="event")
router.register("audiences", AudienceViewSet, basename="audience")
router.register("outputs", OutputViewSet, basename="output")
router.register("partners", PartnerViewSet, basename="partner")
router.register("connections", ConnectionViewSet, basename="connection")

app_name = "api"
urlpatterns = router.urls
