"""Who may change an output's credentials: staff with this permission (superusers have every permission).

Credentials are the secrets and the destinations: every setting that decides where requests carrying the
secrets or member data go (the base URL override, and each setting a partner declares with
`destination=True`, such as a webhook's URL). Whoever can move those can read the secrets at the new place.
"""

CHANGE_CREDENTIALS = "outputs.change_output_credentials"


def credentials_refused(name: str) -> str:
    return f"You may not change {name}: changing credentials needs the “Can change output credentials” permission."


def destination_refused(name: str) -> str:
    return (
        f"You may not change {name}: it decides where credentials and member data are sent, so changing it needs "
        "the “Can change output credentials” permission."
    )


def destination_names(partner) -> list[str]:
    """The output's fields and settings that decide where its requests go."""
    return ["base_url", *(s.name for s in partner.output_settings if s.destination)]


def destinations(partner, base_url: str, settings: dict) -> dict:
    """{name: value} of the destinations of an output with this base URL and these (plain) settings."""
    values = {"base_url": base_url or ""}
    values.update({name: settings.get(name) or "" for name in destination_names(partner)[1:]})
    return values


def moved(before: dict, after: dict) -> list[tuple[str, str, str]]:
    """(name, old, new) of each destination that differs between two `destinations` snapshots."""
    return [(name, before.get(name, ""), value) for name, value in after.items() if before.get(name, "") != value]
