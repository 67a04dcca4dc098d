"""POST /api/v1/connections/{id}/verify/, GET …/funnel/, and the verification fields of a connection."""

import datetime as dt

import pytest
from rest_framework.test import APIClient

from connections import funnel, services
from connections.drain import drain
from connections.models import Connection
from tests.connections.factories import StaticAudienceFactory, sandbox_output
from tests.outputs.factories import LIST_ID

pytestmark = pytest.mark.django_db

URL = "/api/v1/connections/"
LABEL = "'Potential Parisians' → 'Mailchimp (marketing)'"


def test_it_verifies_a_connection_and_answers_with_the_status_every_check_and_a_sentence(
    api, sandbox, parisians_with_a_device
):
    conn = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": "nope000000"})

    response = api.post(f"{URL}{conn.pk}/verify/")

    assert response.status_code == 200
    body = response.json()
    conn.refresh_from_db()
    assert list(body) == ["status", "verified_at", "checks", "detail"]
    assert body["status"] == conn.verification_status == "failing"
    assert dt.datetime.fromisoformat(body["verified_at"]) == conn.verified_at
    assert body["checks"] == conn.verification_checks
    assert body["checks"][:2] == [
        {
            "name": "credentials",
            "status": "ok",
            "detail": "Mailchimp accepted the API key (data center us6).",
            "hint": "",
        },
        {
            "name": "destination",
            "status": "failing",
            "detail": "Mailchimp has no list with ID 'nope000000' in this account.",
            "hint": "Check the List ID in the connection settings: in Mailchimp, Audience → Settings → Audience name "
            "and defaults shows it as the Audience ID.",
        },
    ]
    assert body["detail"] == f"Verified {LABEL}: failing (1 check needs attention)."


def test_it_says_when_every_check_passed(api, sandbox, parisians_with_a_device):
    conn = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": LIST_ID})

    body = api.post(f"{URL}{conn.pk}/verify/").json()

    assert body["status"] == "ok"
    assert {c["status"] for c in body["checks"]} == {"ok"}
    assert body["detail"] == f"Verified {LABEL}: ok (all {len(body['checks'])} checks passed)."


def test_it_counts_the_checks_that_need_attention(api, sandbox):
    conn = services.connect(StaticAudienceFactory(name="Nobody yet"), sandbox_output(sandbox), {"list_id": LIST_ID})
    services.pause(conn)

    body = api.post(f"{URL}{conn.pk}/verify/").json()

    assert body["status"] == "warning"
    assert [c["name"] for c in body["checks"] if c["status"] != "ok"] == ["identity coverage", "status"]
    assert body["detail"] == "Verified 'Nobody yet' → 'Mailchimp (marketing)': warning (2 checks need attention)."


def test_it_shows_the_last_verification_on_the_connection_read_only(api, sandbox, parisians_with_a_device):
    conn = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": "nope000000"})
    before = api.get(f"{URL}{conn.pk}/").json()

    checks = api.post(f"{URL}{conn.pk}/verify/").json()["checks"]
    after = api.get(f"{URL}{conn.pk}/").json()
    patched = api.patch(
        f"{URL}{conn.pk}/",
        {"verification_status": "ok", "verified_at": None, "verification_checks": []},
        format="json",
    )

    assert (before["verification_status"], before["verified_at"], before["verification_checks"]) == (
        "unverified", None, [],
    )  # fmt: skip
    assert (after["verification_status"], after["verification_checks"]) == ("failing", checks)
    assert after["verified_at"] is not None
    assert patched.status_code == 200
    assert patched.json()["verification_status"] == "failing"
    assert patched.json()["verification_checks"] == checks
    assert Connection.objects.get(pk=conn.pk).verification_status == "failing"


def test_it_lists_connections_by_verification_status(api, sandbox, parisians_with_a_device):
    output = sandbox_output(sandbox)
    good = services.connect(parisians_with_a_device, output, {"list_id": LIST_ID})
    bad = services.connect(parisians_with_a_device, output, {"list_id": "nope000000"})
    for conn in (good, bad):
        api.post(f"{URL}{conn.pk}/verify/")

    def ids(status):
        return [c["id"] for c in api.get(URL, {"verification": status}).json()["results"]]

    assert ids("failing") == [bad.pk]
    assert ids("ok") == [good.pk]
    assert api.get(URL, {"verification": "great"}).status_code == 400


@pytest.mark.django_db(transaction=True)  # the drain sends from a pool of threads
def test_it_explains_the_size_funnel_step_by_step(api, sandbox, parisians_with_a_device):
    conn = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": LIST_ID})
    drain(conn.pk)

    response = api.get(f"{URL}{conn.pk}/funnel/")

    assert response.status_code == 200
    body = response.json()
    assert body == funnel.compute(conn).as_dict()
    assert [(s["name"], s["count"], s["lost"]) for s in body["steps"]] == [
        ("audience members", 4, 0),
        ("members with an accepted identity", 3, 1),
        ("identities valid after normalization", 3, 0),
        ("forwarded", 3, 0),
        ("accepted by the partner", 3, 0),
        ("partner's own count", 3, 0),
    ]
    assert body["steps"][1]["reason"] == (
        "3 have an email address; Mailchimp accepts only email addresses, so Mailchimp receives 3."
    )
    assert body["summary"] == (
        "The audience matches 4 users. 3 have an email address; Mailchimp accepts only email addresses, so "
        "Mailchimp receives 3. Mailchimp reports 3."
    )


def test_it_does_not_ask_the_partner_for_its_count_again_when_verification_could_not(
    api, sandbox, parisians_with_a_device
):
    conn = services.connect(parisians_with_a_device, sandbox_output(sandbox), {"list_id": "nope000000"})
    api.post(f"{URL}{conn.pk}/verify/")
    asked = sandbox.stats()["requests"]["mailchimp"]

    body = api.get(f"{URL}{conn.pk}/funnel/").json()

    assert body["steps"][5]["count"] is None
    assert sandbox.stats()["requests"]["mailchimp"] == asked


def test_it_answers_404_for_an_unknown_connection_and_401_without_a_token(api):
    assert api.post(f"{URL}404/verify/").status_code == 404
    assert api.get(f"{URL}404/funnel/").status_code == 404
    assert APIClient().post(f"{URL}404/verify/").status_code == 401


def test_it_describes_verify_and_funnel_in_the_schema(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()

    verify = schema["paths"]["/api/v1/connections/{id}/verify/"]["post"]
    funnel_ = schema["paths"]["/api/v1/connections/{id}/funnel/"]["get"]
    assert verify["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Verification"
    }
    assert funnel_["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Funnel"
    }
    assert "requestBody" not in verify
    components = schema["components"]["schemas"]
    assert set(components["VerificationCheck"]["properties"]) == {"name", "status", "detail", "hint"}
    assert set(components["FunnelStep"]["properties"]) == {"name", "count", "lost", "reason"}
    connection = components["Connection"]["properties"]
    assert all(connection[f].get("readOnly") for f in ("verification_status", "verified_at", "verification_checks"))
