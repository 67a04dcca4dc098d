import factory

from audiences.models import Audience
from connections.models import Connection
from tests.audiences.factories import AudienceFactory, IdentityFactory, MembershipFactory, ProfileFactory
from tests.outputs.factories import LIST_ID, MAILCHIMP_KEY, MailchimpOutputFactory

# The members of the `parisians` fixture (tests/connections/conftest.py); `parisians_with_a_device` adds AAID.
EMAILS = ["ann@example.com", "bob@example.com", "cat@example.com"]
AAID = "38400000-8cf0-11bd-b23e-10b96e40000d"


class StaticAudienceFactory(AudienceFactory):
    kind = Audience.Kind.STATIC
    criteria = None


class ConnectionFactory(factory.django.DjangoModelFactory):
    """A connection row as it is stored; `services.connect` (or the API) is what also queues the backfill."""

    class Meta:
        model = Connection

    audience = factory.SubFactory(StaticAudienceFactory)
    output = factory.SubFactory(MailchimpOutputFactory)
    settings = factory.LazyFunction(lambda: {"list_id": LIST_ID})
    delivery_mode = Connection.Mode.REALTIME


def add_members(audience, emails=(), aaids=()):
    """Members of `audience`: one profile per email address, then one per Android advertising ID."""
    profiles = []
    for email in emails:
        profile = ProfileFactory()
        IdentityFactory(profile=profile, type="email", value=email)
        profiles.append(profile)
    for aaid in aaids:
        profile = ProfileFactory()
        IdentityFactory(profile=profile, type="android_aaid", value=aaid)
        profiles.append(profile)
    for profile in profiles:
        MembershipFactory(audience=audience, profile=profile)
    Audience.objects.filter(pk=audience.pk).update(size=audience.memberships.count())
    return profiles


def sandbox_output(sandbox, list_id=LIST_ID, **kwargs):
    """A Mailchimp output whose account and list exist in the sandbox (real HTTP)."""
    sandbox.mailchimp_list(MAILCHIMP_KEY, list_id, "Potential Parisians")
    return MailchimpOutputFactory(base_url=f"{sandbox.base_url}/mailchimp/{{dc}}", **kwargs)


def sandbox_members(sandbox, list_id=LIST_ID) -> dict:
    """{email: status} of the Mailchimp list in the sandbox."""
    return {email: m["status"] for email, m in sandbox.mailchimp_list_state(list_id)["members"].items()}
