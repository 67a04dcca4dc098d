"""A staff user's API permission check fails closed: a view whose model cannot be found grants nothing.

Views without a queryset say whose permissions they need (`staff_model`); every route of the API is walked
as a staff user with every view permission and as one with none.
"""

import pytest
from django.contrib.auth.models import Permission
from rest_framework import viewsets
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from config.api_router import router
from staff.api_auth import StaffModelPermissions

pytestmark = pytest.mark.django_db

REFUSED = "Your staff account does not have the permission for this in the admin, so not through the API either."


def list_urls():
    return [f"/api/v1/{prefix}/" for prefix, _, _ in router.registry]


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_user("sam", password="pw-sam-1", is_staff=True)


def test_a_staff_user_with_no_permissions_reads_no_endpoint_only_the_api_root(client, staff):
    client.force_login(staff)

    answers = {url: client.get(url) for url in list_urls()}

    assert {url: r.status_code for url, r in answers.items()} == dict.fromkeys(list_urls(), 403)
    assert all(r.json() == {"detail": REFUSED} for r in answers.values())
    assert client.get("/api/v1/").status_code == 200  # it only lists the endpoints' URLs


def test_a_staff_user_with_every_view_permission_reads_every_endpoint(client, staff):
    staff.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client.force_login(staff)

    assert {url: client.get(url).status_code for url in ["/api/v1/", *list_urls()]} == dict.fromkeys(
        ["/api/v1/", *list_urls()], 200
    )


def test_the_partner_catalog_needs_the_permission_to_view_outputs(client, staff):
    client.force_login(staff)
    assert client.get("/api/v1/partners/mailchimp/").status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_output"))
    assert client.get("/api/v1/partners/mailchimp/").json()["name"] == "Mailchimp"


class Undeclared(viewsets.ViewSet):
    """A view with no queryset that forgot to say whose permissions it needs."""

    def list(self, request):
        return None


class Broken(viewsets.GenericViewSet):
    """A view whose queryset cannot be built."""

    def get_queryset(self):
        raise RuntimeError("the model lookup fails")


@pytest.mark.parametrize("view_class", [Undeclared, Broken])
def test_a_view_whose_model_cannot_be_found_grants_nothing(staff, view_class):
    request = Request(APIRequestFactory().get("/api/v1/somewhere/"))
    request.user = staff
    view = view_class(action="list", request=request)

    assert StaffModelPermissions().has_permission(request, view) is False


def test_a_view_declared_open_to_all_staff_is_read_only(staff):
    class Open(Undeclared):
        staff_model = None

    factory = APIRequestFactory()
    allowed = []
    for raw in (factory.get("/x/"), factory.post("/x/")):
        request = Request(raw)
        request.user = staff
        allowed.append(StaffModelPermissions().has_permission(request, Open(action="list", request=request)))

    assert allowed == [True, False]
