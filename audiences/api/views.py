from rest_framework import viewsets


class ProfileViewSet(viewsets.ViewSet):
    pass


class EventViewSet(viewsets.ViewSet):
    pass


class AudienceViewSet(viewsets.ViewSet):
    pass
