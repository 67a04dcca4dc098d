"""The API fuzzed from its own OpenAPI schema: no 5xx, every answer as the schema says, every 4xx says why.

FUZZ_EXAMPLES (default 10) bounds the examples per operation; generation is derandomized, so a failure
repeats. Run: `FUZZ_EXAMPLES=15 .venv/bin/pytest tests/api/test_fuzz.py`.
"""

import json
import os
import zlib

import hypothesis
import pytest
import schemathesis
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from hypothesis import HealthCheck, Phase
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from outputs.partners import registry
from tests.audiences.factories import AudienceFactory, IdentityFactory, ProfileFactory
from tests.connections.factories import ConnectionFactory, StaticAudienceFactory
from tests.outputs.factories import MailchimpOutputFactory

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
CONFIG = schemathesis.config.SchemathesisConfig.from_dict(
    {"phases": {"examples": {"enabled": True}, "fuzzing": {"enabled": True}, "coverage": {"enabled": False}}}
)


def _live_schema() -> dict:
    """The schema /api/schema/ serves, generated in process (the endpoint itself wants a signed-in user)."""
    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document))


schema = schemathesis.openapi.from_dict(_live_schema(), config=CONFIG)
schema.app = WSGIHandler()  # requests go through Django's whole stack in process: middleware, auth, throttle


@schemathesis.check
def four_xx_says_why(ctx, response, case):
    """Every 4xx JSON body names a field or gives a sentence: {"detail": "..."} or {"field": [...]}."""
    if not 400 <= response.status_code < 500:
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith("application/json"), f"a {response.status_code} in {content_type}: {response.text}"
    body = response.json()
    assert isinstance(body, dict) and body, f"a {response.status_code} with an empty or non-object body: {body!r}"
    if "detail" in body:
        assert isinstance(body["detail"], str) and body["detail"].strip(), f"an empty detail: {body!r}"
        return None
    assert _has_reason(body), f"a {response.status_code} naming no field or reason: {body!r}"
    return None


def _has_reason(errors) -> bool:
    if isinstance(errors, str):
        return bool(errors.strip())
    if isinstance(errors, list):
        return bool(errors) and all(_has_reason(e) for e in errors)
    if isinstance(errors, dict):
        return bool(errors) and all(isinstance(k, str) and _has_reason(v) for k, v in errors.items())
    return False


@pytest.fixture
def objects(db):
    """Something for every detail route to find, by the path's first segment: {"audiences": [IDs], ...}."""
    rules = AudienceFactory(criteria={"user": "status", "op": "eq", "value": "Premium"}, name="Premium")
    static = StaticAudienceFactory(name="VIP")
    output = MailchimpOutputFactory()
    connection = ConnectionFactory(audience=static, output=output)
    for n in range(3):
        profile = ProfileFactory(external_id=f"u{n}", attributes={"status": "Premium"})
        IdentityFactory(profile=profile, type="email", value=f"u{n}@example.com")
    return {
        "audiences": [rules.pk, static.pk],
        "connections": [connection.pk],
        "outputs": [output.pk],
        "partners": registry.slugs(),
        "profiles": ["u0", "u1", "u2"],
    }


def _aim_at_real_objects(case, objects) -> None:
    """Generated IDs exist nowhere: point three in four at real objects so the fuzzer reaches past the 404,
    and keep the rest ("1.5", "true", "%C3%83") to check the 404 itself. Chosen by a stable hash: repeatable."""
    for name, value in (case.path_parameters or {}).items():
        choices = objects[case.path.split("/")[3]]
        pick = zlib.crc32(repr(value).encode())
        if pick % 4:
            case.path_parameters[name] = choices[pick % len(choices)]


@pytest.fixture
def quiet_connections(settings):
    """Django closes connections at the end of each request (the test client stops it the same way): inside
    the test's transaction, which holds the fixtures' objects, it must not.

    The throttle is off too: hundreds of requests a minute are the point here, not abuse.
    """
    settings.API_THROTTLE_RATE = ""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.mark.django_db
@schema.parametrize()
@hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_as_its_schema_says(case, api, objects, quiet_connections):
    _aim_at_real_objects(case, objects)
    case.call_and_validate(
        headers={"Authorization": api._credentials["HTTP_AUTHORIZATION"]},
        checks=[not_a_server_error, response_schema_conformance, status_code_conformance, four_xx_says_why],
    )
