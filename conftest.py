import pytest
from rest_framework.test import APIClient


@pytest.fixture
def api_user(django_user_model):
    """The integration's user; it manages outputs, so it may write their credentials."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("integration", password="not-used")
    user.user_permissions.add(Permission.objects.get(codename="change_output_credentials"))
    return user


@pytest.fixture
def api(api_user):
    """An API client authenticated with a real token, as an integration would be."""
    from rest_framework.authtoken.models import Token

    client = APIClient()
    token = Token.objects.create(user=api_user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture(scope="session")
def _sandbox_server():
    from outputs.sandbox.server import PartnerSandbox

    server = PartnerSandbox()
    server.start("127.0.0.1", 0)
    yield server
    server.stop()


@pytest.fixture
def sandbox(_sandbox_server):
    """The partner sandbox on a free port of 127.0.0.1, emptied before each test (real HTTP)."""
    from outputs.sandbox.client import SandboxClient

    client = SandboxClient(_sandbox_server.url)
    client.url = _sandbox_server.url
    client.reset()
    return client
