"""How a Braze connection writes membership: switching modes, and one string attribute of audience IDs."""

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection as db

from audiences.static import change_static_members
from connections import services, shared_lists
from connections.drain import drain
from connections.models import OutboxMessage
from tests.audiences.factories import MembershipFactory
from tests.connections.factories import StaticAudienceFactory, add_members
from tests.connections.verification.support import IDS, braze_audiences, string_audiences, u0
from tests.waiting import wait_until

pytestmark = pytest.mark.django_db


def test_switching_to_one_attribute_per_audience_writes_every_member_again(sandbox):
    (conn,) = braze_audiences(sandbox, 1, "array")
    drain(conn.pk)
    name = conn.audience.name

    assert services.update_connection(conn, {"membership": "attribute"}) == 2  # both members queued again
    drain(conn.pk)

    for email in ("u0@example.com", "u1@example.com"):
        held = sandbox.braze_users()["users"][f"email:{email}"]
        # The new attribute is set; the old array value stays at Braze, as the README says.
        assert (held[f"relay_audiences: {name}"], held["relay_audiences"]) == (True, [name])


def test_a_bad_membership_mode_is_refused_naming_the_setting(sandbox):
    (conn,) = braze_audiences(sandbox, 1, "array")

    with pytest.raises(ValidationError) as excinfo:
        services.update_connection(conn, {"membership": "csv"})

    assert excinfo.value.message_dict == {"settings.membership": ["Must be one of attribute, array, string."]}
    conn.refresh_from_db()
    assert conn.settings["membership"] == "array"


# --- one string attribute of audience IDs (its verification: tests/connections/verification/test_braze.py) --


def held(sandbox, email="u0@example.com"):
    return sandbox.braze_users()["users"][f"email:{email}"]


def drain_all(conns):
    for conn in conns:
        drain(conn.pk)


def test_a_user_in_three_string_audiences_holds_their_ids_sorted_and_comma_separated(sandbox):
    conns = string_audiences(sandbox)

    drain_all(conns)

    assert held(sandbox)["relay_audiences"] == "7000000,40000000,120000000"
    assert held(sandbox, "u1@example.com")["relay_audiences"] == "7000000"


def test_leaving_one_string_audience_rewrites_the_other_two(sandbox):
    conns = string_audiences(sandbox)
    drain_all(conns)

    change_static_members(conns[1].audience, [u0().pk], add=False)
    drain(conns[1].pk)

    assert held(sandbox)["relay_audiences"] == "7000000,120000000"


def test_leaving_every_string_audience_clears_the_attribute(sandbox):
    conns = string_audiences(sandbox)
    drain_all(conns)

    for conn in conns:
        change_static_members(conn.audience, [u0().pk], add=False)
    drain_all(conns)

    assert "relay_audiences" not in held(sandbox)  # null removed it from the profile
    assert held(sandbox, "u1@example.com")["relay_audiences"] == "7000000"


def test_an_old_add_retried_after_the_member_left_sends_the_current_smaller_list(sandbox):
    conns = string_audiences(sandbox)
    sandbox.fault("braze", "status", status=503, count=1)
    drain(conns[0].pk)  # the add of u0 to the first audience is refused for now: retried later
    assert OutboxMessage.objects.get(connection=conns[0], value="u0@example.com").state == "pending"

    change_static_members(conns[1].audience, [u0().pk], add=False)  # its removal is not sent yet
    services.sync_now(conns[0])
    drain(conns[0].pk)

    assert held(sandbox)["relay_audiences"] == "7000000,120000000"


def test_switching_an_array_to_a_string_of_the_same_name_replaces_the_array(sandbox):
    (conn,) = braze_audiences(sandbox, 1, "array")
    drain(conn.pk)

    assert services.update_connection(conn, {"membership": "string"}) == 2
    drain(conn.pk)

    assert held(sandbox)["relay_audiences"] == str(conn.audience.pk)


def test_a_string_connection_with_another_attribute_name_keeps_its_own_list(sandbox):
    conns = string_audiences(sandbox)
    audience = StaticAudienceFactory(pk=9_000_000)
    MembershipFactory(audience=audience, profile=u0())
    other = services.connect(
        audience, conns[0].output, {"identifier": "email", "membership": "string", "attribute_name": "other_audiences"}
    )

    drain_all([*conns, other])

    assert (held(sandbox)["relay_audiences"], held(sandbox)["other_audiences"]) == (
        "7000000,40000000,120000000",
        "9000000",
    )


@pytest.mark.django_db(transaction=True)
def test_a_list_that_changed_while_it_was_sent_is_sent_again(sandbox):
    conns = string_audiences(sandbox, ids=IDS[:2])
    change_static_members(conns[1].audience, [u0().pk], add=False)
    OutboxMessage.objects.filter(connection=conns[1]).delete()  # nothing queued on the second connection
    sandbox.fault("braze", "slow", delay=1.0, count=1)

    def send():
        try:
            drain(conns[0].pk)
        finally:
            db.close()  # this thread's own connection, so the test database can be dropped

    sending = threading.Thread(target=send)
    sending.start()
    # The first connection's request is held at Braze, with the list it read: "7000000".
    wait_until(lambda: sandbox.stats()["in_flight"]["braze"] >= 1, 10, "the first request reaching Braze")

    # u0 joins the second audience meanwhile; a write for it could have reached Braze before the held one.
    MembershipFactory(audience=conns[1].audience, profile=u0())
    sending.join()

    assert held(sandbox)["relay_audiences"] == "7000000,40000000"
    sent = OutboxMessage.objects.filter(connection=conns[0], value="u0@example.com")
    assert [m.state for m in sent.order_by("pk")] == ["delivered", "delivered"]


def test_a_batchs_current_lists_are_read_in_one_query(sandbox, django_assert_num_queries):
    conns = string_audiences(sandbox)
    add_members(conns[1].audience, emails=[f"m{n}@example.com" for n in range(50)])
    conn = conns[1]
    shared = conn.partner.shared_list(conn.output.settings, conn.settings)
    identities = [("email", f"m{n}@example.com") for n in range(50)] + [("email", "u0@example.com")]

    with django_assert_num_queries(1):
        lists = shared_lists.current_audiences(conn, shared, identities)

    assert lists[("email", "m7@example.com")] == (40_000_000,)
    assert lists[("email", "u0@example.com")] == IDS


def test_the_api_refuses_a_bad_membership_mode_naming_the_field(api, sandbox):
    (conn,) = string_audiences(sandbox, ids=IDS[:1])

    refused = api.patch(f"/api/v1/connections/{conn.pk}/", {"settings": {"membership": "csv"}}, format="json")

    assert refused.status_code == 400
    assert refused.json() == {"settings": {"membership": ["Must be one of attribute, array, string."]}}


def test_switching_a_string_connection_away_rewrites_its_members_lists_without_it(sandbox):
    conns = string_audiences(sandbox)
    drain_all(conns)

    services.update_connection(conns[1], {"membership": "attribute"})
    drain_all(conns)

    assert held(sandbox)["relay_audiences"] == "7000000,120000000"  # rewritten through the first connection
    assert held(sandbox)[f"relay_audiences: {conns[1].audience.name}"] is True
    assert held(sandbox, "u1@example.com")["relay_audiences"] == "7000000"


def test_disconnecting_a_string_connection_with_removal_rewrites_its_members_lists_without_it(sandbox):
    conns = string_audiences(sandbox)
    drain_all(conns)

    services.disconnect(conns[1], remove_from_partner=True)
    drain(conns[1].pk)

    assert held(sandbox)["relay_audiences"] == "7000000,120000000"
