from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import transaction
from django.db.models import ProtectedError
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audiences import variants as split
from audiences.api import serializers as s
from audiences.api.filters import EventFilter, ProfileFilter
from audiences.criteria import compile_criteria
from audiences.erasure import erase_external_ids, erase_profiles
from audiences.export import audience_csv_response
from audiences.ingest import ProfileInput, ingest_events, upsert_profiles
from audiences.models import Audience, Event, Membership, Profile
from audiences.refresh import refresh_audience
from audiences.static import UnknownProfiles, change_static_members, resolve_profiles
from audiences.stats import identity_breakdown
from audiences.tasks import queue_refresh
from config.api_seams import DeleteGuards


class ProfileViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin, viewsets.GenericViewSet
):
    """Profiles by external ID; write them in bulk with `POST /profiles/bulk/`, erase them with DELETE or `erase/`."""

    lookup_field = "external_id"
    lookup_value_regex = "[^/]+"
    filterset_class = ProfileFilter
    identity_actions = {"list", "retrieve"}  # every profile is shown with its identities

    def get_queryset(self):
        queryset = Profile.objects.prefetch_related("identities").order_by("pk")
        if self.action == "retrieve":
            queryset = queryset.prefetch_related("memberships__audience")
        return queryset

    def get_serializer_class(self):
        return s.ProfileDetailSerializer if self.action == "retrieve" else s.ProfileSerializer

    def get_object(self):
        # PostgreSQL cannot compare text holding NUL, and no external ID holds one (refused on the way in).
        if "\x00" in self.kwargs[self.lookup_field]:
            raise Http404("No Profile matches the given query.")
        return super().get_object()

    @extend_schema(request=s.ProfileBatchSerializer, responses=s.IngestResultSerializer)
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        """Create or update up to BULK_MAX_RECORDS profiles with their attributes and identities."""
        batch = s.ProfileBatchSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        items = [
            ProfileInput(p["external_id"], p.get("attributes"), p.get("identities"))
            for p in batch.validated_data["profiles"]
        ]
        return Response(upsert_profiles(items).as_dict())

    @extend_schema(responses={204: None})
    def destroy(self, request, *args, **kwargs):
        """Erase the profile: it is removed at every partner it reached, then deleted with its identities and events."""
        profile = self.get_object()
        erase_profiles(Profile.objects.filter(pk=profile.pk), request.user, via_api=True)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=s.ErasureSerializer, responses=s.ErasureResultSerializer)
    @action(detail=False, methods=["post"])
    def erase(self, request):
        """Erase up to BULK_MAX_RECORDS profiles by external ID, in one run; IDs no profile has are listed back."""
        data = s.ErasureSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = erase_external_ids(data.validated_data["external_ids"], request.user, via_api=True)
        return Response(result.as_dict())


class EventViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Events; ingest them in bulk with `POST /events/bulk/`."""

    queryset = Event.objects.select_related("profile").order_by("-occurred_at", "-pk")
    serializer_class = s.EventSerializer
    filterset_class = EventFilter

    @extend_schema(request=s.EventBatchSerializer, responses=s.EventsResultSerializer)
    @action(detail=False, methods=["post"])
    def bulk(self, request):
        """Store up to BULK_MAX_RECORDS events; unknown external IDs become new profiles. An event whose source_id
        is already stored is counted in `duplicates` and not stored again."""
        batch = s.EventBatchSerializer(data=request.data)
        batch.is_valid(raise_exception=True)
        return Response(ingest_events(batch.validated_data["events"]).as_dict())


VARIANT = OpenApiParameter(
    "variant", OpenApiTypes.STR, description="A variant's name: only the members in that variant."
)
DISCONNECT = OpenApiParameter(
    "disconnect",
    OpenApiTypes.STR,
    enum=["remove", "keep"],
    description="When variants that go away have connections: remove = remove their members from the partners "
    "first (202; put the split again once those connections are gone); keep = disconnect them leaving the members.",
)


def _split_body(audience, result=None) -> dict:
    audience.refresh_from_db()
    variants = list(audience.variants.all())
    body = {
        "split_version": audience.split_version,
        "variants": s.VariantSerializer(variants, many=True, context={"sizes": split.sizes(audience)}).data,
    }
    if result is not None:
        body = {"status": result.status, "detail": result.detail, "members": audience.size, "moved": result.moved,
                "queued": result.queued, **body}  # fmt: skip
    return body


class AudienceViewSet(viewsets.ModelViewSet):
    # Any ID reaches the view, which answers a JSON 404; the router's default stops at a dot ("1.5"), and
    # Django would answer that with an HTML page.
    lookup_value_regex = "[^/]+"

    queryset = Audience.objects.all()
    serializer_class = s.AudienceSerializer
    filterset_fields = ["kind", "name"]
    identity_actions = {"members", "export"}  # a read of either lists every member's identities

    # Apps whose rows depend on an audience guard its deletion through this seam, from their AppConfig.ready()
    # (connections does): see config/api_seams.py. Guards run in the delete's transaction.
    delete_guards = DeleteGuards()

    @extend_schema(parameters=delete_guards.parameters, responses=delete_guards.responses)
    @transaction.atomic
    def destroy(self, request, *args, **kwargs):
        audience = self.get_object()
        response = self.delete_guards.run(request, audience)
        if response is not None:
            return response
        try:
            audience.delete()
        except ProtectedError as exc:
            used_by = ", ".join(str(o) for o in exc.protected_objects)
            raise serializers.ValidationError({"non_field_errors": [f"Still in use by: {used_by}."]}) from None
        return Response(status=status.HTTP_204_NO_CONTENT)

    def perform_create(self, serializer):
        audience = serializer.save()
        if audience.kind == Audience.Kind.RULES:
            transaction.on_commit(lambda: queue_refresh(audience.pk))

    def perform_update(self, serializer):
        before = serializer.instance.criteria
        audience = serializer.save()
        if audience.kind == Audience.Kind.RULES and audience.criteria != before:
            transaction.on_commit(lambda: queue_refresh(audience.pk))

    @extend_schema(request=None, responses=s.RefreshResultSerializer)
    @action(detail=True, methods=["post"])
    def refresh(self, request, pk=None):
        """Re-evaluate a rule-based audience now and answer with what changed."""
        audience = self.get_object()
        if audience.kind != Audience.Kind.RULES:
            raise serializers.ValidationError({"kind": ["a static audience has no criteria to refresh"]})
        return Response(s.RefreshResultSerializer(refresh_audience(audience)).data)

    @extend_schema(request=s.PreviewSerializer, responses=s.PreviewResultSerializer)
    @action(detail=False, methods=["post"])
    def preview(self, request):
        """Size and identity-type breakdown of criteria, without saving anything."""
        data = s.PreviewSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        matching = Profile.objects.filter(compile_criteria(data.validated_data["criteria"]))
        return Response({"size": matching.count(), "identity_types": identity_breakdown(matching)})

    @staticmethod
    def _variant(audience, request):
        name = request.query_params.get("variant")
        if name is None:
            return None
        variant = audience.variants.filter(name=name).first()
        if variant is None:
            names = ", ".join(audience.variants.values_list("name", flat=True)) or "none"
            raise serializers.ValidationError({"variant": [f"'{audience.name}' has no variant '{name}' ({names})."]})
        return variant

    def _members_of(self, audience, request):
        variant = self._variant(audience, request)
        return split.members(variant) if variant else Membership.objects.filter(audience=audience)

    @extend_schema(methods=["GET"], request=None, responses=s.MemberSerializer(many=True), parameters=[VARIANT])
    @extend_schema(methods=["POST"], request=s.MemberChangeSerializer, responses=s.RefreshResultSerializer)
    @action(detail=True, methods=["get", "post"])
    def members(self, request, pk=None):
        """GET: the members, paginated. POST: add profiles to a static audience."""
        audience = self.get_object()
        if request.method == "POST":
            return self._change_members(audience, request, add=True)
        queryset = (
            self._members_of(audience, request)
            .select_related("profile")
            .prefetch_related("profile__identities")
            .order_by("profile_id")
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(s.MemberSerializer(page, many=True).data)

    @extend_schema(request=s.MemberChangeSerializer, responses=s.RefreshResultSerializer)
    @action(detail=True, methods=["post"], url_path="members/remove")
    def remove_members(self, request, pk=None):
        """Remove profiles from a static audience."""
        return self._change_members(self.get_object(), request, add=False)

    def _change_members(self, audience, request, add):
        if audience.kind != Audience.Kind.STATIC:
            raise serializers.ValidationError({"kind": ["members of a rule-based audience follow its criteria"]})
        data = s.MemberChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            ids = resolve_profiles(data.validated_data["external_ids"], data.validated_data["identities"])
        except UnknownProfiles as exc:
            raise serializers.ValidationError(exc.errors) from None
        run = change_static_members(audience, ids, add=add)
        audience.refresh_from_db()
        body = {
            "audience": audience.name,
            "added": run.added,
            "removed": run.removed,
            "size": audience.size,
            "seconds": 0.0,
        }
        return Response(body, status=status.HTTP_200_OK)

    @extend_schema(request=None, responses={(200, "text/csv"): bytes}, parameters=[VARIANT])
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        """Every member with its identities, as CSV (of one variant with ?variant=)."""
        audience = self.get_object()
        return audience_csv_response(audience, self._variant(audience, request))

    @extend_schema(methods=["GET"], request=None, responses=s.SplitStateSerializer)
    @extend_schema(
        methods=["PUT"],
        request=s.SplitSerializer,
        parameters=[DISCONNECT],
        responses={200: s.SplitResultSerializer, 202: s.SplitResultSerializer},
    )
    @extend_schema(
        methods=["DELETE"],
        request=None,
        parameters=[DISCONNECT],
        responses={200: s.SplitResultSerializer, 202: s.SplitResultSerializer},
    )
    @action(detail=True, methods=["get", "put", "delete"])
    def variants(self, request, pk=None):
        """The audience's A/B variants with their sizes. PUT sets them (by name: a variant keeps its connections;
        the answer says how many members move, and their removes and adds are queued); DELETE removes them."""
        audience = self.get_object()
        if request.method == "GET":
            return Response(_split_body(audience))
        spec = []
        if request.method == "PUT":
            data = s.SplitSerializer(data=request.data)
            data.is_valid(raise_exception=True)
            spec = [{"name": v["name"], "percent": v["percent"]} for v in data.validated_data["variants"]]
        try:
            result = split.change_split(audience, spec, request.query_params.get("disconnect"))
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        code = status.HTTP_202_ACCEPTED if result.status == "disconnecting" else status.HTTP_200_OK
        return Response(_split_body(audience, result), status=code)
