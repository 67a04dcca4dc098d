from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from outputs.api.serializers import CheckSerializer, OutputSerializer, PartnerSerializer
from outputs.models import Output
from outputs.partners import registry
from outputs.services import check_credentials


class OutputViewSet(viewsets.ModelViewSet):
    """Configured partner accounts. Secrets are write-only: responses list which are set, never their values."""

    queryset = Output.objects.all()
    serializer_class = OutputSerializer
    filterset_fields = ["kind", "name"]

    @extend_schema(request=None, responses=CheckSerializer)
    @action(detail=True, methods=["post"])
    def check(self, request, pk=None):
        """Ask the partner whether this output's credentials work."""
        result = check_credentials(self.get_object())
        return Response(CheckSerializer(result).data)


class PartnerViewSet(viewsets.ViewSet):
    """The partner catalog: pattern, identity types, delivery, limits and both settings schemas."""

    lookup_field = "slug"
    serializer_class = PartnerSerializer

    @extend_schema(responses=PartnerSerializer(many=True))
    def list(self, request):
        return Response(PartnerSerializer(registry.all_partners(), many=True).data)

    @extend_schema(responses=PartnerSerializer)
    def retrieve(self, request, slug=None):
        try:
            partner = registry.get(slug)
        except KeyError:
            raise Http404 from None
        return Response(PartnerSerializer(partner).data)
