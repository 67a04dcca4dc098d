import django_filters
from django.db import transaction
from django.db.models import ProtectedError
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api_seams import DeleteGuards
from outputs import permissions
from outputs.api.serializers import CheckSerializer, OutputSerializer, PartnerSerializer
from outputs.models import Output
from outputs.partners import registry
from outputs.partners.destinations import shown
from outputs.permissions import CHANGE_CREDENTIALS, credentials_refused, destination_refused
from outputs.services import check_credentials, describe_check, facts, saved
from staff import audit


class OutputFilter(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=registry.choices, help_text="Partner slug.")

    class Meta:
        model = Output
        fields = ["kind", "name"]


def _moved(serializer, partner) -> list[tuple[str, str, str]]:
    """The destinations this save would change, from the validated data (a value sent again unchanged is no move)."""
    output, data = serializer.instance, serializer.validated_data
    before = permissions.destinations(partner, output.base_url, output.settings) if output else {}
    base_url = data.get("base_url", output.base_url if output else "")
    return permissions.moved(before, permissions.destinations(partner, base_url, data.get("settings", {})))


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
    filterset_class = OutputFilter

    # Apps whose rows depend on an output guard its deletion through this seam, from their AppConfig.ready()
    # (connections does): see config/api_seams.py. Guards run in the delete's transaction.
    delete_guards = DeleteGuards()

    def _refuse_without_permission(self, serializer, kind: str) -> None:
        """Writing a secret or moving a destination needs the credentials permission: 403 naming each one."""
        if self.request.user.has_perm(CHANGE_CREDENTIALS):
            return
        partner = registry.get(kind)
        sent = self.request.data.get("settings") if isinstance(self.request.data, dict) else None
        sent = sent if isinstance(sent, dict) else {}
        secret = sorted(s.name for s in partner.output_settings if s.secret)
        in_settings = {n: [credentials_refused(n)] for n in secret if sent.get(n) not in (None, "")}
        errors = {}
        for name, _old, _new in _moved(serializer, partner):
            if name == "base_url":
                errors["base_url"] = [destination_refused(name)]
            else:
                in_settings[name] = [destination_refused(name)]
        if in_settings:
            errors["settings"] = in_settings
        if errors:
            raise exceptions.PermissionDenied(errors)

    def perform_create(self, serializer):
        self._refuse_without_permission(serializer, serializer.validated_data["kind"])
        output = serializer.save()
        audit.record(self.request.user, output, audit.api("Added."), "add")
        saved(output, None, self.request.user)
        output.refresh_from_db(fields=["credentials_ok", "credentials_checked_at", "credentials_message"])

    def perform_update(self, serializer):
        output = serializer.instance
        self._refuse_without_permission(serializer, output.kind)
        moves = _moved(serializer, output.partner)
        before, stored = _snapshot(output), facts(output)
        serializer.save()
        changed = [n for n in audit.changed_fields(before, _snapshot(output)) if n not in {m[0] for m in moves}]
        sentences = [audit.sentence(changed)] if changed or not moves else []
        sentences += [audit.moved(name, shown(old), shown(new)) for name, old, new in moves]
        audit.record(self.request.user, output, audit.api(" ".join(sentences)))
        saved(output, stored, self.request.user, moved=bool(moves))

    @extend_schema(parameters=delete_guards.parameters, responses=delete_guards.responses)
    @transaction.atomic
    def destroy(self, request, *args, **kwargs):
        output = self.get_object()
        response = self.delete_guards.run(request, output)
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
