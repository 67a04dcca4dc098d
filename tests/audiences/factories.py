import datetime as dt

import factory
from django.utils import timezone

from audiences.models import Audience, Event, Identity, Membership, Profile


class ProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Profile

    external_id = factory.Sequence(lambda n: f"user-{n:06d}")
    attributes = factory.LazyFunction(lambda: {"status": "Free"})


class IdentityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Identity

    profile = factory.SubFactory(ProfileFactory)
    type = "email"
    value = factory.Sequence(lambda n: f"person{n}@example.com")


class EventFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Event

    profile = factory.SubFactory(ProfileFactory)
    name = "Play Video"
    attributes = factory.LazyFunction(lambda: {"category": "Destination Intro", "destination": "Paris"})
    occurred_at = factory.LazyFunction(lambda: timezone.now() - dt.timedelta(hours=1))


class AudienceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Audience

    name = factory.Sequence(lambda n: f"Audience {n}")
    kind = Audience.Kind.RULES
    criteria = factory.LazyFunction(lambda: {"user": "status", "op": "eq", "value": "Premium"})


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    audience = factory.SubFactory(AudienceFactory)
    profile = factory.SubFactory(ProfileFactory)
    since = factory.LazyFunction(timezone.now)
