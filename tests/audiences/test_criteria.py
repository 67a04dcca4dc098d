import datetime as dt
import random

import pytest
from django.utils import timezone

from audiences.criteria import CriteriaError, annotate_matches, compile_criteria, describe, validate
from audiences.models import Profile
from tests.audiences.factories import EventFactory, IdentityFactory, ProfileFactory

PARISIANS = {
    "all": [
        {
            "event": "Play Video",
            "where": [
                {"attribute": "category", "op": "eq", "value": "Destination Intro"},
                {"attribute": "destination", "op": "eq", "value": "Paris"},
            ],
            "in_last_days": 3,
        },
        {"user": "status", "op": "eq", "value": "Premium"},
    ]
}
PREMIUM = {"user": "status", "op": "eq", "value": "Premium"}
FREE = {"user": "status", "op": "eq", "value": "Free"}


def matching(criteria, now=None) -> set[str]:
    """The profiles `criteria` select, the same whether compiled alone or evaluated together (as ingest does)."""
    alone = set(Profile.objects.filter(compile_criteria(criteria, now)).values_list("external_id", flat=True))
    assert together([criteria], now) == [alone]
    return alone


def together(criteria_list, now=None) -> list[set[str]]:
    """What each criteria selects when all are evaluated in one statement (`annotate_matches`)."""
    profiles, columns = annotate_matches(Profile.objects.order_by(), criteria_list, now)
    rows = list(profiles.values_list("external_id", *columns))
    return [{row[0] for row in rows if row[i + 1]} for i in range(len(columns))]


def ago(**delta) -> dt.datetime:
    return timezone.now() - dt.timedelta(**delta)


def user(attribute, op, value) -> dict:
    return {"user": attribute, "op": op, "value": value}


def watched(attribute, op, value) -> dict:
    return {"event": "Play Video", "where": [{"attribute": attribute, "op": op, "value": value}]}


# --- User attributes ----------------------------------------------------------------------------

EVERYONE = {"ann", "bob", "cat", "dan", "eve", "fay"}


@pytest.fixture
def people():
    ProfileFactory(
        external_id="ann",
        attributes={
            "status": "Premium",
            "age": 34,
            "score": 7.5,
            "vip": True,
            "city": "Paris",
            "a__b": "x",
            "2024": "yes",
            "first.name": "Ann",
        },
    )
    ProfileFactory(external_id="bob", attributes={"status": "premium", "age": 19, "vip": False, "city": "Saint-Paul"})
    # Numbers stored as text are text; a boolean is not a number.
    ProfileFactory(external_id="cat", attributes={"status": "Free", "age": "41", "city": "PARIS"})
    ProfileFactory(external_id="dan", attributes={"status": "Gold", "age": "old", "score": True})
    ProfileFactory(external_id="eve", attributes={})
    ProfileFactory(external_id="fay", attributes={"status": None, "age": None})


@pytest.mark.django_db
@pytest.mark.parametrize(
    "criteria, expected",
    [
        (user("status", "eq", "Premium"), {"ann", "bob"}),
        (user("status", "eq", "PREMIUM"), {"ann", "bob"}),
        (user("status", "ne", "premium"), {"cat", "dan", "eve", "fay"}),
        (user("city", "contains", "PAR"), {"ann", "cat"}),
        (user("city", "contains", "int-p"), {"bob"}),
        (user("city", "contains", "%"), set()),
        (user("status", "in", ["gold", "FREE"]), {"cat", "dan"}),
        (user("age", "in", ["41", 34]), {"ann", "cat"}),
        (user("age", "gt", 30), {"ann"}),
        (user("age", "gte", 34), {"ann"}),
        (user("age", "lt", 34), {"bob"}),
        (user("age", "lte", 34), {"ann", "bob"}),
        (user("age", "gt", 18.5), {"ann", "bob"}),
        (user("age", "lt", 1000), {"ann", "bob"}),
        (user("score", "gt", 0), {"ann"}),
        (user("age", "eq", 34), {"ann"}),
        (user("age", "eq", 34.0), {"ann"}),
        (user("age", "eq", "34"), set()),
        (user("age", "eq", "41"), {"cat"}),
        (user("age", "ne", 34), {"bob", "cat", "dan", "eve", "fay"}),
        (user("vip", "eq", True), {"ann"}),
        (user("vip", "eq", False), {"bob"}),
        (user("vip", "ne", True), {"bob", "cat", "dan", "eve", "fay"}),
        (user("status", "exists", True), {"ann", "bob", "cat", "dan", "fay"}),
        (user("status", "exists", False), {"eve"}),
        (user("a__b", "eq", "X"), {"ann"}),
        (user("2024", "eq", "yes"), {"ann"}),
        (user("first.name", "eq", "ann"), {"ann"}),
    ],
)
def test_it_matches_user_attributes(people, criteria, expected):
    assert matching(criteria) == expected


