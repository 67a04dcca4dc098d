"""Filters named the same mean the same on every endpoint, and a viewset's filters narrow its list only."""

import pytest

from tests.connections.factories import ConnectionFactory, StaticAudienceFactory, add_members
from tests.outputs.factories import MailchimpOutputFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two():
    """Two audiences with a member each, each connected to its own output."""
    parisians = StaticAudienceFactory(name="Potential Parisians")
    romans = StaticAudienceFactory(name="Potential Romans")
    add_members(parisians, emails=["ann@example.com"])
    add_members(romans, emails=["bob@example.com"])
    mailchimp = MailchimpOutputFactory(name="Mailchimp (marketing)")
    sales = MailchimpOutputFactory(name="Mailchimp (sales)")
    return {
        "parisians": parisians,
        "romans": romans,
        "mailchimp": mailchimp,
        "sales": sales,
        "to_mailchimp": ConnectionFactory(audience=parisians, output=mailchimp),
        "to_sales": ConnectionFactory(audience=romans, output=sales),
    }


def listed(api, path, key, **params):
    response = api.get(path, params)
    assert response.status_code == 200, response.json()
    return [row[key] for row in response.json()["results"]]


def test_audience_and_output_filters_take_an_id_or_a_name_on_every_endpoint(api, two):
    parisians, mailchimp = two["parisians"], two["mailchimp"]
    ann = parisians.memberships.get().profile.external_id
    conn = two["to_mailchimp"].pk

    for audience in (parisians.pk, "Potential Parisians"):
        assert listed(api, "/api/v1/profiles/", "external_id", audience=audience) == [ann]
        assert listed(api, "/api/v1/connections/", "id", audience=audience) == [conn]
    for output in (mailchimp.pk, "Mailchimp (marketing)"):
        assert listed(api, "/api/v1/connections/", "id", output=output) == [conn]
    assert listed(api, "/api/v1/profiles/", "external_id", audience="Potential Londoners") == []
    assert listed(api, "/api/v1/connections/", "id", audience=10**30) == []  # past any ID: a name nobody has


def test_an_audience_named_like_another_ones_id_lists_the_members_of_both(api, two):
    romans = two["romans"]
    named = StaticAudienceFactory(name=str(romans.pk))
    add_members(named, emails=["cat@example.com"])
    expected = sorted(m.profile.external_id for a in (romans, named) for m in a.memberships.all())

    assert sorted(listed(api, "/api/v1/profiles/", "external_id", audience=romans.pk)) == expected


def test_an_audiences_members_ignore_the_audience_lists_filters(api, two):
    parisians = two["parisians"]

    response = api.get(f"/api/v1/audiences/{parisians.pk}/members/", {"name": "Potential Romans", "kind": "rules"})

    assert response.status_code == 200
    assert [m["identities"] for m in response.json()["results"]] == [[{"type": "email", "value": "ann@example.com"}]]


def test_the_schema_documents_each_lists_filters_on_that_list_only(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()

    def query(path):
        return sorted(p["name"] for p in schema["paths"][path]["get"].get("parameters", []) if p["in"] == "query")

    assert query("/api/v1/audiences/") == ["kind", "name", "page"]
    assert query("/api/v1/audiences/{id}/members/") == ["page", "variant"]
    assert query("/api/v1/connections/{id}/funnel/") == []
    assert query("/api/v1/outputs/{id}/") == []
    params = schema["paths"]["/api/v1/profiles/"]["get"]["parameters"]
    [audience] = [p for p in params if p["name"] == "audience"]
    assert (audience["schema"]["type"], audience["description"]) == (
        "string",
        "Members of this audience: its ID or its name.",
    )
