from django.db import transaction
from django.db.models import ProtectedError
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from outputs.api.serializers import CheckSerializer, OutputSerializer, PartnerSerializer
from outputs.models import Output
from outputs.partners import registry
from outputs.permissions import CHANGE_CREDENTIALS, credentials_refused
from outputs.services import check_credentials, describe_check
from staff import audit


def _snapshot(output: Output) -> dict:
    """What an audit message may name. Secret values are compared in memory and never written anywhere."""
    return {"name": output.name, "base_url": output.base_url, **output.settings, **output.secrets}


class OutputViewSet(viewsets.ModelViewSet):
    """Configured partner accounts. Secrets are write-only: responses list which are set, never their values."""

    # Any ID reaches the view, which answers a JSON 404; the router's default stops at a dot ("1.5"), and
    # Django would answer that with an HTML page.
    lookup_value_regex = "[^/]+"

    queryset = Output.objects.all()
    serializer_class = OutputSerializer
    filterset_fields = ["kind", "name"]

    # Apps whose objects depend on an output install guards here (connections does, in its API module):
    # guard(request, output) raises a ValidationError to refuse the delete, answers for it with a Response,
    # or returns None to let it go ahead. Guards run in the delete's transaction.
    delete_guards: list = []

    def _refuse_secrets_without_permission(self, kind: str) -> None:
        """Writing a secret needs the credentials permission: 403 naming each secret sent."""
        if self.request.user.has_perm(CHANGE_CREDENTIALS):
            return
        sent = self.request.data.get("settings") if isinstance(self.request.data, dict) else None
        secret = {s.name for s in registry.get(kind).output_settings if s.secret}
        refused = sorted(n for n in secret if isinstance(sent, dict) and sent.get(n) not in (None, ""))
        if refused:
            raise exceptions.PermissionDenied({"settings": {n: [credentials_refused(n)] for n in refused}})

    def perform_create(self, serializer):
        self._refuse_secrets_without_permission(serializer.validated_data["kind"])
        output = serializer.save()
        audit.record(self.request.user, output, audit.api("Added."), "add")

    def perform_update(self, serializer):
        output = serializer.instance
        self._refuse_secrets_without_permission(output.kind)
        before = _snapshot(output)
        serializer.save()
        changed = audit.changed_fields(before, _snapshot(output))
        audit.record(self.request.user, output, audit.api(audit.sentence(changed)))

    @transaction.atomic
    def destroy(self, request, *args, **kwargs):
        output = self.get_object()
        for guard in self.delete_guards:
            response = guard(request, output)
            if response is not None:
                return response
        audit.record(request.user, output, audit.api("Deleted."), "delete")
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
        output = self.get_object()
        result = check_credentials(output)
        audit.record(
            request.user, output, audit.api(f"Checked credentials ({result.status}): {describe_check(result)}")
        )
        return Response(CheckSerializer(result).data)


class PartnerViewSet(viewsets.ViewSet):
    """The partner catalog: pattern, identity types, delivery, limits and both settings schemas."""

    staff_model = Output  # no queryset: reading the catalog is part of reading outputs (view_output)

    # Any ID reaches the view, which answers a JSON 404; the router's default stops at a dot ("1.5"), and
    # Django would answer that with an HTML page.
    lookup_value_regex = "[^/]+"

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