@pytest.mark.django_db
def test_it_negates_a_condition_on_a_missing_attribute_as_false(people):
    # SQL would say NULL for "age > 30" where there is no age; "not" must still include them.
    assert matching({"not": user("age", "gt", 30)}) == EVERYONE - {"ann"}
    assert matching({"not": user("city", "contains", "par")}) == EVERYONE - {"ann", "cat"}
    assert matching({"include": user("status", "exists", True), "exclude": user("age", "lte", 30)}) == {
        "ann",
        "cat",
        "dan",
        "fay",
    }


# --- Event attributes ---------------------------------------------------------------------------


@pytest.fixture
def viewers():
    EventFactory(profile__external_id="hd", attributes={"duration": 120, "quality": "HD", "autoplay": True})
    EventFactory(profile__external_id="sd", attributes={"duration": 45.5, "quality": "sd"})
    EventFactory(profile__external_id="text", attributes={"duration": "long", "quality": True})
    EventFactory(profile__external_id="bare", attributes={})
    ProfileFactory(external_id="never")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "criteria, expected",
    [
        (watched("quality", "eq", "hd"), {"hd"}),
        (watched("quality", "ne", "HD"), {"sd", "text", "bare"}),
        (watched("quality", "contains", "D"), {"hd", "sd"}),
        (watched("quality", "in", ["SD", "4k"]), {"sd"}),
        (watched("duration", "gt", 60), {"hd"}),
        (watched("duration", "gte", 45.5), {"hd", "sd"}),
        (watched("duration", "lt", 100), {"sd"}),
        (watched("duration", "lte", 45.5), {"sd"}),
        (watched("duration", "eq", 120), {"hd"}),
        (watched("duration", "ne", 120), {"sd", "text", "bare"}),
        (watched("autoplay", "eq", True), {"hd"}),
        (watched("autoplay", "exists", True), {"hd"}),
        (watched("autoplay", "exists", False), {"sd", "text", "bare"}),
        ({"event": "Play Video"}, {"hd", "sd", "text", "bare"}),
        ({"event": "play video"}, set()),
    ],
)
def test_it_matches_event_attributes(viewers, criteria, expected):
    assert matching(criteria) == expected


@pytest.mark.django_db
def test_it_finds_potential_parisians():
    intro_paris = {"category": "Destination Intro", "destination": "Paris"}
    EventFactory(profile__external_id="yes", profile__attributes={"status": "Premium"}, attributes=intro_paris)
    EventFactory(
        profile__external_id="yes-other-case",
        profile__attributes={"status": "premium"},
        attributes={"category": "DESTINATION INTRO", "destination": "paris"},
    )
    EventFactory(profile__external_id="free", profile__attributes={"status": "Free"}, attributes=intro_paris)
    EventFactory(
        profile__external_id="london",
        profile__attributes={"status": "Premium"},
        attributes={"category": "Destination Intro", "destination": "London"},
    )
    split = ProfileFactory(external_id="split", attributes={"status": "Premium"})
    EventFactory(profile=split, attributes={"category": "Destination Intro", "destination": "London"})
    EventFactory(profile=split, attributes={"category": "Trailer", "destination": "Paris"})
    EventFactory(
        profile__external_id="other-event",
        profile__attributes={"status": "Premium"},
        name="Share Video",
        attributes=intro_paris,
    )

    assert matching(PARISIANS) == {"yes", "yes-other-case"}


@pytest.mark.django_db
def test_it_counts_only_events_within_the_window():
    EventFactory(profile__external_id="four-days", occurred_at=ago(days=4))
    EventFactory(profile__external_id="two-days", occurred_at=ago(days=2))
    EventFactory(profile__external_id="forty-days", occurred_at=ago(days=40))

    assert matching({"event": "Play Video", "in_last_days": 3}) == {"two-days"}
    assert matching({"event": "Play Video"}) == {"two-days", "four-days"}
    # The window is counted back from `now`, when one is given.
    assert matching({"event": "Play Video", "in_last_days": 3}, now=ago(days=-2)) == set()


# --- Frequency ----------------------------------------------------------------------------------


@pytest.fixture
def bookers():
    for n in range(5):
        profile = ProfileFactory(external_id=f"booked-{n}")
        EventFactory.create_batch(n, profile=profile, name="Book Trip", occurred_at=ago(days=1))
    # Only events outside the window or of another name: a count of 0.
    EventFactory(profile__external_id="old", name="Book Trip", occurred_at=ago(days=10))
    EventFactory(profile__external_id="other", name="Search")


