"""Bad input at every API door that reads outside data: a 4xx naming the field and why, and nothing written."""

import datetime as dt
import json

import pytest
from django.utils import timezone

from audiences.models import Event, Identity, Membership, Profile
from connections.models import OutboxMessage
from tests.audiences.factories import AudienceFactory, IdentityFactory, ProfileFactory
from tests.connections.factories import ConnectionFactory

pytestmark = pytest.mark.django_db

PREMIUM = {"user": "status", "op": "eq", "value": "Premium"}
# A record that would be written, join the connected audience and queue a message for the partner.
GOOD_PROFILE = {
    "external_id": "fine",
    "attributes": {"status": "Premium"},
    "identities": [{"type": "email", "value": "fine@example.com"}],
}
GOOD_EVENT = {"external_id": "fine", "name": "purchase", "occurred_at": "2026-01-02T03:04:05Z", "source_id": "e-1"}


@pytest.fixture
def world():
    """A rule-based audience connected to a partner, with one member: any write would show in the counts."""
    audience = AudienceFactory(criteria=PREMIUM)
    ConnectionFactory(audience=audience)
    known = ProfileFactory(external_id="known", attributes={"status": "Premium"})
    IdentityFactory(profile=known, type="email", value="known@example.com")
    return audience


def counts():
    models = (Profile, Identity, Event, Membership, OutboxMessage)
    return {model.__name__: model.objects.count() for model in models}


def paths(errors, prefix=""):
    """DRF's nested errors as `{"profiles[3].identities[0].value": [...]}`."""
    if isinstance(errors, list):
        return {prefix: errors}
    flat = {}
    for key, value in errors.items():
        where = f"{prefix}[{key}]" if key.isdigit() else (f"{prefix}.{key}" if prefix else key)
        flat.update(paths(value, where))
    return flat


def post_json(api, url, body):
    """`body` as JSON with every non-ASCII character escaped: a lone surrogate travels as `\\ud800`, as in JSON."""
    return api.post(url, json.dumps(body), content_type="application/json")


def post_profiles(api, *profiles):
    return api.post("/api/v1/profiles/bulk/", {"profiles": [*profiles]}, format="json")


def test_the_good_record_alone_is_written_and_queued_for_the_partner(api, world):
    before = counts()
    assert post_profiles(api, GOOD_PROFILE).status_code == 200
    after = counts()
    assert after["Profile"] == before["Profile"] + 1
    assert after["OutboxMessage"] > before["OutboxMessage"]


