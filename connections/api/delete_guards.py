"""What connections says when an audience or output it connects is deleted over the API.

Registered on the audience and output viewsets' declared delete guards (config/api_seams.py) in
ConnectionsConfig.ready().
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers, status
from rest_framework.response import Response

from connections import services
from connections.api import serializers as s

DISCONNECT_CHOICE = OpenApiParameter(
    "disconnect",
    OpenApiTypes.STR,
    enum=["remove", "keep"],
    description="When connections remain: remove = disconnect them, removing their members from the partners "
    "first (202; delete again once they are gone); keep = disconnect them leaving the members, then delete (204).",
)
DOCS = {"parameters": [DISCONNECT_CHOICE], "responses": {202: s.DisconnectingSerializer}}


def delete_guard(field: str):
    """Refuse to delete an audience or output that still has connections, unless told how to disconnect them."""

    def guard(request, obj):
        conns = list(services.connections_of(**{field: obj}))
        if not conns:
            return None
        choice = request.query_params.get("disconnect")
        if choice is None:
            raise serializers.ValidationError(
                {
                    "connections": [
                        f"Disconnect these first: {services.describe_connections(conns)}, "
                        f"or pass ?disconnect=remove or ?disconnect=keep."
                    ]
                }
            )
        if choice not in ("remove", "keep"):
            raise serializers.ValidationError(
                {
                    "disconnect": [
                        "Must be remove (remove the members from the partners first) or keep (leave them there)."
                    ]
                }
            )
        if choice == "keep":
            services.disconnect_all(conns, remove_from_partner=False)
            return None
        services.disconnect_all(conns, remove_from_partner=True)
        body = {
            "status": "disconnecting",
            "detail": f"Removing the members from the partners first: {services.describe_connections(conns)}. "
            f"The {field} can be deleted once these connections are gone.",
            "connections": [c.pk for c in conns],
        }
        return Response(body, status=status.HTTP_202_ACCEPTED)

    return guard


def register() -> None:
    from audiences.api.views import AudienceViewSet
    from outputs.api.views import OutputViewSet

    AudienceViewSet.delete_guards.register(delete_guard("audience"), **DOCS)
    OutputViewSet.delete_guards.register(delete_guard("output"), **DOCS)
