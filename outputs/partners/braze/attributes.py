"""How a Braze connection writes a membership change: the custom attributes of one user object of
`/users/track`, in one of the three ways a connection chooses (the adapter's opening comment says why each).

https://www.braze.com/docs/user_guide/data/activation/custom_data/data_types/
"""

from __future__ import annotations

from outputs.partners.base import Message

ATTRIBUTE, ARRAY, STRING = "attribute", "array", "string"
# Connections made before the choice existed have no "membership" key: they keep today's array attribute
# (connections migration 0006 also writes it on them, so a form that saves them cannot switch them silently).
LEGACY_MEMBERSHIP = ARRAY
STRING_CAP = 255  # characters a string attribute holds


class Unwritable(Exception):
    """The member's change cannot be written as the connection is set up: rejected, never sent."""


def membership(connection_settings: dict) -> str:
    return connection_settings.get("membership") or LEGACY_MEMBERSHIP


def array_change(message: Message, attribute: str) -> dict:
    # add/remove touch only this audience's value, so connections sharing the array never overwrite each other.
    return {attribute: {"add" if message.action == "add" else "remove": [message.audience]}}


def attribute_change(message: Message, prefix: str) -> dict:
    # null removes the attribute from the profile ("To remove custom attributes from user profiles, set the
    # value to null"), so a user keeps no trace of audiences they left. Braze names hold 255 characters.
    return {f"{prefix}: {message.audience}"[:255]: True if message.action == "add" else None}


def string_change(message: Message, attribute: str) -> dict:
    # Braze replaces a string whole, so the value is the user's complete list as it is now, whatever this
    # message's action: a repeated or late message writes the current state. An empty list is null, which
    # removes the attribute from the profile.
    if message.audiences is None:
        raise ValueError("A Braze string attribute is written from the member's current audiences; none were given.")
    value = ",".join(str(audience_id) for audience_id in sorted(message.audiences))
    if len(value) > STRING_CAP:
        raise Unwritable(
            f"This user is in {len(message.audiences)} audiences connected to this output; their IDs take "
            f"{len(value)} characters, more than the {STRING_CAP} Braze keeps in the string attribute '{attribute}'."
        )
    return {attribute: value or None}


WRITES = {ATTRIBUTE: attribute_change, ARRAY: array_change, STRING: string_change}


def attribute_object(message: Message, identifier: str, change: dict) -> dict:
    if identifier == "device_alias":
        # Alias-only users are created only when _update_existing_only is false.
        alias = {"alias_name": message.value, "alias_label": message.identity_type}
        return {"user_alias": alias, "_update_existing_only": False, **change}
    return {identifier: message.value, **change}
