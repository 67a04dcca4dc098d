"""The sandbox's `answer` and `huge` faults: what a proxy, a captive portal or a broken partner answers."""

import pytest
import requests

from outputs.sandbox.client import SandboxError
from tests.outputs.factories import MAILCHIMP_KEY


def inject(client, **spec):
    return client._call("POST", "faults", spec)


def _ping(demo):
    return requests.get(f"{demo['mailchimp']['base_url']}/ping", auth=("x", MAILCHIMP_KEY), timeout=5)


def test_it_answers_an_injected_page_with_its_status_content_type_and_headers(demo, client):
    inject(client, partner="mailchimp", kind="answer", status=302, body="<p>moved</p>", headers={"Location": "/x"})

    answer = requests.get(
        f"{demo['mailchimp']['base_url']}/ping", auth=("x", MAILCHIMP_KEY), timeout=5, allow_redirects=False
    )

    assert (answer.status_code, answer.headers["Location"], answer.text) == (302, "/x", "<p>moved</p>")
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    assert _ping(demo).json() == {"health_status": "Everything's Chimpy!"}  # count=1 by default


def test_it_answers_a_huge_body_of_the_size_asked(demo, client):
    inject(client, partner="mailchimp", kind="huge", size=100_000)

    answer = _ping(demo)

    assert (answer.status_code, len(answer.content)) == (200, 100_000)
    assert answer.json()["padding"].startswith("xxx")


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"status": 100}, "'status' must be an HTTP status between 200 and 599, not 100."),
        ({"headers": {"X-Count": 3}}, "'headers' must be an object of header names and string values."),
        ({"body": {"a": 1}}, "'body' must be a string."),
        ({"size": 0}, "'size' must be at least 1, not 0."),
    ],
)
def test_it_refuses_an_answer_fault_it_cannot_use(client, spec, error):
    with pytest.raises(SandboxError) as caught:
        inject(client, partner="mailchimp", kind="answer", **spec)

    assert str(caught.value) == f"POST /_sandbox/faults answered 400: {error}"


# --- answers that break on the way: cut short, stalled, badly compressed -------------------------------------


def _raw_ping(demo):
    """The answer as it comes off the socket, without requests' decoding."""
    return requests.get(f"{demo['mailchimp']['base_url']}/ping", auth=("x", MAILCHIMP_KEY), timeout=5, stream=True)


def test_it_cuts_an_answer_short_and_hangs_up(demo, client):
    inject(client, partner="mailchimp", kind="cut")

    answer = _raw_ping(demo)

    declared = int(answer.headers["Content-Length"])
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
        answer.content  # noqa: B018 - reading is the point
    assert declared > 1000


def test_it_stalls_in_the_middle_of_an_answer(demo, client):
    inject(client, partner="mailchimp", kind="stall", delay=5)

    answer = requests.get(f"{demo['mailchimp']['base_url']}/ping", auth=("x", MAILCHIMP_KEY), timeout=0.5, stream=True)

    assert answer.status_code == 200  # the head came at once …
    with pytest.raises(requests.exceptions.ConnectionError, match="Read timed out"):
        answer.content  # noqa: B018 - … the rest of the body never does


def test_it_sends_a_body_that_is_not_the_gzip_it_declares(demo, client):
    inject(client, partner="mailchimp", kind="bad_gzip")

    answer = _raw_ping(demo)

    assert answer.headers["Content-Encoding"] == "gzip"
    with pytest.raises(requests.exceptions.ContentDecodingError):
        answer.content  # noqa: B018 - reading is the point


@pytest.mark.parametrize(
    ("encoding", "shown"),
    [
        ("json", 'Authorization: Basic eDowMTIz\\np\\u00e4 \\"s'),
        ("json-utf8", 'Authorization: Basic eDowMTIz\\npä \\"s'),
        ("url", "Authorization%3A%20Basic%20eDowMTIz%0Ap%C3%A4%20%22s"),
        ("url-plus", "Authorization%3A+Basic+eDowMTIz%0Ap%C3%A4+%22s"),
    ],
)
def test_it_echoes_what_the_request_carried_in_the_encoding_asked(demo, client, encoding, shown):
    inject(client, partner="webhook", kind="echo", encoding=encoding, body="got {request}")

    answer = requests.post(
        demo["webhook"]["url"], data='pä "s'.encode(), headers={"Authorization": "Basic eDowMTIz"}, timeout=5
    )

    assert (answer.status_code, answer.content.decode()) == (400, f"got {shown}")


def test_it_refuses_an_echo_encoding_it_does_not_know(client):
    with pytest.raises(SandboxError) as caught:
        inject(client, partner="mailchimp", kind="echo", encoding="rot13")

    assert str(caught.value) == (
        "POST /_sandbox/faults answered 400: "
        "'encoding' must be one of json, json-utf8, url, url-plus, raw, not 'rot13'."
    )
