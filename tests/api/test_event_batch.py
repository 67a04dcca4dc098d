"""A well-formed batch of events takes the one-pass validation; it must store what the serializer would."""

import pytest

from audiences.api.serializers import EventBatchSerializer, EventInputSerializer
from audiences.models import Event

pytestmark = pytest.mark.django_db

WRONG_FORMAT = (
    "Datetime has wrong format. Use one of these formats instead: YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
)

EVENTS = [
    {"external_id": "  u1 ", "name": "Play Video", "occurred_at": "2026-01-02T03:04:05Z", "extra": "ignored"},
    {
        "external_id": "u2",
        "name": " Book Trip",
        "occurred_at": "2026-01-02T03:04:05+16:55",
        "attributes": {"destination": "Paris", "tags": ["a", {"b": None}], "line": "one\ntwo"},
        "source_id": " e-2 ",
    },
    {"external_id": "u3", "name": "x" * 255, "occurred_at": "2026-01-02 03:04", "attributes": {}},
]


def test_a_well_formed_batch_is_validated_as_the_serializer_validates_each_event():
    one_by_one = EventInputSerializer(data=EVENTS, many=True)
    assert one_by_one.is_valid(), one_by_one.errors

    batch = EventBatchSerializer(data={"events": EVENTS})
    assert batch.is_valid(), batch.errors

    assert batch.validated_data["events"] == [dict(e) for e in one_by_one.validated_data]


@pytest.mark.parametrize(
    "record, errors",
    [
        ({"name": "x" * 256}, {"name": ["Ensure this field has no more than 255 characters."]}),
        ({"external_id": "   "}, {"external_id": ["This field may not be blank."]}),
        ({"occurred_at": "yesterday"}, {"occurred_at": [WRONG_FORMAT]}),
        ({"source_id": None}, {"source_id": ["This field may not be null."]}),
    ],
)
def test_a_bad_event_among_good_ones_is_named_by_its_index(api, record, errors):
    good = {"external_id": "u1", "name": "Play Video", "occurred_at": "2026-01-02T03:04:05Z"}
    response = api.post("/api/v1/events/bulk/", {"events": [good, {**good, **record}]}, format="json")

    assert response.status_code == 400
    assert response.json() == {"events": {"1": errors}}
    assert Event.objects.count() == 0
