import factory

from outputs import crypto
from outputs.models import Output

# The shape of a Mailchimp API key: 32 hex digits and the data center after the dash.
MAILCHIMP_KEY = "0123456789abcdef0123456789abcdef-us6"
ANOTHER_MAILCHIMP_KEY = "fedcba9876543210fedcba9876543210-us6"  # a key the output is changed to
WRONG_MAILCHIMP_KEY = "ffffffffffffffffffffffffffffffff-us6"  # well formed, unknown to Mailchimp
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
