"""A Viewer reads a profile and a connection in a real browser: the pages read well without identities."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from audiences.permissions import HIDDEN
from tests.admin import identity_world as world
from tests.browser.conftest import PASSWORD, screenshot

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_viewer_reads_a_profile_and_a_connection_without_their_identities(page, live_server, sandbox):
    made = world.seed(sandbox)
    viewer = get_user_model().objects.create_user("vera", password=PASSWORD, is_staff=True)
    viewer.groups.add(Group.objects.get(name="Viewers"))
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "vera")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")

    page.goto(f"{live_server.url}/admin/audiences/profile/{made['profile'].pk}/change/")
    screenshot(page, "viewer-profile.png")
    profile = page.inner_text("#content")
    page.goto(f"{live_server.url}/admin/connections/connection/{made['connection'].pk}/change/")
    screenshot(page, "viewer-connection.png")
    connection = page.inner_text("#content")

    assert HIDDEN in profile and world.EXTERNAL_ID in profile
    assert HIDDEN in connection and "Recent deliveries" in connection
    assert "List ID\ta1b2c3d4e5" in connection  # the settings as stored, not empty form fields
    assert world.leaks(profile + connection) == []
