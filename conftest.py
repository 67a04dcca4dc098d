import os

import pytest
from rest_framework.test import APIClient

# A test that never opens the suite's database (a partner's payloads against the sandbox, settings, the demo in
# a scratch SQLite file of its own) runs the same code whichever database the suite is given. CI runs the suite
# on SQLite, then on PostgreSQL: the second run leaves those tests out unless they are marked
# `every_database` (they choose something by the suite's database) or EVERY_TEST_ON_EVERY_DATABASE=1.
ALL_ON_EVERY_DATABASE = os.environ.get("EVERY_TEST_ON_EVERY_DATABASE") == "1"


def _suite_database_is_postgresql() -> bool:
    from django.conf import settings

    return settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def _opens_the_database(item) -> bool:
    # pytest-django's db fixtures (db, transactional_db, admin_client, live_server…) all rest on this one.
    return item.get_closest_marker("django_db") is not None or "_django_db_helper" in item.fixturenames


def pytest_configure(config):
    _flush_postgresql_by_delete()


def _flush_postgresql_by_delete():
    """After each transactional test Django empties every table with one TRUNCATE, which on PostgreSQL gives
    each of ~60 tables and their indexes new files: 0.25 s a test, about two minutes of the PostgreSQL run.
    The tables hold a few rows by then, and DELETE empties them in milliseconds. Django's foreign keys are
    deferred, so the order does not matter inside the flush's transaction. Tests only: production never
    flushes."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncate = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or not tables:
            return truncate(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        return ["SET CONSTRAINTS ALL DEFERRED"] + [f"DELETE FROM {self.quote_name(table)}" for table in tables]

    DatabaseOperations.sql_flush = sql_flush


def pytest_report_header(config):
    if _suite_database_is_postgresql() and not ALL_ON_EVERY_DATABASE:
        return "database: PostgreSQL; tests that open no database run in the SQLite run only"
    return None


def pytest_collection_modifyitems(config, items):
    if ALL_ON_EVERY_DATABASE or not _suite_database_is_postgresql():
        return
    keep, left = [], []
    for item in items:
        runs = _opens_the_database(item) or item.get_closest_marker("every_database") is not None
        (keep if runs else left).append(item)
    if left:
        config.hook.pytest_deselected(items=left)
        items[:] = keep


@pytest.fixture
def api_user(django_user_model):
    """The integration's user; it manages outputs, so it may write their credentials, and it reads members."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("integration", password="not-used")
    user.user_permissions.add(*Permission.objects.filter(codename__in=["change_output_credentials", "view_identities"]))
    return user


def _token_client(user, scope: str) -> APIClient:
    from staff.models import ApiToken

    client = APIClient()
    client.token, plaintext = ApiToken.issue(user, f"tests ({scope})", scope)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


@pytest.fixture
def api(api_user):
    """An API client authenticated with a real write-scoped token, as an integration would be."""
    return _token_client(api_user, "write")


@pytest.fixture
def read_api(api_user):
    """The same user through a read-only token."""
    return _token_client(api_user, "read")


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    """API throttle counts live in the cache, which outlives a test: each test starts with none."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _queued_drains_never_start():
    """No worker runs here: a drain a test queues (connect, fan-out) stays queued, and a drain the test runs itself
    would hand its worker over to it once both are a second old. Tests of the hand-over set it lower.

    override_settings rather than the `settings` fixture: a test may parametrize an argument of that name."""
    from django.test import override_settings

    with override_settings(DRAIN_HANDOVER_SECONDS=600):
        yield


@pytest.fixture(scope="session")
def _sandbox_server():
    from outputs.sandbox.server import PartnerSandbox

    server = PartnerSandbox()
    server.start("127.0.0.1", 0)
    yield server
    server.stop()


@pytest.fixture
def sandbox(_sandbox_server):
    """The partner sandbox on a free port of 127.0.0.1, emptied before each test (real HTTP)."""
    from outputs.sandbox.client import SandboxClient

    client = SandboxClient(_sandbox_server.url)
    client.url = _sandbox_server.url
    client.reset()
    return client
