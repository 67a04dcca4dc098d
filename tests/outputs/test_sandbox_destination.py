"""What partner_sandbox prints for each partner is what the output's form takes, and it reaches the sandbox."""

import pytest

from outputs import schema
from outputs.models import Output
from outputs.partners import registry
from outputs.partners.base import Account
from outputs.services import clean_base_url, clean_output_settings

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("slug", registry.slugs())
def test_it_prints_fields_that_an_output_takes_and_that_reach_the_sandbox(sandbox, slug):
    sandbox.seed_demo()
    partner = registry.get(slug)
    fields = partner.sandbox_destination(sandbox.url)
    settings, connection_settings = partner.sandbox_demo

    base_url = clean_base_url(fields.pop("base_url", ""), slug)
    plain, secrets = clean_output_settings(slug, {**settings, **fields})
    output = Output(kind=slug, name=f"{slug} (sandbox)", base_url=base_url, settings=plain)
    output.set_secrets(secrets)
    output.full_clean()
    output.save()
    cleaned = schema.clean_settings(partner.connection_settings, connection_settings)

    checks = partner.verify(output.account(), cleaned)

    assert [c for c in checks if c.status != "ok"] == []


def test_the_printed_lines_are_the_partners_fields(sandbox):
    from outputs.management.commands.partner_sandbox import destination_lines

    lines = destination_lines(sandbox.url)

    assert f"Mailchimp: base URL override {sandbox.url}/mailchimp/{{dc}}" in lines
    assert f"Braze: base URL override {sandbox.url}/braze, REST endpoint https://rest.iad-01.braze.com" in lines
    assert f"Webhook: URL {sandbox.url}/webhook/demo" in lines
    assert len(lines) == len(registry.slugs())


def test_a_mailchimp_base_url_with_the_api_version_is_a_configuration_problem(sandbox):
    sandbox.seed_demo()
    partner = registry.get("mailchimp")
    account = Account({"api_key": partner.sandbox_demo[0]["api_key"]}, f"{sandbox.url}/mailchimp/{{dc}}/3.0")

    check = partner.check_credentials(account)

    assert check.status == "failing"
    assert check.detail == (
        f"Mailchimp answered HTTP 404 at {sandbox.url}/mailchimp/us6/3.0/3.0/ping: there is no Mailchimp API at "
        "this base URL."
    )
    assert "temporary" not in check.hint
    assert "without /3.0" in check.hint


def test_a_xandr_base_url_that_leads_nowhere_is_a_configuration_problem(sandbox):
    sandbox.seed_demo()
    partner = registry.get("xandr")
    settings = {"username": "demo", "password": "demo-pass", "member_id": 1234}

    check = partner.check_credentials(Account(settings, f"{sandbox.url}/appnexus"))

    assert check.status == "failing"
    assert (
        check.detail
        == f"Xandr answered HTTP 404 at {sandbox.url}/appnexus/auth: there is no Xandr API at this base URL."
    )
    assert "temporary" not in check.hint
