"""The size funnel against the partner sandbox: every step's count, what it lost and why, in words."""

import datetime as dt

import pytest
from django.utils import timezone

from audiences.models import Audience, Identity, Membership, Profile
from connections import services
from connections.drain import drain
from connections.funnel import compute
from connections.models import Connection, OutboxMessage
from outputs.models import Output
from tests.connections.factories import StaticAudienceFactory, sandbox_output
from tests.outputs.factories import LIST_ID

XANDR_USER, XANDR_PASSWORD, MEMBER, SEGMENT = "relay-api", "xandr-s3cret-pass", 1234, 5678


def email(i):
    return f"u{i}@example.com"


def aaid(i):
    return f"00000000-0000-4000-8000-{i:012d}"


def audience_of(n, with_email=(), with_aaid=(), name="Potential Parisians", start=0):
    """An audience of `n` profiles; profile i has email(start + i) if i is in `with_email`, likewise an AAID."""
    audience = StaticAudienceFactory(name=name)
    profiles = Profile.objects.bulk_create(Profile(external_id=f"{name}-{i}") for i in range(n))
    Identity.objects.bulk_create(
        [Identity(profile=profiles[i], type="email", value=email(start + i)) for i in with_email]
        + [Identity(profile=profiles[i], type="android_aaid", value=aaid(start + i)) for i in with_aaid]
    )
    Membership.objects.bulk_create(Membership(audience=audience, profile=p, since=timezone.now()) for p in profiles)
    Audience.objects.filter(pk=audience.pk).update(size=n)
    return audience, profiles


def steps(funnel):
    return [(s.name, s.count, s.lost, s.reason) for s in funnel.steps]


def xandr_output(sandbox):
    sandbox.xandr_account(XANDR_USER, XANDR_PASSWORD, MEMBER)
    sandbox.xandr_segment(MEMBER, SEGMENT)
    settings = {"username": XANDR_USER, "member_id": MEMBER}
    out = Output(kind="xandr", name="AppNexus", base_url=sandbox.xandr_url(), settings=settings)
    out.set_secrets({"password": XANDR_PASSWORD})
    out.save()
    return out


@pytest.mark.django_db(transaction=True)
def test_it_explains_the_seeds_example_for_mailchimp_and_appnexus(sandbox):
    # 100 users: u0…u49 have an email, u20…u99 an Android advertising ID (30 have both).
    audience, _ = audience_of(100, with_email=range(50), with_aaid=range(20, 100))
    to_mailchimp = services.connect(audience, sandbox_output(sandbox), {"list_id": LIST_ID})
    to_appnexus = services.connect(audience, xandr_output(sandbox), {"segment_id": SEGMENT})
    drain(to_mailchimp.pk)
    drain(to_appnexus.pk)

    mailchimp, appnexus = compute(to_mailchimp), compute(to_appnexus)

    assert steps(mailchimp) == [
        ("audience members", 100, 0, "The audience matches 100 users."),
        (
            "members with an accepted identity",
            50,
            50,
            "50 have an email address; Mailchimp accepts only email addresses, so Mailchimp receives 50.",
        ),
        (
            "identities valid after normalization",
            50,
            0,
            "50 identities, all normalized and validated when they arrived.",
        ),
        ("forwarded", 50, 0, "50 sent to Mailchimp."),
        ("accepted by the partner", 50, 0, "Mailchimp accepted 50."),
        ("partner's own count", 50, 0, "Mailchimp reports 50."),
    ]
    assert mailchimp.summary == (
        "The audience matches 100 users. 50 have an email address; Mailchimp accepts only email addresses, "
        "so Mailchimp receives 50. Mailchimp reports 50."
    )
    assert steps(appnexus) == [
        ("audience members", 100, 0, "The audience matches 100 users."),
        (
            "members with an accepted identity",
            80,
            20,
            "80 have an Android advertising ID; AppNexus / Xandr accepts only mobile advertising IDs, "
            "so AppNexus / Xandr receives 80.",
        ),
        (
            "identities valid after normalization",
            80,
            0,
            "80 identities, all normalized and validated when they arrived.",
        ),
        ("forwarded", 80, 0, "80 sent to AppNexus / Xandr."),
        ("accepted by the partner", 80, 0, "AppNexus / Xandr accepted 80."),
        ("partner's own count", None, 0, "AppNexus / Xandr does not report a count."),
    ]
    assert appnexus.summary == (
        "The audience matches 100 users. 80 have an Android advertising ID; AppNexus / Xandr accepts only mobile "
        "advertising IDs, so AppNexus / Xandr receives 80."
    )
    assert sandbox.xandr_segment_state(SEGMENT)["count"] == 80  # what the funnel says went, went
    assert mailchimp.as_dict()["steps"][1] == {
        "name": "members with an accepted identity",
        "count": 50,
        "lost": 50,
        "reason": "50 have an email address; Mailchimp accepts only email addresses, so Mailchimp receives 50.",
    }


