import factory
from django.contrib.auth import get_user_model

from staff.models import ApiToken


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ["username"]

    username = factory.Sequence(lambda n: f"integration{n}")


class ApiTokenFactory(factory.django.DjangoModelFactory):
    """A saved token; its plaintext, which the database never holds, is on `.plaintext`."""

    class Meta:
        model = ApiToken

    name = factory.Sequence(lambda n: f"Integration {n}")
    user = factory.SubFactory(UserFactory)
    scope = ApiToken.Scope.WRITE

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        token = model_class(*args, **kwargs)
        token.plaintext = token.generate_and_save()
        return token
