from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from connections import services
from connections.api import serializers as s
from connections.api.filters import ConnectionFilter, DeliveryFilter, MessageFilter
from connections.models import Connection, OutboxMessage
from connections.queries import with_pending, with_state_shown
from identities import IdentityType
from staff import audit

REMOVE_CHOICE = OpenApiParameter(
    "remove_from_partner",
    OpenApiTypes.BOOL,
    required=True,
    description="true: remove the audience's members from the partner first (202, deleted once sent); "
    "false: leave them there and delete now (204).",
)
PAGE = OpenApiParameter("page", OpenApiTypes.INT, description="Page number (newest first).")
MESSAGE_PARAMETERS = [
    PAGE,
    OpenApiParameter("state", OpenApiTypes.STR, enum=OutboxMessage.State.values),
    OpenApiParameter("identity", OpenApiTypes.STR, description="An identity value as typed; normalized to match."),
    OpenApiParameter("identity_type", OpenApiTypes.STR, enum=IdentityType.values),
    OpenApiParameter("action", OpenApiTypes.STR, enum=["add", "remove"]),
]
DELIVERY_PARAMETERS = [
    PAGE,
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="Batches started at or after this time."),
    OpenApiParameter("has_error", OpenApiTypes.BOOL, description="Only batches with (or without) an error."),
]


def _snapshot(conn: Connection) -> dict:
    """What an audit message may name when a connection changes (its settings hold no secrets)."""
    fields = ("delivery_mode", "interval_minutes", "interval_messages")
    return {**{name: getattr(conn, name) for name in fields}, **conn.settings}


def _refused(exc: services.Refused):
    return serializers.ValidationError({"status": [str(exc)]})