def booked(op, value) -> dict:
    return {"event": "Book Trip", "in_last_days": 7, "count": {"op": op, "value": value}}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "criteria, expected",
    [
        (booked("gte", 3), {"booked-3", "booked-4"}),
        (booked("gt", 3), {"booked-4"}),
        (booked("eq", 2), {"booked-2"}),
        (booked("eq", 0), {"booked-0", "old", "other"}),
        (booked("lt", 2), {"booked-0", "booked-1", "old", "other"}),
        (booked("lte", 1), {"booked-0", "booked-1", "old", "other"}),
        (booked("lt", 0), set()),
        (booked("gte", 0), {"booked-0", "booked-1", "booked-2", "booked-3", "booked-4", "old", "other"}),
        (booked("gte", 1), {"booked-1", "booked-2", "booked-3", "booked-4"}),
        ({"event": "Book Trip", "in_last_days": 7}, {"booked-1", "booked-2", "booked-3", "booked-4"}),
    ],
)
def test_it_counts_events(bookers, criteria, expected):
    assert matching(criteria) == expected


@pytest.mark.django_db
def test_it_counts_only_events_matching_the_where_conditions():
    profile = ProfileFactory(external_id="mixed")
    EventFactory.create_batch(2, profile=profile, attributes={"destination": "Paris"})
    EventFactory.create_batch(2, profile=profile, attributes={"destination": "Rome"})
    criteria = {**watched("destination", "eq", "paris"), "count": {"op": "gte", "value": 3}}

    assert matching(criteria) == set()
    assert matching({**criteria, "count": {"op": "eq", "value": 2}}) == {"mixed"}


# --- Many conditions evaluated together (`annotate_matches`) ----------------------------------------

VALUES = [
    "Paris",
    "paris",
    "PARIS",
    "Rome",
    "São Paulo",
    "",
    "12",
    12,
    12.0,
    7.5,
    -3,
    0,
    True,
    False,
    None,
    [1],
    {"a": 1},
]


@pytest.mark.django_db
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_many_conditions_on_the_same_keys_match_what_each_selects_alone(seed):
    """Together, each attribute key is read once per event row; every condition still selects what it does alone."""
    rng = random.Random(seed)
    for n in range(30):
        profile = ProfileFactory(external_id=f"p{n}")
        for _ in range(rng.randint(0, 3)):
            attributes = {key: rng.choice(VALUES) for key in ("destination", "duration") if rng.random() < 0.8}
            EventFactory(
                profile=profile,
                name=rng.choice(["Play Video", "Book Trip"]),
                attributes=attributes,
                occurred_at=ago(days=rng.randint(0, 20)),
            )

    def condition():
        op = rng.choice(["eq", "ne", "contains", "in", "gt", "gte", "lt", "lte", "exists"])
        if op == "contains":
            value = rng.choice(["ar", "PAR", "", "ã"])
        elif op == "in":
            value = rng.sample(["Paris", "rome", 12, 7.5, "12"], 2)
        elif op == "exists":
            value = rng.random() < 0.5
        elif op in ("eq", "ne"):
            value = rng.choice(["Paris", "rome", "12", 12, 7.5, 0, True, False])
        else:
            value = rng.choice([0, 7.5, 12, -3])
        return {"attribute": rng.choice(["destination", "duration"]), "op": op, "value": value}

    criteria_list = []
    for _ in range(25):
        node = {"event": rng.choice(["Play Video", "Book Trip"]), "in_last_days": rng.choice([1, 7, 30])}
        node["where"] = [condition() for _ in range(rng.randint(1, 2))]
        if rng.random() < 0.3:
            node["count"] = {"op": rng.choice(["eq", "gte", "lt"]), "value": rng.randint(0, 2)}
        criteria_list.append(rng.choice([node, {"not": node}]))

    alone = [
        set(Profile.objects.filter(compile_criteria(c)).values_list("external_id", flat=True)) for c in criteria_list
    ]
    assert together(criteria_list) == alone
    assert any(alone) and any(a != alone[0] for a in alone)  # the data exercise the conditions


@pytest.mark.django_db
def test_ten_conditions_on_one_key_read_it_as_often_as_one():
    def statement(count):
        criteria = [watched("destination", "eq", f"city {n}") for n in range(count)]
        return str(annotate_matches(Profile.objects.order_by(), criteria)[0].query)

    assert statement(10).count("destination") == statement(1).count("destination")


# --- Combinations and identities ----------------------------------------------------------------


