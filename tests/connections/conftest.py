"""The objects most connection tests start from."""

import pytest

from tests.connections.factories import AAID, EMAILS, StaticAudienceFactory, add_members
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY, MailchimpOutputFactory


@pytest.fixture
def parisians():
    """'Potential Parisians': a static audience of three people, each with an email address only."""
    audience = StaticAudienceFactory(name="Potential Parisians")
    add_members(audience, emails=EMAILS)
    return audience


@pytest.fixture
def parisians_with_a_device():
    """The three Parisians and a fourth member known only by an Android advertising ID (`AAID`)."""
    audience = StaticAudienceFactory(name="Potential Parisians")
    add_members(audience, emails=EMAILS, aaids=[AAID])
    return audience


@pytest.fixture
def mailchimp(sandbox):
    """A Mailchimp output pointed at the sandbox, whose account holds the list LIST_ID ("Potential Parisians").
    Test modules that need another list define their own `mailchimp`."""
    sandbox.mailchimp_account(MAILCHIMP_KEY)
    sandbox.mailchimp_list(MAILCHIMP_KEY, LIST_ID, "Potential Parisians")
    return MailchimpOutputFactory(name="Mailchimp", base_url=sandbox.url + "/mailchimp/{dc}")
