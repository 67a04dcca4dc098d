"""A variant connected and split through the API and the commands: the same service, the same sentences."""

import pytest
from django.core.management import CommandError, call_command

from audiences import variants as split
from connections.models import Connection, OutboxMessage
from tests.connections.factories import EMAILS, StaticAudienceFactory, add_members
from tests.outputs.factories import LIST_ID, MailchimpOutputFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def audience():
    audience = StaticAudienceFactory(name="Potential Parisians")
    add_members(audience, emails=EMAILS + [f"p{i}@example.com" for i in range(20)])
    return audience


def run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_the_command_splits_shows_and_refuses_with_the_flag_named(audience):
    said = run("variants", "Potential Parisians", "--set", "A=45 B=45 control=10")
    assert "Split 'Potential Parisians' 45/45/10 (A, B, control): its 23 members are assigned by a stable hash." in said
    assert "4500–8999" in said

    with pytest.raises(CommandError) as exc:
        run("variants", "Potential Parisians", "--set", "A=45 B=45")
    assert str(exc.value) == "--set: The percentages must add up to 100; they add up to 90."
    with pytest.raises(CommandError) as exc:
        run("variants", "Potential Parisians", "--set", "A:45")
    assert str(exc.value) == "--set: Write each variant as NAME=PERCENT, such as A=45; got 'A:45'."


def test_a_variant_is_connected_over_the_api_and_its_members_alone_are_queued(audience, api):
    split.change_split(audience, [{"name": "A", "percent": 50}, {"name": "B", "percent": 50}])
    a = audience.variants.get(name="A")
    output = MailchimpOutputFactory()

    created = api.post(
        "/api/v1/connections/",
        {"audience": audience.pk, "variant": a.pk, "output": output.pk, "settings": {"list_id": LIST_ID}},
        format="json",
    )

    assert created.status_code == 201, created.json()
    body = created.json()
    assert (body["variant"], body["variant_name"]) == (a.pk, "A")
    size = split.members(a).count()
    assert body["queued"] == size == OutboxMessage.objects.count()
    listed = api.get(f"/api/v1/audiences/{audience.pk}/members/?variant=A").json()
    assert listed["count"] == size
    assert api.get(f"/api/v1/audiences/{audience.pk}/variants/").json()["variants"][0]["size"] == size


def test_a_variant_of_another_audience_is_refused_naming_the_field(audience, api):
    other = StaticAudienceFactory(name="Other")
    split.change_split(other, [{"name": "A", "percent": 50}, {"name": "B", "percent": 50}])
    output = MailchimpOutputFactory()
    refused = api.post(
        "/api/v1/connections/",
        {"audience": audience.pk, "variant": other.variants.first().pk, "output": output.pk,
         "settings": {"list_id": LIST_ID}},
        format="json",
    )  # fmt: skip
    assert (refused.status_code, refused.json()) == (
        400,
        {"variant": ["'A' is not a variant of 'Potential Parisians'."]},
    )
    assert not Connection.objects.exists()


def test_the_connect_command_connects_a_variant(audience):
    split.change_split(audience, [{"name": "A", "percent": 50}, {"name": "B", "percent": 50}])
    MailchimpOutputFactory(name="Mailchimp")
    said = run("connect", "Potential Parisians", "Mailchimp", "--setting", f"list_id={LIST_ID}", "--variant", "B")
    assert "Connected 'Potential Parisians · B' → 'Mailchimp'." in said
    with pytest.raises(CommandError) as exc:
        run("connect", "Potential Parisians", "Mailchimp", "--setting", "list_id=zzzzzzzzzz", "--variant", "C")
    assert str(exc.value) == "--variant: 'Potential Parisians' has no variant 'C' (A, B)."
