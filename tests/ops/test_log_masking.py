"""Identity values and secrets never reach the logs at INFO and above.

The records are read from the handler the settings configure (its stream swapped for a buffer), so the
test sees what an operator's log collector would see, filter and formatter included.
"""

import io
import logging

import pytest

from config.log_filters import MaskIdentities
from tests.outputs.factories import MAILCHIMP_KEY

pytestmark = pytest.mark.django_db


@pytest.fixture
def logs():
    handler = next(h for h in logging.getLogger().handlers if any(isinstance(f, MaskIdentities) for f in h.filters))
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


@pytest.mark.parametrize(
    "value, shown",
    [
        ("alice.smith+promo@example.co.uk", "[email]"),
        ("+1 415-555-0100", "[phone]"),
        ("+33612345678", "[phone]"),
        ("8a1c6f0e-4b2d-4c3a-9e8f-0a1b2c3d4e5f", "[id]"),  # an IDFA / AAID
        ("b5d1f0a7c3e2d4f6a8b0c2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e0f2a4", "[secret]"),  # a hashed email
        (MAILCHIMP_KEY, "[secret]"),  # a Mailchimp API key
        ("ar_k3J9x2_Qm8zT4vL0pR6sW1yN5bC7dF9gH2jK4", "[secret]"),  # one of our API tokens
        ("gAAAAABnX2c1c2VjcmV0c19hdF9yZXN0X2FyZV9mZXJuZXRfdG9rZW5zX2xpa2VfdGhpcw==", "[secret]"),  # Fernet
    ],
)
def test_each_kind_of_identity_and_secret_is_masked(logs, value, shown):
    logging.getLogger("connections").warning("Could not deliver %s to the partner", value)

    line = logs.getvalue()
    assert value not in line
    assert f"Could not deliver {shown} to the partner" in line


def test_authorization_values_and_secret_parameters_are_masked(logs):
    logging.getLogger("outputs").error(
        "Request failed: Authorization: Bearer abcdef1234567890 url=https://x.example/p?api_key=s3cr3tv4lue&page=2"
    )

    line = logs.getvalue()
    assert "abcdef1234567890" not in line and "s3cr3tv4lue" not in line
    assert "Bearer [secret]" in line and "api_key=[secret]&page=2" in line


def test_a_traceback_quoting_an_identity_is_masked(logs):
    try:
        {}["bob@example.org"]
    except KeyError:
        logging.getLogger("connections.drain").exception("Partner module %s failed on a batch", "webhook")

    text = logs.getvalue()
    assert "Partner module webhook failed on a batch" in text
    assert "KeyError: '[email]'" in text
    assert "bob@example.org" not in text


def test_debug_records_are_left_alone_for_a_developers_machine(logs):
    logger = logging.getLogger("connections.debugging")
    logger.setLevel(logging.DEBUG)
    try:
        logger.debug("Payload for carol@example.com")
    finally:
        logger.setLevel(logging.NOTSET)

    assert "Payload for carol@example.com" in logs.getvalue()


def test_djangos_request_log_does_not_show_an_email_used_as_a_profile_id(api, logs):
    response = api.get("/api/v1/profiles/dave@example.com/")

    assert response.status_code == 404
    text = logs.getvalue()
    assert "Not Found: /api/v1/profiles/[email]/" in text
    assert "dave@example.com" not in text


@pytest.mark.parametrize(
    "request_line, shown",
    [
        ("GET /admin/trace/?q=victim%40example.com HTTP/1.1", "GET /admin/trace/?q=[email] HTTP/1.1"),
        ("GET /api/v1/profiles/?phone=%2B14155550100 HTTP/1.1", "GET /api/v1/profiles/?phone=[phone] HTTP/1.1"),
        ("GET /admin/trace/?q=%2b1%20415%20555%200100 HTTP/1.1", "GET /admin/trace/?q=[phone] HTTP/1.1"),
        ("GET /api/v1/profiles/victim%40example.com/ HTTP/1.1", "GET /api/v1/profiles/[email]/ HTTP/1.1"),
        ("GET /admin/trace/?q=victim%2540example.com HTTP/1.1", "GET /admin/trace/?q=[email] HTTP/1.1"),  # twice
    ],
)
def test_a_percent_encoded_identity_in_a_request_line_is_masked(logs, request_line, shown):
    logging.getLogger("django.server").info('"%s" %s %s', request_line, "200", "5120")

    line = logs.getvalue()
    assert "victim" not in line and "4155550100" not in line and "415%20555" not in line
    assert f'"{shown}" 200 5120' in line


def test_a_request_line_with_nothing_to_hide_keeps_its_encoding(logs):
    logging.getLogger("django.server").info('"%s" %s %s', "GET /admin/?q=Potential%20Parisians HTTP/1.1", 200, 10)

    assert '"GET /admin/?q=Potential%20Parisians HTTP/1.1" 200 10' in logs.getvalue()


def test_a_decoded_line_break_cannot_write_a_log_line_of_its_own(logs):
    logging.getLogger("django.server").info('"%s"', "GET /admin/trace/?q=victim%40example.com%0AFAKE%20ERROR HTTP/1.1")

    assert logs.getvalue().count("\n") == 1
    assert '"GET /admin/trace/?q=[email]%0AFAKE ERROR HTTP/1.1"' in logs.getvalue()


def test_a_django_q_worker_keeps_its_name_and_a_key_beside_it_is_still_masked(logs):
    name = "Process-3f0c2a9b8d7e4f6a1b2c3d4e5f6a7b8c"  # django-q2 names its processes with a uuid4's hex
    logging.getLogger("django-q").info("%s ready for work at 16166", name)
    logging.getLogger("django-q").error("%s failed a task with key %s", name, MAILCHIMP_KEY)

    lines = logs.getvalue()
    assert f"{name} ready for work at 16166" in lines
    assert f"{name} failed a task with key [secret]" in lines
    assert MAILCHIMP_KEY not in lines and "Process-[secret]" not in lines
