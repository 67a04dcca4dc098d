import pytest
from rest_framework.test import APIClient


@pytest.fixture
def api_user(django_user_model):
    return django_user_model.objects.create_user("integration", password="not-used")


@pytest.fixture
def api(api_user):
    """An API client authenticated with a real token, as an integration would be."""
    from rest_framework.authtoken.models import Token

    client = APIClient()
    token = Token.objects.create(user=api_user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client
