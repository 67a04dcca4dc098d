import factory

from audiences.models import Audience
from connections.models import Connection
from outputs import crypto
from outputs.models import Output
from tests.audiences.factories import AudienceFactory, IdentityFactory, MembershipFactory, ProfileFactory

MAILCHIMP_KEY = "0123456789abcdef0123456789abcdef-us6"
LIST_ID = "a1b2c3d4e5"


class MailchimpOutputFactory(factory.django.DjangoModelFactory):
    """A Mailchimp output; point it at the sandbox with `base_url=sandbox.base_url + "/mailchimp/{dc}"`."""

    class Meta:
        model = Output

    class Params:
        api_key = MAILCHIMP_KEY

    kind = "mailchimp"
    name = "Mailchimp (marketing)"  # unique: pass another name for a second output
    settings = factory.LazyFunction(
        lambda: {"email_type": "html", "double_optin": False, "delete_on_subscription_end": False}
    )
    base_url = "http://127.0.0.1:9/mailchimp/{dc}"  # nothing listens there: tests that send use the sandbox's
    secrets_encrypted = factory.LazyAttribute(lambda o: crypto.encrypt({"api_key": o.api_key}))


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
