"""A/B variants: a stable split of an audience, each variant connected like an audience, over real HTTP."""

import pytest
from django.core.exceptions import ValidationError
from django.db import connection as db

from audiences import variants as split
from audiences.ingest import ProfileInput, upsert_profiles
from audiences.models import Audience, Variant
from audiences.refresh import refresh_audience
from connections import funnel, services, tasks
from connections.drain import drain
from connections.models import Connection, OutboxMessage
from connections.trace import trace
from outputs.models import Output
from tests.audiences.factories import AudienceFactory
from tests.outputs.factories import MAILCHIMP_KEY

pytestmark = pytest.mark.django_db(transaction=True)

PREMIUM = {"user": "status", "op": "eq", "value": "Premium"}
LIST_A, LIST_B = "aaaaaaaaaa", "bbbbbbbbbb"
SPLIT = [{"name": "A", "percent": 45}, {"name": "B", "percent": 45}, {"name": "control", "percent": 10}]


@pytest.fixture
def mailchimp(sandbox):
    sandbox.mailchimp_account(MAILCHIMP_KEY)
    for list_id in (LIST_A, LIST_B):
        sandbox.mailchimp_list(MAILCHIMP_KEY, list_id, f"Campaign {list_id[0]}")
    output = Output(
        kind="mailchimp",
        name="Mailchimp",
        base_url=sandbox.url + "/mailchimp/{dc}",
        settings={"email_type": "html", "double_optin": False, "delete_on_subscription_end": False},
    )
    output.set_secrets({"api_key": MAILCHIMP_KEY})
    output.save()
    return output


def people(n, status="Premium", start=0):
    upsert_profiles(
        [ProfileInput(f"u{i}", {"status": status}, [("email", f"u{i}@example.com")]) for i in range(start, start + n)]
    )


def split_audience(members=200):
    people(members)
    audience = AudienceFactory(name="Potential Parisians", criteria=PREMIUM)
    refresh_audience(audience)
    result = split.change_split(audience, SPLIT)
    audience.refresh_from_db()
    return audience, result


def variant(audience, name):
    return Variant.objects.select_related("audience").get(audience=audience, name=name)


def emails(variant_):
    return {f"{m.profile.external_id}@example.com" for m in split.members(variant_).select_related("profile")}


def subscribed(sandbox, list_id):
    members = sandbox.mailchimp_list_state(list_id)["members"]
    return {email for email, m in members.items() if m["status"] == "subscribed"}


def test_it_splits_every_member_into_exactly_one_variant_in_the_right_shares():
    audience, result = split_audience(2000)

    sizes = split.sizes(audience)
    by_name = {v.name: sizes[v.pk] for v in audience.variants.all()}
    assert sum(by_name.values()) == 2000
    assert abs(by_name["A"] - 900) < 90 and abs(by_name["B"] - 900) < 90 and abs(by_name["control"] - 200) < 60
    assert result.detail == (
        "Split 'Potential Parisians' 45/45/10 (A, B, control): its 2,000 members are assigned by a stable hash."
    )
    together = emails(variant(audience, "A")) | emails(variant(audience, "B")) | emails(variant(audience, "control"))
    assert len(together) == 2000


def test_the_database_and_python_put_each_member_in_the_same_bucket():
    audience, _ = split_audience(300)
    seeds = split.seed(audience.pk, audience.split_version)
    with db.cursor() as cursor:
        cursor.execute(
            f"SELECT profile_id, {split.bucket_sql('profile_id', seeds)} FROM audiences_membership "
            "WHERE audience_id = %s",
            [audience.pk],
        )
        rows = cursor.fetchall()
    assert rows and all(b == split.bucket(pid, seeds) for pid, b in rows)
    # Large IDs stay exact too (no overflow, no floating point).
    assert split.bucket(2**62, seeds) == split.bucket(2**62, seeds) < split.BUCKETS


def test_a_member_stays_in_its_variant_as_membership_changes():
    audience, _ = split_audience(200)
    before = {v.name: emails(v) for v in audience.variants.all()}

    people(50, start=200)  # new members join
    upsert_profiles([ProfileInput(f"u{i}", {"status": "Free"}, []) for i in range(20)])  # some leave
    refresh_audience(audience)

    after = {v.name: emails(v) for v in audience.variants.all()}
    for name in before:
        stayed = before[name] - {f"u{i}@example.com" for i in range(20)}
        assert stayed <= after[name]


def test_variants_are_refused_with_a_sentence_naming_what_is_wrong():
    audience = AudienceFactory()

    def spec(*pairs):
        return [{"name": n, "percent": p} for n, p in pairs]

    cases = [
        (spec(("A", 100)), "An audience has 2 to 5 variants (or none); got 1."),
        (spec(("A", 50), ("B", 40)), "The percentages must add up to 100; they add up to 90."),
        (spec(("A", 50), ("a", 50)), "Each variant needs its own name: 'a' is given twice."),
        (spec(("A", 50.5), ("B", 49.5)), "Variant 1's percent must be a whole number from 1 to 99."),
        (spec(*[(str(i), 10 if i else 50) for i in range(6)]), "An audience has 2 to 5 variants (or none); got 6."),
    ]
    for spec, sentence in cases:
        with pytest.raises(ValidationError) as exc:
            split.change_split(audience, spec)
        assert sentence in exc.value.message_dict["variants"]
    assert not Variant.objects.exists()


