"""Who may change an output's credentials: staff with this permission (superusers have every permission)."""

CHANGE_CREDENTIALS = "outputs.change_output_credentials"


def credentials_refused(name: str) -> str:
    return f"You may not change {name}: changing credentials needs the “Can change output credentials” permission."
