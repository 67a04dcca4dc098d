"""`make demo` tells the seed's story with the seed's numbers, through a real qcluster and the sandbox."""

import re

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_forwards_50_emails_to_mailchimp_and_80_device_ids_to_appnexus(capsys, monkeypatch):
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        url = f"sqlite:///{s['NAME']}"
    else:
        url = f"postgres://{s['USER']}@{s['HOST']}:{s['PORT'] or 5432}/{s['NAME']}"
    monkeypatch.setenv("DATABASE_URL", url)  # the demo's qcluster must use the test database

    call_command("demo", "--sandbox-port", "0")

    out = capsys.readouterr().out
    # One line per sentence, the partners in the order the sentences name them, one word for what AppNexus takes.
    assert (
        "\n3. Connected: Mailchimp list a1b2c3d4e5 (50 queued, realtime) and AppNexus segment 5678 (80 queued, "
        "uploaded at an interval: the demo asks for it now).\n" in out
    )
    assert out.index("│ Mailchimp (demo)") < out.index("│ AppNexus (demo)")
    assert "device IDs" not in out
    assert "matches 100 users: 50 have an email address, 80 an Android advertising ID." in out
    first, second = out.split("5. Ten members stop qualifying")
    assert re.search(r"AppNexus \(demo\)\s+│ 100\s+│ 80\s+│ 80 adds\s+│ 80 ", first)
    assert "│ AppNexus / Xandr accepts only mobile advertising IDs; 80 of the 100 members have" in first
    assert re.search(r"Mailchimp \(demo\)\s+│ 100\s+│ 50\s+│ 50 adds\s+│ 50 ", first)
    assert re.search(r"AppNexus \(demo\)\s+│ 90\s+│ 70\s+│ 80 adds, 10 removes\s+│ 70 ", second)
    assert re.search(r"Mailchimp \(demo\)\s+│ 90\s+│ 45\s+│ 50 adds, 5 removes\s+│ 45 ", second)

    # The A/B test: each campaign list holds exactly its variant's members with an email; control goes nowhere.
    ab = out.split("6. An A/B test")[1].split("7. Verify and troubleshoot")[0]
    assert ": 'Potential Parisians' split 45/45/10; A and B each connected to a Mailchimp campaign list" in ab
    held = re.findall(
        r"  ([AB]) \(45%\): (\d+) members, (\d+) with an email → Mailchimp list \w+ holds (\d+): (.+)\.", ab
    )
    assert [(name, right) for name, _, _, _, right in held] == [("A", "exactly its members with an email")] + [
        ("B", "exactly its members with an email")
    ]
    assert all(emails == holds for _, _, emails, holds, _ in held)
    control = re.search(r"  control \(10%\): (\d+) members, connected nowhere; 0 of them in either campaign list\.", ab)
    assert control and sum(int(size) for _, size, *_ in held) + int(control[1]) == 90

    verified = out.split("7. Verify and troubleshoot")[1]
    assert re.search(r"'Potential Parisians' → 'Mailchimp \(demo\)'\s+│ ok\s+│ ok: credentials, destination,", verified)
    assert re.search(r"'Potential Parisians' → 'AppNexus \(demo\)'\s+│ ok\s+│ ok: credentials, segment,", verified)
    assert re.search(
        r"\n'Potential Parisians' → 'Mailchimp \(demo\)' \(ID \d+\): The audience matches 90 users\. 45 have an "
        r"email address; Mailchimp accepts only email addresses, so Mailchimp receives 45\. Mailchimp reports 45\.\n",
        verified,
    )
    assert re.search(
        r"\n'Potential Parisians' → 'AppNexus \(demo\)' \(ID \d+\): The audience matches 90 users\. 70 have an "
        r"Android advertising ID; AppNexus / Xandr accepts only mobile advertising IDs, so AppNexus / Xandr "
        r"receives 70\.\n",
        verified,
    )