def test_each_variant_reaches_only_its_own_list_and_control_reaches_nothing(sandbox, mailchimp):
    audience, _ = split_audience(60)
    a = services.connect(audience, mailchimp, {"list_id": LIST_A}, variant=variant(audience, "A"))
    b = services.connect(audience, mailchimp, {"list_id": LIST_B}, variant=variant(audience, "B"))
    drain(a.pk)
    drain(b.pk)

    assert subscribed(sandbox, LIST_A) == emails(variant(audience, "A"))
    assert subscribed(sandbox, LIST_B) == emails(variant(audience, "B"))
    control = emails(variant(audience, "control"))
    assert control and not control & (subscribed(sandbox, LIST_A) | subscribed(sandbox, LIST_B))
    assert services.connected(a).startswith(
        f"Connected 'Potential Parisians · A' → 'Mailchimp'. Queued {len(emails(variant(audience, 'A')))} messages"
    )

    # Membership changes fan out to the variant of each member only.
    people(40, start=60)
    refresh_audience(audience)
    drain(a.pk)
    drain(b.pk)
    assert subscribed(sandbox, LIST_A) == emails(variant(audience, "A"))
    assert subscribed(sandbox, LIST_B) == emails(variant(audience, "B"))

    # Funnel and trace speak of the variant.
    steps = funnel.compute(Connection.objects.get(pk=a.pk), partner_count=None).steps
    assert steps[0].count == len(emails(variant(audience, "A")))
    assert steps[0].reason.startswith("Variant A (45% of the audience) holds ")
    someone = sorted(control)[0]
    routes = trace(someone).profiles[0].routes
    assert routes == []  # a control member goes nowhere


def test_changing_the_percentages_moves_only_the_boundary_members_and_queues_them(sandbox, mailchimp):
    audience, _ = split_audience(400)
    a = services.connect(audience, mailchimp, {"list_id": LIST_A}, variant=variant(audience, "A"))
    b = services.connect(audience, mailchimp, {"list_id": LIST_B}, variant=variant(audience, "B"))
    drain(a.pk)
    drain(b.pk)
    version = audience.split_version

    result = split.change_split(
        audience, [{"name": "A", "percent": 50}, {"name": "B", "percent": 40}, {"name": "control", "percent": 10}]
    )
    audience.refresh_from_db()

    assert audience.split_version == version  # the same test: the hash stays
    moved = result.moved
    assert 0 < moved < 80  # the 5% between the old and the new A/B boundary (about 20), not a reshuffle
    assert result.detail.startswith(f"Split 'Potential Parisians' 50/40/10 (A, B, control): {moved} of its 400 members")
    assert result.queued == 2 * moved  # an add where they arrive, a remove where they left
    drain(a.pk)
    drain(b.pk)
    assert subscribed(sandbox, LIST_A) == emails(variant(audience, "A"))
    assert subscribed(sandbox, LIST_B) == emails(variant(audience, "B"))


def test_removing_a_connected_variant_asks_what_to_do_with_its_connections(sandbox, mailchimp):
    audience, _ = split_audience(40)
    a = services.connect(audience, mailchimp, {"list_id": LIST_A}, variant=variant(audience, "A"))
    drain(a.pk)

    with pytest.raises(ValidationError) as exc:
        split.change_split(audience, [{"name": "B", "percent": 50}, {"name": "control", "percent": 50}])
    assert exc.value.message_dict["disconnect"][0].startswith(
        "Disconnect these first: 'Potential Parisians · A' → 'Mailchimp', or say what to do with them"
    )
    assert Variant.objects.filter(audience=audience).count() == 3

    waiting = split.change_split(audience, [{"name": "B", "percent": 50}, {"name": "control", "percent": 50}], "remove")
    assert waiting.status == "disconnecting"
    assert Connection.objects.get(pk=a.pk).status == Connection.Status.DISCONNECTING
    tasks.drain_connection(a.pk)
    assert not Connection.objects.filter(pk=a.pk).exists()
    assert subscribed(sandbox, LIST_A) == set()

    done = split.change_split(audience, [{"name": "B", "percent": 50}, {"name": "control", "percent": 50}])
    assert done.status == "changed"
    assert [v.name for v in audience.variants.all()] == ["B", "control"]
    assert Audience.objects.get(pk=audience.pk).split_version == 2  # a new set of variants: a new hash


def test_a_variant_connection_must_be_of_the_same_audience(mailchimp):
    audience, _ = split_audience(5)
    other = AudienceFactory(name="Other")
    with pytest.raises(ValidationError) as exc:
        services.connect(other, mailchimp, {"list_id": LIST_A}, variant=variant(audience, "A"))
    assert exc.value.message_dict == {"variant": ["'A' is not a variant of 'Other'."]}
    assert not OutboxMessage.objects.exists()


def test_connecting_a_variant_reads_its_split_as_it_is_now_not_as_the_caller_last_read_it(sandbox, mailchimp):
    people(80)
    audience = AudienceFactory(name="Potential Parisians", criteria=PREMIUM)
    refresh_audience(audience)
    split.change_split(audience, SPLIT)  # `audience` still holds the split version it was read with

    conn = services.connect(audience, mailchimp, {"list_id": LIST_A}, variant=variant(audience, "A"))
    drain(conn.pk)

    assert subscribed(sandbox, LIST_A) == emails(variant(audience, "A"))