@pytest.fixture
def members():
    premium_viewer = ProfileFactory(external_id="premium-viewer", attributes={"status": "Premium"})
    EventFactory(profile=premium_viewer)
    IdentityFactory(profile=premium_viewer, type="customer_id", value="c-1")
    ProfileFactory(external_id="premium", attributes={"status": "Premium"})
    free_viewer = ProfileFactory(external_id="free-viewer", attributes={"status": "Free"})
    EventFactory(profile=free_viewer)
    IdentityFactory(profile=free_viewer, type="email")
    ProfileFactory(external_id="free", attributes={"status": "Free"})


@pytest.mark.django_db
@pytest.mark.parametrize(
    "criteria, expected",
    [
        ({"all": [PREMIUM, {"event": "Play Video"}]}, {"premium-viewer"}),
        ({"any": [PREMIUM, {"event": "Play Video"}]}, {"premium-viewer", "premium", "free-viewer"}),
        ({"include": {"event": "Play Video"}, "exclude": PREMIUM}, {"free-viewer"}),
        ({"not": PREMIUM}, {"free-viewer", "free"}),
        ({"not": {"event": "Play Video"}}, {"premium", "free"}),
        ({"all": [{"any": [PREMIUM, FREE]}, {"not": {"event": "Play Video"}}]}, {"premium", "free"}),
        ({"not": {"not": {"all": [FREE]}}}, {"free-viewer", "free"}),
        ({"has_identity": "customer_id"}, {"premium-viewer"}),
        ({"has_identity": "email"}, {"free-viewer"}),
        ({"has_identity": "mobile_number"}, set()),
        ({"include": {"event": "Play Video"}, "exclude": {"has_identity": "email"}}, {"premium-viewer"}),
    ],
)
def test_it_combines_conditions(members, criteria, expected):
    assert matching(criteria) == expected


@pytest.mark.django_db
def test_it_evaluates_many_criteria_together_as_each_alone(members, bookers):
    # Shared, repeated and differently windowed event conditions, counts that zero events satisfy, negations.
    EventFactory(profile__external_id="old-viewer", occurred_at=ago(days=20), attributes={"destination": "Rome"})
    cases = [
        {"event": "Play Video"},
        {"event": "Play Video", "in_last_days": 7},
        {"all": [PREMIUM, {"event": "Play Video"}]},
        {"not": {"event": "Play Video"}},
        {"include": {"event": "Play Video"}, "exclude": {"has_identity": "email"}},
        watched("destination", "eq", "rome"),
        {"any": [watched("destination", "ne", "Paris"), booked("eq", 2)]},
        booked("gte", 3),
        booked("eq", 0),
        booked("lt", 2),
        {"all": [booked("gte", 1), {"not": booked("gt", 3)}]},
        {"any": [FREE, booked("eq", 4)]},
        {"has_identity": "customer_id"},
    ]
    expected = [matching(criteria) for criteria in cases]
    assert expected[0] == {"premium-viewer", "free-viewer", "old-viewer"}
    assert expected[1] == {"premium-viewer", "free-viewer"}

    assert together(cases) == expected


# --- Validation ---------------------------------------------------------------------------------

OPS = "eq, ne, contains, gt, gte, lt, lte, in, exists"
SHAPES = "all, any, include, not, event, user, has_identity"
IDENTITY_TYPES = (
    "email, customer_id, mobile_number, ios_idfa, ios_idfv, android_aaid, android_uuid, "
    "facebook_id, google_id, microsoft_id, other"
)


def nested_not(levels: int) -> dict:
    node = PREMIUM
    for _ in range(levels):
        node = {"not": node}
    return node


