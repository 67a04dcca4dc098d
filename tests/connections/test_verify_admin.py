"""The admin's Verify action and button, the verification section and size funnel, and the list's column and filter."""

import datetime as dt
import html
import re

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import constants, get_messages
from django.utils import timezone

from connections import funnel, services
from connections.hints import hint
from connections.models import Connection
from tests.connections.factories import ConnectionFactory, StaticAudienceFactory, sandbox_output
from tests.outputs.factories import LIST_ID, MailchimpOutputFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/connections/connection/"
LABEL = "'Potential Parisians' → 'Mailchimp (marketing)'"
MISSING_LIST = "Mailchimp has no list with ID 'nope000000' in this account."
CHECK_THE_LIST_ID = (
    "Check the List ID in the connection settings: in Mailchimp, Audience → Settings → Audience name and defaults "
    "shows it as the Audience ID."
)


@pytest.fixture
def staff(admin_client):
    return admin_client


def said(response) -> list[tuple[int, str]]:
    return [(m.level, str(m)) for m in get_messages(response.wsgi_request)]


def text(response) -> str:
    """The page as a person reads it: tags dropped, entities decoded, whitespace collapsed."""
    assert response.status_code == 200
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())).split())


def test_it_verifies_the_selected_connections_from_the_list_without_a_confirmation(staff, sandbox, parisians):
    output = sandbox_output(sandbox)
    good = services.connect(parisians, output, {"list_id": LIST_ID})
    missing = services.connect(parisians, output, {"list_id": "nope000000"})
    nobody = services.connect(StaticAudienceFactory(name="Nobody yet"), output, {"list_id": LIST_ID})
    services.pause(nobody)

    response = staff.post(LIST, {"action": "verify_selected", "_selected_action": [good.pk, missing.pk, nobody.pk]})

    assert response.status_code == 302
    checks = len(Connection.objects.get(pk=good.pk).verification_checks)
    assert sorted(said(response)) == [
        (constants.SUCCESS, f"Verified {LABEL}: ok (all {checks} checks passed)."),
        (constants.WARNING, "Verified 'Nobody yet' → 'Mailchimp (marketing)': warning (2 checks need attention)."),
        (constants.ERROR, f"Verified {LABEL}: failing (1 check needs attention)."),
    ]
    statuses = dict(Connection.objects.values_list("pk", "verification_status"))
    assert statuses == {good.pk: "ok", missing.pk: "failing", nobody.pk: "warning"}


def test_it_verifies_from_the_change_page_button_and_says_what_it_found(staff, sandbox):
    conn = services.connect(StaticAudienceFactory(name="Nobody yet"), sandbox_output(sandbox), {"list_id": LIST_ID})
    services.pause(conn)
    url = f"{LIST}{conn.pk}/verify/"
    page = staff.get(f"{LIST}{conn.pk}/change/").content.decode()

    response = staff.post(url)

    # Its own form, outside the change form: Enter in a settings field saves, it never verifies.
    assert f'<form method="post" action="{url}">' in page
    assert page.index(f'action="{url}"') < page.index('id="connection_form"')
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}{conn.pk}/change/"
    assert said(response) == [
        (constants.WARNING, "Verified 'Nobody yet' → 'Mailchimp (marketing)': warning (2 checks need attention).")
    ]
    assert Connection.objects.get(pk=conn.pk).verification_status == "warning"
    assert staff.get(url).status_code == 405  # verifying is a POST, never a link a crawler could follow


def test_it_shows_the_status_each_check_with_its_hint_and_the_funnel_on_the_change_page(staff, sandbox, parisians):
    conn = services.connect(parisians, sandbox_output(sandbox), {"list_id": "nope000000"})
    staff.post(f"{LIST}{conn.pk}/verify/")

    page = text(staff.get(f"{LIST}{conn.pk}/change/"))

    assert "Verification Status: failing Verified just now (" in page
    assert f"destination failing {MISSING_LIST} {CHECK_THE_LIST_ID}" in page
    assert "credentials ok Mailchimp accepted the API key (data center us6). –" in page
    steps = funnel.compute(conn, partner_count=None).steps  # the list is missing: no count to ask for
    assert (
        "Size funnel: The audience matches 3 users. 3 have an email address; Mailchimp accepts only email "
        f"addresses, so Mailchimp receives 3. {steps[3].reason}"
    ) in page
    assert (
        "step count lost why audience members 3 The audience matches 3 users. members with an accepted identity 3 "
        in page
    )
    assert f"forwarded 0 −3 {steps[3].reason} accepted by the partner 0 {steps[4].reason}" in page
    assert f"partner's own count – {steps[5].reason} Counters" in page


def test_it_says_when_a_connection_was_never_verified(staff, parisians):
    conn = services.connect(parisians, MailchimpOutputFactory(), {"list_id": LIST_ID})

    page = text(staff.get(f"{LIST}{conn.pk}/change/"))

    assert "Status: unverified Not verified yet." in page


def test_it_shows_the_hint_of_a_paused_connection(staff, sandbox):
    conn = services.connect(StaticAudienceFactory(name="Nobody yet"), sandbox_output(sandbox), {"list_id": LIST_ID})
    services.pause(conn)
    staff.post(f"{LIST}{conn.pk}/verify/")

    page = text(staff.get(f"{LIST}{conn.pk}/change/"))

    assert f"status warning The connection is paused. {hint('paused', id=conn.pk)}" in page


def test_it_lists_a_verification_badge_explained_on_hover_and_filters_by_it(staff):
    failing = [{"name": "destination", "status": "failing", "detail": MISSING_LIST, "hint": CHECK_THE_LIST_ID}]
    ConnectionFactory(audience__name="Broken", verification_status="failing", verification_checks=failing)
    passed = [{"name": "credentials", "status": "ok", "detail": "Mailchimp accepted the API key.", "hint": ""}]
    ConnectionFactory(audience__name="Fine", output__name="Mailchimp (sales)", verification_status="ok",
                      verified_at=timezone.now() - dt.timedelta(minutes=5), verification_checks=passed)  # fmt: skip
    ConnectionFactory(audience__name="New", output__name="Mailchimp (new)")

    page = staff.get(LIST).content.decode()
    failing_only = text(staff.get(LIST, {"verification_status__exact": "failing"}))

    assert ">Status<" in page  # the badge sits under the connection's status
    assert html.escape(f"destination: {MISSING_LIST}") + '">failing</span>' in page
    assert 'title="Never verified.">unverified</span>' in page
    assert 'title="Verified 5\xa0minutes ago.">ok</span>' in page
    assert "Broken" in failing_only
    assert "Fine" not in failing_only and "New" not in failing_only


def test_it_refuses_to_verify_for_staff_who_may_only_view_connections(client, django_user_model, sandbox, parisians):
    conn = services.connect(parisians, sandbox_output(sandbox), {"list_id": LIST_ID})
    viewer = django_user_model.objects.create_user("viewer", password="x", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_connection"))
    client.force_login(viewer)

    refused = client.post(f"{LIST}{conn.pk}/verify/")
    actions = client.get(LIST).content.decode()
    page = client.get(f"{LIST}{conn.pk}/change/").content.decode()

    assert refused.status_code == 403
    assert 'value="verify_selected"' not in actions
    assert "Verify now" not in page
    assert Connection.objects.get(pk=conn.pk).verified_at is None
