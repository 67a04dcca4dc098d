"""The indexes a batch's re-evaluation reads by profile (issue 16: ingest under many audiences).

At 1,000,000 profiles and 50 audiences, a 5,000-event batch read its ~21,000 memberships from 30,000 heap pages
through a profile-only index, and its events through the events' profile-only index, filtering a third of them
away by name and time. These pin the shape that reads both from indexes.
"""

import pytest
from django.db import connection

from audiences.models import Event, Membership

pytestmark = pytest.mark.django_db


def index_columns(model) -> list[list[str]]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, model._meta.db_table)
    return [c["columns"] for c in found.values() if c["index"] and not c["primary_key"]]


def test_memberships_are_found_by_profile_with_their_audience_in_the_same_index():
    assert ["profile_id", "audience_id"] in index_columns(Membership)
    assert ["profile_id"] not in index_columns(Membership)


def test_events_have_one_index_leading_with_the_profile_the_one_that_also_holds_name_and_time():
    leading = [columns for columns in index_columns(Event) if columns[0] == "profile_id"]
    assert leading == [["profile_id", "name", "occurred_at"]]
