"""/api/docs/ in a real browser with nothing reachable but our own server: Swagger UI lists the operations."""

from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_api_docs_render_offline_from_our_own_static_files(logged_in, live_server):
    page = logged_in
    ours = urlsplit(live_server.url).netloc
    elsewhere = []

    def offline(route):
        # The machine is offline for the page: anything not on our server fails, as it would without a network.
        if urlsplit(route.request.url).netloc == ours:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", offline)
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".opblock-summary-path")
    screenshot(page, "api-docs.png")

    paths = page.locator(".opblock-summary-path").all_inner_texts()
    assert elsewhere == []
    assert page.locator(".info .title").inner_text().startswith("Audience Relay API")
    assert {"/api/v1/profiles/bulk/", "/api/v1/connections/{id}/verify/"} <= {p.replace("\u200b", "") for p in paths}
