"""The operator's story in a real browser: output, connection, verification, operations, trace, live estimate."""

import pytest

from audiences.ingest import ProfileInput, upsert_profiles
from audiences.models import Audience
from audiences.refresh import refresh_audience
from tests.browser.conftest import screenshot
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
expect = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed").expect

PREMIUM = {"user": "status", "op": "eq", "value": "Premium"}


def premium_audience(n=3) -> Audience:
    upsert_profiles(
        [ProfileInput(f"user-{i}", {"status": "Premium"}, [("email", f"fan{i}@example.com")]) for i in range(n)]
        + [ProfileInput("user-free", {"status": "Free"}, [("email", "free@example.com")])]
    )
    audience = Audience.objects.create(name="Premium fans", kind=Audience.Kind.RULES, criteria=PREMIUM)
    refresh_audience(audience)
    return audience


def test_it_walks_the_operators_story(logged_in, live_server, sandbox):
    page = logged_in
    sandbox.mailchimp_account(MAILCHIMP_KEY)
    sandbox.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Demo")
    premium_audience()

    # An output: choose the partner, then fill its settings.
    page.goto(f"{live_server.url}/admin/outputs/output/add/")
    page.get_by_role("link", name="Add Mailchimp output").click()
    page.fill("#id_name", "Mailchimp (browser)")
    page.fill("#id_base_url", f"{sandbox.url}/mailchimp/{{dc}}")
    page.fill("#id_setting__api_key", MAILCHIMP_KEY)
    page.click("input[name=_save]")
    expect(page.locator("ul.messagelist")).to_contain_text("Mailchimp (browser)")

    # A connection: choose the output, then the audience and the list.
    page.goto(f"{live_server.url}/admin/connections/connection/add/")
    page.get_by_role("link", name="Connect an audience to Mailchimp (browser)").click()
    page.select_option("#id_audience", label="Premium fans")
    page.fill("#id_setting__list_id", LIST_ID)
    page.click("input[name=_save]")
    messages = page.locator("ul.messagelist")
    expect(messages).to_contain_text("Premium fans")
    connection_url = page.url

    page.get_by_role("button", name="Verify now").click()
    expect(messages).to_contain_text("Verified 'Premium fans' → 'Mailchimp (browser)': ok")

    sandbox.revoke("mailchimp", MAILCHIMP_KEY)
    page.get_by_role("button", name="Verify now").click()
    expect(messages).to_contain_text("Verified 'Premium fans' → 'Mailchimp (browser)': failing")
    expect(page.locator("#content-main")).to_contain_text("Mailchimp rejected the API key")
    screenshot(page, "connection.png")

    page.locator(".field-operations").get_by_role("link", name="Pause").click()
    expect(page.locator("#content")).to_contain_text("Sending stops.")
    page.get_by_role("button", name="Yes, pause").click()
    expect(messages).to_contain_text("Paused 'Premium fans' → 'Mailchimp (browser)'.")
    assert page.url == connection_url

    page.locator(".field-operations").get_by_role("link", name="Resume").click()
    page.get_by_role("button", name="Yes, resume").click()
    expect(messages).to_contain_text("Resumed 'Premium fans' → 'Mailchimp (browser)'")

    page.goto(f"{live_server.url}/admin/trace/?q=Fan1@Example.com")
    main = page.locator("#content-main")
    expect(main).to_contain_text("Profile user-1")
    expect(main).to_contain_text("fan1@example.com")
    expect(main).to_contain_text("Mailchimp (browser)")

    page.goto(f"{live_server.url}/admin/")
    expect(page.locator("#relay-dashboard")).to_contain_text("Premium fans")
    screenshot(page, "dashboard.png")


def test_it_estimates_the_audience_size_while_the_criteria_are_typed(logged_in, live_server):
    page = logged_in
    premium_audience()

    page.goto(f"{live_server.url}/admin/audiences/audience/add/")
    page.fill("#id_criteria", '{"user": "status", "op": "eq", "value": "Premium"}')
    estimate = page.locator("#criteria-estimate")
    expect(estimate).to_have_text("≈ 3 users — 3 with an email address")

    page.fill(
        "#id_criteria", '{"all": [{"user": "status", "op": "eq", "value": "Premium"}, {"user": "x", "op": "is"}]}'
    )
    expect(estimate).to_contain_text("all[1]")
    expect(estimate).to_have_class("error")
