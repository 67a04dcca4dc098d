"""Staff signed in to the admin call the API with their session (the admin's live pages do): they may do
there what the admin lets them do, and no more. API tokens are governed by their scope instead."""

import pytest

from audiences.models import Audience
from outputs.models import Output
from tests.connections.factories import ConnectionFactory, StaticAudienceFactory
from tests.outputs.factories import MailchimpOutputFactory

pytestmark = pytest.mark.django_db

REFUSED = "Your staff account does not have the permission for this in the admin, so not through the API either."


@pytest.fixture
def connection():
    return ConnectionFactory(audience=StaticAudienceFactory(name="VIP"), output=MailchimpOutputFactory())


def test_a_viewer_reads_through_the_api_but_changes_nothing(viewer_client, connection):
    output = connection.output

    assert viewer_client.get("/api/v1/outputs/").status_code == 200
    assert viewer_client.get(f"/api/v1/connections/{connection.pk}/").status_code == 200
    preview = viewer_client.post(
        "/api/v1/audiences/preview/", {"criteria": {"user": "plan", "op": "eq", "value": "x"}}, "application/json"
    )
    assert preview.status_code == 200  # writes nothing: the audience page's live estimate uses it

    deleted = viewer_client.delete(f"/api/v1/outputs/{output.pk}/?disconnect=keep")
    paused = viewer_client.post(f"/api/v1/connections/{connection.pk}/pause/")
    renamed = viewer_client.patch(f"/api/v1/audiences/{connection.audience.pk}/", {"name": "x"}, "application/json")

    assert [r.status_code for r in (deleted, paused, renamed)] == [403, 403, 403]
    assert deleted.json() == {"detail": REFUSED}
    assert Output.objects.filter(pk=output.pk).exists()
    assert Audience.objects.get(pk=connection.audience.pk).name == "VIP"
    connection.refresh_from_db()
    assert connection.status == "active"


def test_an_operator_runs_operations_but_deleting_stays_with_administrators(operator_client, connection):
    paused = operator_client.post(f"/api/v1/connections/{connection.pk}/pause/")
    deleted = operator_client.delete(f"/api/v1/outputs/{connection.output.pk}/?disconnect=keep")

    assert paused.status_code == 200
    assert deleted.status_code == 403
    assert Output.objects.filter(pk=connection.output.pk).exists()


def test_a_token_is_governed_by_its_scope_not_by_its_users_admin_permissions(api, connection):
    # The `api` fixture's user has no admin group; its write token may operate connections.
    assert api.post(f"/api/v1/connections/{connection.pk}/pause/").status_code == 200
