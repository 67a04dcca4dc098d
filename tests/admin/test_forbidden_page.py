"""A refused admin page is still the site: its header, the user's links and the reason it was refused."""

import pytest

pytestmark = pytest.mark.django_db


def test_a_viewer_refused_the_outbox_sees_why_under_the_sites_own_header(viewer_client):
    response = viewer_client.get("/admin/connections/outboxmessage/")

    assert response.status_code == 403
    page = response.content.decode()
    assert '<a href="/admin/">Audience Relay</a>' in page
    assert "Django administration" not in page
    assert "Log out" in page or "LOG OUT" in page.upper()
    assert "seeing them needs the “Can see member identities” permission." in page
    assert page.count("403 Forbidden") == 1  # one heading, not two
