from django.db import transaction
from django.db.models import ProtectedError
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
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

    # Apps whose objects depend on an output install guards here (connections does, in its API module):
    # guard(request, output) raises a ValidationError to refuse the delete, answers for it with a Response,
    # or returns None to let it go ahead. Guards run in the delete's transaction.
    delete_guards: list = []

    @transaction.atomic
    def destroy(self, request, *args, **kwargs):
        output = self.get_object()
        for guard in self.delete_guards:
            response = guard(request, output)
            if response is not None:
                return response
        try:
            output.delete()
        except ProtectedError as exc:
            used_by = ", ".join(str(o) for o in exc.protected_objects)
            raise serializers.ValidationError({"non_field_errors": [f"Still in use by: {used_by}."]}) from None
        return Response(status=status.HTTP_204_NO_CONTENT)

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

    @extend_schema(
        responses=PartnerSerializer,
        parameters=[OpenApiParameter("slug", str, OpenApiParameter.PATH, description="Partner slug, e.g. mailchimp.")],
    )
    def retrieve(self, request, slug=None):
        try:
            partner = registry.get(slug)
        except KeyError:
            raise Http404 from None
        return Response(PartnerSerializer(partner).data)
