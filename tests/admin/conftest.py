import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from connections.models import OutboxMessage


@pytest.fixture
def operator(django_user_model):
    user = django_user_model.objects.create_user("olivia", password="pw-olivia-1", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators"))
    return user


@pytest.fixture
def viewer(django_user_model):
    user = django_user_model.objects.create_user("victor", password="pw-victor-1", is_staff=True)
    user.groups.add(Group.objects.get(name="Viewers"))
    return user


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


def page(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def message(conn, value, state="pending", action="add", identity_type="email", **fields):
    now = timezone.now()
    defaults = {"next_attempt_at": now, "created_at": now, "updated_at": now}
    return OutboxMessage.objects.create(
        connection=conn, identity_type=identity_type, value=value, action=action, state=state, **{**defaults, **fields}
    )
