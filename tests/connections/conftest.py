"""The objects most connection tests start from."""

import pytest

from tests.connections.factories import AAID, EMAILS, StaticAudienceFactory, add_members


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
