"""The sandbox's `answer` and `huge` faults: what a proxy, a captive portal or a broken partner answers."""

import pytest
import requests

from outputs.sandbox.client import SandboxError

from .conftest import MC_KEY


def inject(client, **spec):
    return client._call("POST", "faults", spec)


def _ping(demo):
    return requests.get(f"{demo['mailchimp']['base_url']}/ping", auth=("x", MC_KEY), timeout=5)


def test_it_answers_an_injected_page_with_its_status_content_type_and_headers(demo, client):
    inject(client, partner="mailchimp", kind="answer", status=302, body="<p>moved</p>", headers={"Location": "/x"})

    answer = requests.get(f"{demo['mailchimp']['base_url']}/ping", auth=("x", MC_KEY), timeout=5, allow_redirects=False)

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
