"""Braze connections made before the membership choice keep their array attribute after migrating."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

CONNECTIONS_BEFORE = ("connections", "0005_outputslot_drop_next_request_at")
AFTER = [("connections", "0006_braze_connections_keep_the_array")]


def latest(executor, app):
    """Other apps stay at their latest migration: the models made here must match the tables as they are."""
    return [node for node in executor.loader.graph.leaf_nodes() if node[0] == app]


@pytest.mark.django_db(transaction=True)
def test_it_keeps_existing_braze_connections_on_the_array():
    executor = MigrationExecutor(connection)
    before = [CONNECTIONS_BEFORE, *latest(executor, "audiences"), *latest(executor, "outputs")]
    try:
        executor.migrate(before)
        apps = executor.loader.project_state(before).apps
        Output, Connection = apps.get_model("outputs", "Output"), apps.get_model("connections", "Connection")
        Audience = apps.get_model("audiences", "Audience")
        braze = Output.objects.create(kind="braze", name="Braze", settings={})
        mailchimp = Output.objects.create(kind="mailchimp", name="Mailchimp", settings={})
        audience = Audience.objects.create(name="Potential Parisians", kind="static")
        old = Connection.objects.create(audience=audience, output=braze, settings={"identifier": "email"})
        other = Connection.objects.create(audience=audience, output=mailchimp, settings={"list_id": "a1b2c3d4e5"})

        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())  # leave the database as the other tests expect it

    from connections.models import Connection as Current

    assert Current.objects.get(pk=old.pk).settings == {"identifier": "email", "membership": "array"}
    assert Current.objects.get(pk=other.pk).settings == {"list_id": "a1b2c3d4e5"}
