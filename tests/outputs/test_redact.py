"""What a delivery record keeps of a partner's answer: secrets in base64, however short the run that holds them.

`redact.secrets` decodes only the runs of base64 long enough to hold a secret (a Mailchimp answer holds hundreds
of short ones, member IDs and hashes); these pin the boundary, where a run is exactly as long as its secret's
encoding."""

import base64

import pytest

from outputs.partners import redact

# 9 bytes encode to 12 characters without padding; 10 bytes to 14 and "==".
SECRETS = ["k3y-9byt3", "s3cr3t-k3y"]


@pytest.mark.parametrize("secret", SECRETS)
def test_it_masks_a_secret_encoded_in_the_shortest_run_that_holds_it(secret):
    encoded = base64.b64encode(secret.encode()).decode()

    shown = redact.secrets(f"Authorization: Basic {encoded} was refused", secret)

    assert shown == f"Authorization: Basic {redact.SECRET} was refused"


@pytest.mark.parametrize("secret", SECRETS)
def test_it_masks_a_secret_in_url_safe_base64_inside_a_longer_run(secret):
    encoded = base64.urlsafe_b64encode(f"relay:{secret}".encode()).decode()

    assert redact.secrets(f"token={encoded}", secret, mark="…") == "token=…"


def test_it_leaves_runs_too_short_to_hold_a_secret_as_they_are():
    answer = '{"id": "9e107d9d372bb6826bd81d3542a419d6", "web_id": "abcdEFGH12", "list_id": "a1b2c3d4e5"}'

    assert redact.secrets(answer, "0123456789abcdef0123456789abcdef-us6") == answer
