"""Switching how a Braze connection writes membership: every member is written again in the new form."""

import pytest
from django.core.exceptions import ValidationError

from connections import engine, services
from tests.connections.test_verification import braze_audiences

pytestmark = pytest.mark.django_db


def test_switching_to_one_attribute_per_audience_writes_every_member_again(sandbox):
    (conn,) = braze_audiences(sandbox, 1, "array")
    engine.drain(conn.pk)
    name = conn.audience.name

    assert services.update_connection(conn, {"membership": "attribute"}) == 2  # both members queued again
    engine.drain(conn.pk)

    for email in ("u0@example.com", "u1@example.com"):
        held = sandbox.braze_users()["users"][f"email:{email}"]
        # The new attribute is set; the old array value stays at Braze, as the README says.
        assert (held[f"relay_audiences: {name}"], held["relay_audiences"]) == (True, [name])


def test_a_bad_membership_mode_is_refused_naming_the_setting(sandbox):
    (conn,) = braze_audiences(sandbox, 1, "array")

    with pytest.raises(ValidationError) as excinfo:
        services.update_connection(conn, {"membership": "string"})

    assert excinfo.value.message_dict == {"settings.membership": ["Must be one of attribute, array."]}
    conn.refresh_from_db()
    assert conn.settings["membership"] == "array"