@pytest.mark.django_db
def test_it_counts_waiting_messages_as_not_yet_forwarded(sandbox):
    audience, _ = audience_of(3, with_email=range(3))
    conn = services.connect(audience, sandbox_output(sandbox), {"list_id": LIST_ID})

    funnel = compute(conn)

    assert steps(funnel)[3:] == [
        ("forwarded", 0, 3, "0 sent to Mailchimp; 3 waiting to be sent."),
        ("accepted by the partner", 0, 0, "Mailchimp accepted 0."),
        ("partner's own count", 0, 0, "Mailchimp reports 0."),
    ]
    assert funnel.summary == (
        "The audience matches 3 users. 3 have an email address; Mailchimp accepts only email addresses, so "
        "Mailchimp receives 3. 0 sent to Mailchimp; 3 waiting to be sent. Mailchimp reports 0."
    )


@pytest.mark.django_db(transaction=True)
def test_it_shows_rejected_and_failed_messages_where_they_were_lost(sandbox, settings):
    settings.RETRY_WINDOW_HOURS = 1
    audience, _ = audience_of(5, with_email=range(5))
    conn = services.connect(audience, sandbox_output(sandbox), {"list_id": LIST_ID})
    messages = OutboxMessage.objects.filter(connection=conn)
    # u4's message is past the retry window when Mailchimp has a server error: it gives up; the others retry.
    messages.filter(value=email(4)).update(created_at=timezone.now() - dt.timedelta(hours=2))
    sandbox.fault("mailchimp", "status", path="/lists/", status=503)
    assert drain(conn.pk).failed == 1
    # On the retry, Mailchimp refuses u1.
    sandbox.mailchimp_rejection(email(1), "fake")
    messages.filter(state="pending").update(next_attempt_at=timezone.now())
    assert drain(conn.pk).rejected == 1

    funnel = compute(conn)

    assert steps(funnel)[3:] == [
        ("forwarded", 4, 1, "4 sent to Mailchimp; 1 gave up after the retry window."),
        (
            "accepted by the partner",
            3,
            1,
            "Mailchimp accepted 3 and refused 1 (see the connection's rejected messages).",
        ),
        ("partner's own count", 3, 0, "Mailchimp reports 3."),
    ]
    assert funnel.summary == (
        "The audience matches 5 users. 5 have an email address; Mailchimp accepts only email addresses, so "
        "Mailchimp receives 5. 4 sent to Mailchimp; 1 gave up after the retry window. Mailchimp accepted 3 and "
        "refused 1 (see the connection's rejected messages). Mailchimp reports 3."
    )


@pytest.mark.django_db(transaction=True)
def test_it_counts_each_identity_of_a_member_with_two_emails(sandbox):
    audience, profiles = audience_of(3, with_email=range(3))
    Identity.objects.create(profile=profiles[0], type="email", value="u0.work@example.com")
    conn = services.connect(audience, sandbox_output(sandbox), {"list_id": LIST_ID})
    drain(conn.pk)

    funnel = compute(conn)

    assert steps(funnel)[1:] == [
        (
            "members with an accepted identity",
            3,
            0,
            "3 have an email address; Mailchimp accepts only email addresses, so Mailchimp receives 3.",
        ),
        (
            "identities valid after normalization",
            4,
            0,
            "The 3 members have 4 identities Mailchimp accepts (some have more than one, and each is sent); all "
            "were normalized and validated when they arrived.",
        ),
        ("forwarded", 4, 0, "4 sent to Mailchimp."),
        ("accepted by the partner", 4, 0, "Mailchimp accepted 4."),
        ("partner's own count", 4, 0, "Mailchimp reports 4."),
    ]


@pytest.mark.django_db
def test_it_says_when_no_member_has_an_identity_the_partner_accepts(sandbox):
    audience, _ = audience_of(1, with_aaid=[0])
    conn = services.connect(audience, sandbox_output(sandbox), {"list_id": LIST_ID})

    funnel = compute(conn, partner_count=None)

    assert steps(funnel)[:3] == [
        ("audience members", 1, 0, "The audience matches 1 user."),
        (
            "members with an accepted identity",
            0,
            1,
            "None has an email address; Mailchimp accepts only email addresses, so Mailchimp receives 0.",
        ),
        ("identities valid after normalization", 0, 0, "0 identities, all normalized and validated when they arrived."),
    ]


@pytest.mark.django_db
def test_it_makes_the_same_few_queries_whatever_the_audience_size(sandbox, django_assert_max_num_queries):
    out = sandbox_output(sandbox)
    queries = {}
    for size, start in ((10, 0), (500, 1000)):
        audience, _ = audience_of(
            size, with_email=range(0, size, 2), with_aaid=range(size), name=f"Size {size}", start=start
        )
        conn = services.connect(audience, out, {"list_id": LIST_ID})
        messages = OutboxMessage.objects.filter(connection=conn)
        messages.update(state="delivered")
        messages.filter(value__in=[email(start), email(start + 2)]).update(state="rejected")
        conn = Connection.objects.get(pk=conn.pk)

        # 6 for the funnel, and 6 to take and give back a request slot around the partner's count (its
        # savepoints included: the test runs in a transaction).
        with django_assert_max_num_queries(12) as captured:
            funnel = compute(conn)

        queries[size] = len(captured)
        half = size // 2
        assert [(s.count, s.lost) for s in funnel.steps] == [
            (size, 0),
            (half, half),
            (half, 0),
            (half, 0),
            (half - 2, 2),
            (0, half - 2),  # nothing reached the sandbox's list: these messages were marked, not sent
        ]
    assert queries[10] == queries[500], queries