@pytest.mark.parametrize(
    ("body", "sentence"),
    [
        ("{not json", "JSON parse error - Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ('{"profiles": [', "JSON parse error - Expecting value: line 1 column 15 (char 14)"),
        (b"\xff\xfe", "JSON parse error - 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"),
        ("NaN", "JSON parse error - Out of range float values are not JSON compliant: 'NaN'"),
    ],
)
def test_a_body_that_is_not_json_is_a_400_with_a_sentence(api, world, body, sentence):
    before = counts()
    response = api.post("/api/v1/profiles/bulk/", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"detail": sentence}
    assert counts() == before


def test_a_body_of_another_content_type_is_a_415(api, world):
    response = api.post("/api/v1/events/bulk/", "external_id,name\nu1,x\n", content_type="text/csv")

    assert response.status_code == 415
    assert response.json() == {"detail": 'Unsupported media type "text/csv" in request.'}


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ([GOOD_PROFILE], {"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
        ({"profiles": GOOD_PROFILE}, {"profiles.non_field_errors": ['Expected a list of items but got type "dict".']}),
        ({"profiles": []}, {"profiles.non_field_errors": ["This list may not be empty."]}),
        (
            {"profiles": [GOOD_PROFILE, "u2"]},
            {"profiles[1].non_field_errors": ["Invalid data. Expected a dictionary, but got str."]},
        ),
    ],
)
def test_a_batch_of_the_wrong_shape_is_a_400_naming_the_field(api, world, body, errors):
    before = counts()
    response = api.post("/api/v1/profiles/bulk/", body, format="json")

    assert response.status_code == 400
    assert paths(response.json()) == errors
    assert counts() == before


@pytest.mark.parametrize(
    ("record", "errors"),
    [
        ({"external_id": None}, {"profiles[1].external_id": ["This field may not be null."]}),
        ({"external_id": ["u2"]}, {"profiles[1].external_id": ["Not a valid string."]}),
        (
            {"external_id": "x" * 256},
            {"profiles[1].external_id": ["Ensure this field has no more than 255 characters."]},
        ),
        (
            {"external_id": "u2", "attributes": "Premium"},
            {"profiles[1].attributes": ['Expected a dictionary of items but got type "str".']},
        ),
        (
            {"external_id": "u2", "identities": {"type": "email"}},
            {"profiles[1].identities.non_field_errors": ['Expected a list of items but got type "dict".']},
        ),
        (
            {"external_id": "u2", "identities": [{"type": "email", "value": "a@example.com"}, {"type": "email"}]},
            {"profiles[1].identities[1].value": ["This field is required."]},
        ),
        (
            {"external_id": "u2", "identities": [{"type": "email", "value": {"a": 1}}]},
            {"profiles[1].identities[0].value": ["Not a valid string."]},
        ),
        (
            {"external_id": "u2", "identities": [{"type": "mobile_number", "value": "call me"}]},
            {"profiles[1].identities[0].value": ["'call me' is not a phone number"]},
        ),
    ],
)
def test_a_record_with_a_wrong_type_is_a_400_naming_its_path_and_nothing_is_written(api, world, record, errors):
    before = counts()
    response = post_profiles(api, GOOD_PROFILE, record)

    assert response.status_code == 400
    assert paths(response.json()) == errors
    assert counts() == before


@pytest.mark.parametrize(
    ("record", "errors"),
    [
        (
            {"name": "x"},
            {
                "events[1].external_id": ["This field is required."],
                "events[1].occurred_at": ["This field is required."],
            },
        ),
        (
            {**GOOD_EVENT, "source_id": "e-2", "occurred_at": "yesterday"},
            {
                "events[1].occurred_at": [
                    "Datetime has wrong format. Use one of these formats instead: "
                    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
                ]
            },
        ),
        (
            {**GOOD_EVENT, "source_id": "e-2", "attributes": [1]},
            {"events[1].attributes": ['Expected a dictionary of items but got type "list".']},
        ),
        (
            {**GOOD_EVENT, "source_id": "e-2", "name": "buy\x1b[2J"},
            {"events[1].name": ["must not contain control characters"]},
        ),
    ],
)
def test_a_bad_event_is_a_400_naming_its_path_and_no_event_is_stored(api, world, record, errors):
    before = counts()
    response = api.post("/api/v1/events/bulk/", {"events": [GOOD_EVENT, record]}, format="json")

    assert response.status_code == 400
    assert paths(response.json()) == errors
    assert counts() == before


def test_more_records_than_bulk_max_records_is_a_400_naming_the_limit(api, world, settings):
    settings.BULK_MAX_RECORDS = 5
    before = counts()
    profiles = [{**GOOD_PROFILE, "external_id": f"u{i}", "identities": []} for i in range(6)]
    events = [{**GOOD_EVENT, "source_id": f"e{i}"} for i in range(6)]

    response = api.post("/api/v1/profiles/bulk/", {"profiles": profiles}, format="json")
    assert response.status_code == 400
    assert response.json() == {"profiles": ["at most 5 profiles per request; this one has 6"]}
    response = api.post("/api/v1/events/bulk/", {"events": events}, format="json")
    assert response.status_code == 400
    assert response.json() == {"events": ["at most 5 events per request; this one has 6"]}
    assert counts() == before
    assert post_profiles(api, *profiles[:5]).status_code == 200


def test_a_body_over_data_upload_max_memory_size_is_a_413_naming_the_limit(api, world, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    before = counts()
    profiles = [{**GOOD_PROFILE, "external_id": f"u{i}", "identities": []} for i in range(40)]

    for url, body in [("/api/v1/profiles/bulk/", {"profiles": profiles}), ("/api/v1/audiences/", {"name": "x" * 3000})]:
        response = api.post(url, body, format="json")
        assert response.status_code == 413
        assert response.json() == {
            "detail": "The request body is larger than the 2000 bytes accepted; send fewer records per request."
        }
    assert counts() == before


def test_a_profile_twice_in_one_batch_is_a_400_naming_both_indexes(api, world):
    before = counts()
    response = post_profiles(api, GOOD_PROFILE, {"external_id": "u2"}, {**GOOD_PROFILE, "identities": []})

    assert response.status_code == 400
    assert paths(response.json()) == {
        "profiles[2].external_id": ["'fine' appears twice in this batch (first at index 0)"]
    }
    assert counts() == before


def test_an_event_id_twice_in_one_batch_is_a_400_naming_both_indexes(api, world):
    before = counts()
    response = api.post("/api/v1/events/bulk/", {"events": [GOOD_EVENT, {**GOOD_EVENT, "name": "x"}]}, format="json")

    assert response.status_code == 400
    assert paths(response.json()) == {"events[1].source_id": ["'e-1' appears twice in this batch (first at index 0)"]}
    assert counts() == before


CONTROL = "must not contain control characters"


@pytest.mark.parametrize(
    ("value", "sentence"),
    [
        ("ab\x00cd", "Null characters are not allowed."),
        ("ab\x07cd", CONTROL),
        ("new\nline", CONTROL),
        ("esc\x1b[31m", CONTROL),
        ("del\x7f", CONTROL),
    ],
)
def test_control_characters_in_identity_values_are_refused_naming_the_field(api, world, value, sentence):
    before = counts()
    identities = [{"type": "customer_id", "value": value}]
    response = post_profiles(api, GOOD_PROFILE, {"external_id": "u2", "identities": identities})

    assert response.status_code == 400
    assert paths(response.json()) == {"profiles[1].identities[0].value": [sentence]}
    assert counts() == before


def test_control_characters_in_external_ids_are_refused(api, world):
    response = post_profiles(api, GOOD_PROFILE, {"external_id": "u\x00"}, {"external_id": "u\r\n2"})

    assert response.status_code == 400
    assert paths(response.json()) == {
        "profiles[1].external_id": ["must not contain control characters", "Null characters are not allowed."],
        "profiles[2].external_id": ["must not contain control characters"],
    }


@pytest.mark.parametrize(
    ("attributes", "sentence"),
    [
        ({"note": "a\x00b"}, "note must not contain the NUL character"),
        ({"plan": {"tiers": ["gold", "x\x00"]}}, "plan.tiers[1] must not contain the NUL character"),
        ({"k\x00": 1}, "the key 'k\\x00' must not contain the NUL character"),
        ({"half": "\ud800"}, "half must not contain an unpaired surrogate (U+D800)"),
    ],
)
def test_text_the_database_cannot_store_in_attributes_is_refused_naming_the_key(api, world, attributes, sentence):
    before = counts()
    response = post_json(
        api, "/api/v1/profiles/bulk/", {"profiles": [GOOD_PROFILE, {"external_id": "u2", "attributes": attributes}]}
    )

    assert response.status_code == 400
    assert paths(response.json()) == {"profiles[1].attributes": [sentence]}
    assert counts() == before


UNSTORABLE_ATTRIBUTES = [
    ({"note": "a\x00b"}, "note must not contain the NUL character"),
    ({"plan": {"tiers": ["gold", "x\x00"]}}, "plan.tiers[1] must not contain the NUL character"),
    ({"k\x00": 1}, "the key 'k\\x00' must not contain the NUL character"),
    ({"half": "\ud800"}, "half must not contain an unpaired surrogate (U+D800)"),
    ({"fine": "text", "half": "\udc00"}, "half must not contain an unpaired surrogate (U+DC00)"),
]


@pytest.mark.parametrize(("attributes", "sentence"), UNSTORABLE_ATTRIBUTES)
def test_text_the_database_cannot_store_in_event_attributes_is_refused_naming_the_key(api, world, attributes, sentence):
    # Two good events around the bad one: the batch's one-pass check must stop at it, not only at the first.
    events = [
        GOOD_EVENT,
        {**GOOD_EVENT, "source_id": "e-2", "attributes": attributes},
        {**GOOD_EVENT, "source_id": "e-3"},
    ]
    before = counts()
    response = post_json(api, "/api/v1/events/bulk/", {"events": events})

    assert response.status_code == 400
    assert paths(response.json()) == {"events[1].attributes": [sentence]}
    assert counts() == before


def test_event_times_with_any_offset_are_stored_as_the_instant_given(api, world):
    events = [
        {**GOOD_EVENT, "occurred_at": "2026-01-02T03:04:05+05:30"},
        {**GOOD_EVENT, "source_id": "e-2", "occurred_at": "2026-01-02T03:04:05.25-08:00"},
        {**GOOD_EVENT, "source_id": "e-3", "occurred_at": "2026-01-02T03:04:05"},  # naive: the current time zone
    ]
    response = api.post("/api/v1/events/bulk/", {"events": events}, format="json")

    assert response.status_code == 200
    stored = dict(Event.objects.values_list("source_id", "occurred_at"))
    assert {k: v.astimezone(dt.UTC).isoformat() for k, v in stored.items()} == {
        "e-1": "2026-01-01T21:34:05+00:00",
        "e-2": "2026-01-02T11:04:05.250000+00:00",
        "e-3": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.get_current_timezone()).astimezone(dt.UTC).isoformat(),
    }


def test_other_control_characters_in_attributes_are_kept_as_data(api, world):
    response = post_profiles(api, {"external_id": "u2", "attributes": {"address": "1 Main St\nFlat 2\tBack"}})

    assert response.status_code == 200
    assert Profile.objects.get(external_id="u2").attributes == {"address": "1 Main St\nFlat 2\tBack"}


def nested(depth):
    """`{"a": {"a": … 1}}` with `depth` objects."""
    value = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_attributes_deeper_than_attributes_max_depth_are_refused(api, world, settings):
    before = counts()
    assert settings.ATTRIBUTES_MAX_DEPTH == 10

    response = post_profiles(api, GOOD_PROFILE, {"external_id": "u2", "attributes": nested(11)})
    assert response.status_code == 400
    assert paths(response.json()) == {"profiles[1].attributes": ["a.a.a.a.a.a.a.a.a.a is nested deeper than 10 levels"]}
    response = api.post("/api/v1/events/bulk/", {"events": [{**GOOD_EVENT, "attributes": nested(11)}]}, format="json")
    assert response.status_code == 400
    assert paths(response.json()) == {"events[0].attributes": ["a.a.a.a.a.a.a.a.a.a is nested deeper than 10 levels"]}
    assert counts() == before
    assert post_profiles(api, {"external_id": "u2", "attributes": nested(10)}).status_code == 200


def test_a_body_nested_thousands_deep_is_a_400_not_a_crash(api, world):
    before = counts()
    deep = '{"a":' * 5000 + "1" + "}" * 5000
    for url, body in [
        ("/api/v1/profiles/bulk/", '{"profiles": [{"external_id": "u2", "attributes": ' + deep + "}]}"),
        ("/api/v1/audiences/preview/", '{"criteria": ' + deep + "}"),
        ("/api/v1/audiences/", '{"name": "deep", "criteria": ' + deep + "}"),
    ]:
        response = api.post(url, body, content_type="application/json")
        assert response.status_code == 400
        assert response.json() == {"detail": "The JSON body is nested too deeply to read."}
    assert counts() == before


def nested_not(depth):
    node = PREMIUM
    for _ in range(depth - 1):
        node = {"not": node}
    return node


@pytest.mark.parametrize("url", ["/api/v1/audiences/", "/api/v1/audiences/preview/"])
def test_criteria_deeper_than_criteria_max_depth_are_refused(api, world, url):
    before = counts()
    response = api.post(url, {"name": "deep", "criteria": nested_not(21)}, format="json")

    assert response.status_code == 400
    assert response.json() == {"criteria": [".".join(["not"] * 20) + ": nested too deep (at most 20 levels)"]}
    assert counts() == before
    assert api.post(url, {"name": "deep", "criteria": nested_not(20)}, format="json").status_code in (200, 201)


def test_criteria_max_depth_comes_from_the_setting(api, world, settings):
    settings.CRITERIA_MAX_DEPTH = 3
    response = api.post("/api/v1/audiences/preview/", {"criteria": nested_not(4)}, format="json")

    assert response.json() == {"criteria": ["not.not.not: nested too deep (at most 3 levels)"]}


@pytest.mark.parametrize(
    ("criteria", "sentence"),
    [
        ("Premium", "criteria: expected an object"),
        ({"all": {"user": "status"}}, "all: expected a non-empty list"),
        ({"user": 5, "op": "eq", "value": 1}, "user: must be a non-empty string"),
        (
            {"user": "age", "op": 5, "value": 1},
            "op: unknown operator 5; expected one of eq, ne, contains, gt, gte, lt, lte, in, exists",
        ),
        ({"user": "age", "op": "gt", "value": "10"}, "value: must be a number for 'gt'"),
        ({"user": "age", "op": "gt", "value": 10**400}, "value: must be a number for 'gt'"),
        ({"user": "age", "op": "in", "value": [1, None]}, "value[1]: must be a string or number"),
        ({"user": "note", "op": "eq", "value": "a\x00"}, "value: must not contain the NUL character"),
        ({"user": "note", "op": "eq", "value": "\udc00"}, "value: must not contain an unpaired surrogate (U+DC00)"),
        ({"event": "buy", "count": {"op": "lt", "value": 10**30}}, "count.value: must be at most 1000000000"),
        ({"event": "buy", "in_last_days": "30"}, "in_last_days: must be a positive whole number of days"),
    ],
)
def test_criteria_with_wrong_types_are_a_400_with_the_path(api, world, criteria, sentence):
    before = counts()
    for url in ("/api/v1/audiences/", "/api/v1/audiences/preview/"):
        response = post_json(api, url, {"name": "bad", "criteria": criteria})
        assert response.status_code == 400
        assert response.json() == {"criteria": [sentence]}
    assert counts() == before


def test_numbers_beyond_64_bits_in_criteria_are_compared_not_a_crash(api, world):
    for op in ("gt", "eq"):
        response = api.post(
            "/api/v1/audiences/preview/", {"criteria": {"user": "age", "op": op, "value": 10**30}}, format="json"
        )
        assert response.status_code == 200
        assert response.json()["size"] == 0
    criteria = {"user": "age", "op": "in", "value": [10**30, 3]}
    assert api.post("/api/v1/audiences/preview/", {"criteria": criteria}, format="json").status_code == 200


def test_members_change_with_bad_identities_changes_nothing(api, world):
    from tests.connections.factories import StaticAudienceFactory

    audience = StaticAudienceFactory(name="VIP")
    before = counts()
    body = {"external_ids": ["known"], "identities": [{"type": "customer_id", "value": "a\x00"}]}
    response = api.post(f"/api/v1/audiences/{audience.pk}/members/", body, format="json")

    assert response.status_code == 400
    assert paths(response.json()) == {"identities[0].value": ["Null characters are not allowed."]}
    assert counts() == before


def test_the_csv_export_defuses_cells_a_spreadsheet_would_run_as_formulas(api, world):
    import csv
    import io

    body = {
        "external_id": '=HYPERLINK("http://evil.example","x")',
        "attributes": {"status": "Premium"},
        "identities": [
            {"type": "email", "value": "jane@example.com"},
            {"type": "customer_id", "value": "@SUM(1+1)"},
            {"type": "other", "value": "-2+3"},
            {"type": "mobile_number", "value": "+1 415 555 0123"},
            {"type": "google_id", "value": "+cmd|' /C calc'!A0"},
        ],
    }
    assert post_profiles(api, body).status_code == 200

    response = api.get(f"/api/v1/audiences/{world.pk}/export/")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    [row] = rows
    assert row["external_id"] == '\'=HYPERLINK("http://evil.example","x")'
    assert row["customer_id"] == "'@SUM(1+1)"
    assert row["other"] == "'-2+3"
    assert row["google_id"] == "'+cmd|' /C calc'!A0"
    assert row["mobile_number"] == "+14155550123"  # a phone number holds no formula: written as it is
    assert row["email"] == "jane@example.com"


def test_an_event_time_with_an_offset_beyond_postgresqls_is_stored_in_utc(api, world):
    event = {**GOOD_EVENT, "occurred_at": "2026-01-02T03:04:05+16:55"}
    response = api.post("/api/v1/events/bulk/", {"events": [event]}, format="json")

    assert response.status_code == 200
    assert Event.objects.get().occurred_at.isoformat() == "2026-01-01T10:09:05+00:00"


def test_an_event_time_out_of_range_in_utc_is_a_400(api, world):
    before = counts()
    event = {**GOOD_EVENT, "occurred_at": "0001-01-01T00:00:00+05:00"}
    response = api.post("/api/v1/events/bulk/", {"events": [event]}, format="json")

    assert response.status_code == 400
    assert paths(response.json()) == {"events[0].occurred_at": ["Datetime value out of range."]}
    assert counts() == before


@pytest.mark.parametrize(
    "url",
    ["/api/v1/profiles/?updated_since={}", "/api/v1/events/?since={}", "/api/v1/connections/1/deliveries/?since={}"],
)
def test_time_filters_take_any_offset_and_refuse_times_out_of_range(api, world, url):
    from connections.models import Connection

    url = url.replace("/1/", f"/{Connection.objects.get().pk}/")
    assert api.get(url.format("2026-01-02T03:04:05%2B16:55")).status_code == 200
    response = api.get(url.format("0001-01-01T00:00:00%2B05:00"))
    assert response.status_code == 400
    [field] = response.json()
    assert response.json()[field] == ["Enter a date and time between the years 1 and 9999 in UTC."]


def test_an_id_filter_past_any_id_is_a_name_that_matches_nothing(api, world):
    for value in ["-4.5e%2B23", "99999999999999999999999", "%C2%B2"]:  # "²" is a digit to Python, not an ID
        response = api.get(f"/api/v1/connections/?output={value}")

        assert response.status_code == 200
        assert response.json()["results"] == []


@pytest.mark.parametrize(
    ("value", "sentence"),
    [
        (-832, "Ensure this value is greater than or equal to 1."),
        (2**31, "Ensure this value is less than or equal to 2147483647."),
    ],
)
def test_a_connection_interval_out_of_the_columns_range_is_a_400(api, world, value, sentence):
    from connections.models import Connection

    connection = Connection.objects.get()
    response = api.patch(f"/api/v1/connections/{connection.pk}/", {"interval_messages": value}, format="json")

    assert response.status_code == 400
    assert response.json() == {"interval_messages": [sentence]}
    connection.refresh_from_db()
    assert connection.interval_messages is None


def test_nul_in_output_or_connection_settings_is_a_400_naming_the_setting(api, world):
    from connections.models import Connection
    from outputs.models import Output

    before = (Output.objects.count(), list(Connection.objects.values_list("settings", flat=True)))
    output = {"kind": "xandr", "name": "Xandr", "settings": {"username": "a\x00b", "password": "p", "member_id": 1}}
    response = post_json(api, "/api/v1/outputs/", output)
    assert response.status_code == 400
    assert response.json() == {"settings": ["username must not contain the NUL character"]}

    connection = Connection.objects.get()
    response = api.generic(
        "PATCH",
        f"/api/v1/connections/{connection.pk}/",
        json.dumps({"settings": {"list_id": "\ud800"}}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json() == {"settings": ["list_id must not contain an unpaired surrogate (U+D800)"]}
    assert (Output.objects.count(), list(Connection.objects.values_list("settings", flat=True))) == before


def test_a_profile_id_with_nul_is_not_found(api, world):
    response = api.get("/api/v1/profiles/a%00b/")

    assert response.status_code == 404
    assert response.json() == {"detail": "No Profile matches the given query."}


def test_an_unknown_api_path_is_a_json_404_naming_the_path(api):
    response = api.get("/api/v1/segments/")

    assert response.status_code == 404
    assert response.json() == {"detail": "There is no API endpoint at /api/v1/segments/; see /api/docs/."}


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_api_path_is_a_json_404_with_debug_on_or_off(api, settings, debug):
    settings.DEBUG = debug

    unknown = api.get("/api/v1/segments/")
    no_slash = api.post("/api/v1/profiles/bulk", {"profiles": []}, format="json")
    outside = api.get("/api/v2/")

    assert (unknown.status_code, unknown["Content-Type"]) == (404, "application/json")
    assert unknown.json() == {"detail": "There is no API endpoint at /api/v1/segments/; see /api/docs/."}
    assert no_slash.status_code == 404
    assert no_slash.json() == {
        "detail": "There is no API endpoint at /api/v1/profiles/bulk: the API's paths end with a slash "
        "(/api/v1/profiles/bulk/)."
    }
    assert outside.json() == {"detail": "There is no API endpoint at /api/v2/; see /api/docs/."}