@pytest.mark.parametrize(
    "criteria, message",
    [
        ([PREMIUM], "criteria: expected an object"),
        ({}, f"criteria: expected one of the keys {SHAPES}"),
        ({"evnt": "Play Video"}, f"criteria: unknown key 'evnt'; expected one of {SHAPES}"),
        (
            {"all": [PREMIUM], "user": "age"},
            f"criteria: has both 'all' and 'user'; expected exactly one of {SHAPES}",
        ),
        ({"all": []}, "all: expected a non-empty list"),
        ({"any": PREMIUM}, "any: expected a non-empty list"),
        ({"any": [{"all": ["Premium"]}]}, "any[0].all[0]: expected an object"),
        (
            {"all": [PREMIUM, user("status", "equals", "Premium")]},
            f"all[1].op: unknown operator 'equals'; expected one of {OPS}",
        ),
        (
            {
                "all": [
                    {
                        "event": "Play Video",
                        "where": [
                            {"attribute": "category", "op": "eq", "value": "Trailer"},
                            {"attribute": "duration", "op": "gt", "value": "60"},
                        ],
                    }
                ]
            },
            "all[0].where[1].value: must be a number for 'gt'",
        ),
        (
            {"include": {"any": [PREMIUM, FREE, {"event": ""}]}, "exclude": FREE},
            "include.any[2].event: must be a non-empty string",
        ),
        ({"include": PREMIUM}, "criteria: missing key 'exclude'"),
        (
            {"event": "Play Video", "foo": 1},
            "criteria: unknown key 'foo'; expected one of event, where, in_last_days, count",
        ),
        (
            {"event": "Play Video", "where": [{"attribute": "a", "operator": "eq", "value": 1}]},
            "where[0]: unknown key 'operator'; expected one of attribute, op, value",
        ),
        ({"event": "Play Video", "where": {"attribute": "a"}}, "where: expected a list"),
        ({"user": "status", "op": "eq"}, "criteria: missing key 'value'"),
        (user("", "eq", "x"), "user: must be a non-empty string"),
        (user('say "hi"', "eq", "x"), 'user: must not contain a double quote (")'),
        (user("age", "gt", True), "value: must be a number for 'gt'"),
        (user("status", "eq", None), "value: must be a string, number or boolean for 'eq'"),
        (user("status", "contains", 3), "value: must be a string for 'contains'"),
        (user("status", "exists", "yes"), "value: must be true or false for 'exists'"),
        (user("status", "in", []), "value: must be a non-empty list of strings or numbers for 'in'"),
        (user("status", "in", ["Gold", None]), "value[1]: must be a string or number"),
        (
            {"has_identity": "emial"},
            f"has_identity: unknown identity type 'emial'; expected one of {IDENTITY_TYPES}",
        ),
        ({"event": "Play Video", "in_last_days": 0}, "in_last_days: must be a positive whole number of days"),
        (
            {"event": "Play Video", "in_last_days": 2.5},
            "in_last_days: must be a positive whole number of days",
        ),
        ({"event": "Play Video", "in_last_days": 3651}, "in_last_days: must be at most 3650 days"),
        (
            {"event": "Play Video", "count": {"op": "ne", "value": 1}},
            "count.op: unknown count operator 'ne'; expected one of eq, gt, gte, lt, lte",
        ),
        (
            {"event": "Play Video", "count": {"op": "gte", "value": -1}},
            "count.value: must be a non-negative whole number",
        ),
        ({"event": "Play Video", "count": {"op": "gte"}}, "count: missing key 'value'"),
        (nested_not(20), ".".join(["not"] * 20) + ": nested too deep (at most 20 levels)"),
        ({"any": [PREMIUM] * 201}, "criteria: too many conditions (at most 200)"),
    ],
)
def test_it_rejects_invalid_criteria(criteria, message):
    with pytest.raises(CriteriaError) as caught:
        validate(criteria)

    assert str(caught.value) == message
    assert f"{caught.value.path}: {caught.value.reason}" == message
    assert isinstance(caught.value, ValueError)


def test_it_accepts_criteria_at_the_limits():
    assert validate(nested_not(19)) is None
    assert validate({"any": [PREMIUM] * 200}) is None
    assert (
        validate({"event": "Play Video", "where": [], "in_last_days": 3650, "count": {"op": "eq", "value": 0}}) is None
    )


def test_it_validates_before_compiling():
    with pytest.raises(CriteriaError, match=r"^all\[1\]\.op: unknown operator 'equals'"):
        compile_criteria({"all": [PREMIUM, user("status", "equals", "Premium")]})


# --- Description --------------------------------------------------------------------------------


def test_it_describes_criteria_in_one_line():
    assert describe(PARISIANS) == (
        'Play Video (category = "Destination Intro", destination = "Paris") in the last 3 days '
        'AND user status = "Premium"'
    )
    assert describe(
        {
            "include": {"any": [{"event": "Book Trip", "count": {"op": "gte", "value": 3}}, user("age", "lt", 30)]},
            "exclude": {"all": [{"has_identity": "email"}, user("vip", "exists", False)]},
        }
    ) == (
        "(Book Trip at least 3 times in the last 30 days OR user age < 30) "
        "AND NOT (has identity email AND user has no vip)"
    )
    assert describe({"not": {"event": "Search", "in_last_days": 1, "count": {"op": "eq", "value": 0}}}) == (
        "NOT Search 0 times in the last day"
    )


def test_it_describes_invalid_criteria_without_raising():
    assert describe({"all": []}) == "invalid criteria (all: expected a non-empty list)"