@extend_schema_view(
    create=extend_schema(responses={201: s.CreatedConnectionSerializer}),
    update=extend_schema(responses=s.CreatedConnectionSerializer),
    partial_update=extend_schema(responses=s.CreatedConnectionSerializer),
    destroy=extend_schema(
        parameters=[REMOVE_CHOICE],
        responses={202: s.RemovingSerializer, 204: OpenApiResponse(description="Disconnected and deleted.")},
    ),
)
class ConnectionViewSet(viewsets.ModelViewSet):
    """Audiences connected to outputs. Creating one validates its settings and queues the current members."""

    # Any ID reaches the view, which answers a JSON 404; the router's default stops at a dot ("1.5"), and
    # Django would answer that with an HTML page.
    lookup_value_regex = "[^/]+"

    serializer_class = s.ConnectionSerializer
    filterset_class = ConnectionFilter
    identity_actions = {"messages"}  # one message per identity value

    def get_queryset(self):
        return with_pending(Connection.objects.select_related("audience", "variant", "output")).order_by("pk")

    def _reload(self, conn) -> Connection:
        return self.get_queryset().get(pk=conn.pk)

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        conn = serializer.save()
        audit.record(request.user, conn, audit.api(services.connected(conn)), "add")
        fresh = self._reload(conn)
        fresh.queued_on_connect = conn.queued_on_connect
        return Response(s.CreatedConnectionSerializer(fresh).data, status=status.HTTP_201_CREATED)

    def update(self, request, *args, **kwargs):
        serializer = self.get_serializer(self.get_object(), data=request.data, partial=kwargs.get("partial", False))
        serializer.is_valid(raise_exception=True)
        before = _snapshot(serializer.instance)
        conn = serializer.save()
        audit.record(request.user, conn, audit.api(audit.sentence(audit.changed_fields(before, _snapshot(conn)))))
        fresh = self._reload(conn)
        fresh.queued_on_update = conn.queued_on_update
        return Response(s.CreatedConnectionSerializer(fresh).data)

    def destroy(self, request, *args, **kwargs):
        conn = self.get_object()
        choice = request.query_params.get("remove_from_partner", "").strip().lower()
        if choice not in ("true", "false"):
            raise serializers.ValidationError(
                {
                    "remove_from_partner": [
                        "Say whether to remove the audience's members from the partner first: true or false."
                    ]
                }
            )
        pk = conn.pk
        outcome, detail = services.disconnect(conn, choice == "true")
        action = "delete" if outcome == "deleted" else "change"
        audit.record(request.user, conn, audit.api(detail), action, object_id=pk)
        if outcome == "deleted":
            return Response(status=status.HTTP_204_NO_CONTENT)
        conn = self._reload(conn)
        body = {"status": outcome, "detail": detail, "pending": conn.pending}
        return Response(s.RemovingSerializer(body).data, status=status.HTTP_202_ACCEPTED)

    def _operation(self, conn, detail, requeued=None):
        audit.record(self.request.user, conn, audit.api(detail))
        conn = self._reload(conn)
        conn.detail = detail
        if requeued is not None:
            conn.requeued = requeued
        return Response(s.OperationResultSerializer(conn).data)

    @extend_schema(request=None, responses=s.OperationResultSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """Stop sending; membership changes keep queueing until the connection is resumed."""
        conn = self.get_object()
        try:
            return self._operation(conn, services.pause(conn))
        except services.Refused as exc:
            raise _refused(exc) from None

    @extend_schema(request=None, responses=s.OperationResultSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Back to active after a pause or a fault; waiting messages go out now."""
        conn = self.get_object()
        try:
            return self._operation(conn, services.resume(conn))
        except services.Refused as exc:
            raise _refused(exc) from None

    @extend_schema(request=None, responses=s.OperationResultSerializer)
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        """Send what is waiting now, even for an interval connection or a message backing off."""
        conn = self.get_object()
        try:
            return self._operation(conn, services.sync(conn))
        except services.Refused as exc:
            raise _refused(exc) from None

    @extend_schema(request=None, responses=s.OperationResultSerializer)
    @action(detail=True, methods=["post"], url_path="retry-failed")
    def retry_failed(self, request, pk=None):
        """Give messages that failed (gave up after the retry window) another window; `requeued` counts them."""
        conn = self.get_object()
        count, detail = services.retry_failed(conn)
        return self._operation(conn, detail, requeued=count)

    @extend_schema(request=None, responses=s.VerificationSerializer)
    @action(detail=True, methods=["post"])
    def verify(self, request, pk=None):
        """Run every check now (credentials, destination, account, identity coverage, delivery, partner count)
        and store the result on the connection; each check that did not pass carries a hint. Changes nothing at
        the partner."""
        conn = self.get_object()
        detail = services.verify(conn)
        audit.record(request.user, conn, audit.api(detail))
        body = {"status": conn.verification_status, "verified_at": conn.verified_at,
                "checks": conn.verification_checks, "detail": detail}  # fmt: skip
        return Response(s.VerificationSerializer(body).data)

    @extend_schema(responses=s.FunnelSerializer)
    @action(detail=True, methods=["get"])
    def funnel(self, request, pk=None):
        """Why the partner holds fewer than the audience: each step's count, how many it lost and why."""
        conn = self.get_object()
        return Response(s.FunnelSerializer(services.funnel(conn).as_dict()).data)

    @extend_schema(parameters=MESSAGE_PARAMETERS, filters=False, responses=s.MessageSerializer(many=True))
    @action(detail=True, methods=["get"])
    def messages(self, request, pk=None):
        """The connection's outbox, newest first: filter by state, identity (as typed), identity_type, action."""
        conn = self.get_object()
        queryset = self._filtered(MessageFilter, with_state_shown(conn.messages.order_by("-id")))
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(s.MessageSerializer(page, many=True).data)

    @extend_schema(parameters=DELIVERY_PARAMETERS, filters=False, responses=s.DeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """One record per batch sent to the partner, newest first."""
        conn = self.get_object()
        queryset = self._filtered(DeliveryFilter, conn.deliveries.order_by("-started_at", "-id"))
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(s.DeliverySerializer(page, many=True).data)

    def _filtered(self, filterset_class, queryset):
        filterset = filterset_class(self.request.query_params, queryset=queryset, request=self.request)
        if not filterset.is_valid():
            raise serializers.ValidationError(filterset.errors)
        return filterset.qs
