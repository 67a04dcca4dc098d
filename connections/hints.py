"""The shared troubleshooting hints: what is wrong, where to look, what to do.

Partner-specific wording (a wrong Mailchimp key, a Facebook audience that is
flagged) lives with the partner module; these are the ones every connection
can show. Each is keyed by its failure class; tests provoke each and assert it.
"""

HINTS = {
    "unreachable": "Nothing was checked at {partner} this time. This is usually temporary: verification runs again "
    "on its schedule. If it keeps happening, check that this server can reach {partner} (network, proxy, firewall).",
    "paused": "The connection is paused: changes are queued but not sent. Resume it when the partner side is ready "
    "(admin: Resume; API: POST /api/v1/connections/{id}/resume/; command: manage.py resume {id}).",
    "faulted": "Forwarding stopped because of the failure above. Fix it at the partner or in the output's settings, "
    "then resume the connection: waiting messages go out at once.",
    "no_members": "The audience has no members yet, so nothing is forwarded. Check its criteria (admin: the "
    "audience page shows its size) or wait for the profiles and events it needs.",
    "no_accepted_identities": "None of the audience's members has an identity {partner} accepts ({types}). Send "
    "those identities with the profiles (POST /api/v1/profiles/bulk/), or connect an output that accepts the "
    "identities you have.",
    "rejections": "The most common reason {partner} gave: {reason} Open the connection's rejected messages "
    "(admin: Outbox messages, state Rejected; it needs the “Can see member identities” permission) to see which "
    "identities and why; they are not sent again.",
    "failures": "Look at the connection's last error and fix its cause, then send them again (admin: Retry failed "
    "messages; API: POST /api/v1/connections/{id}/retry-failed/).",
    "waiting": "The oldest has waited since {since}. Check that a qcluster is running (manage.py qcluster) and look "
    "at the connection's last error.",
    "partner_count_lower": "{partner} reports {count} but {forwarded} were forwarded and accepted. Members removed "
    "or unsubscribed at {partner} (by hand, by a bounce or by a compliance review) are not added back; check "
    "the destination's activity at {partner}.",
    "partner_count_higher": "{partner} reports {count} but only {forwarded} of the audience's members were "
    "forwarded and accepted. {partner} also counts members added there by other means (by hand, an import, a "
    "signup form, another tool writing to the same destination); check that nothing else writes to it, and "
    "look up at {partner} the members the audience does not hold.",
    "partner_count_zero": "{partner} reports no members although {forwarded} were forwarded and accepted: check "
    "that the connection points at the list or segment you are looking at, and that nobody emptied it at {partner}.",
    "expired": "{partner} removes a member {days} days after the last upload that added them. Members still in "
    "the audience are uploaded again once their last add is {refresh} days old (the connection's refresh setting), "
    'by the hourly "Refresh expiring members" schedule: check that a qcluster is running (manage.py qcluster) and '
    "that the connection is active.",
}


def hint(key: str, **values) -> str:
    return HINTS[key].format(**values)
