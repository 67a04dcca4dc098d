"""Xandr outputs made before the file format choice keep uploading legacy BSS files after migrating."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("outputs", "0002_credentials_permission")]
AFTER = [("outputs", "0003_xandr_outputs_keep_the_legacy_format")]


@pytest.mark.django_db(transaction=True)
def test_it_keeps_existing_xandr_outputs_on_the_legacy_format():
    executor = MigrationExecutor(connection)
    try:
        executor.migrate(BEFORE)
        Output = executor.loader.project_state(BEFORE).apps.get_model("outputs", "Output")
        old = Output.objects.create(kind="xandr", name="AppNexus", settings={"username": "relay-api", "member_id": 958})
        chosen = Output.objects.create(
            kind="xandr", name="AppNexus 2", settings={"member_id": 1, "file_format": "avro"}
        )
        other = Output.objects.create(kind="mailchimp", name="Mailchimp", settings={"email_type": "html"})

        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())  # leave the database as the other tests expect it

    from outputs.models import Output as Current

    assert Current.objects.get(pk=old.pk).settings == {
        "username": "relay-api",
        "member_id": 958,
        "file_format": "legacy",
    }
    assert Current.objects.get(pk=chosen.pk).settings["file_format"] == "avro"
    assert Current.objects.get(pk=other.pk).settings == {"email_type": "html"}
