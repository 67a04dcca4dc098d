"""Roles an API token's user can be given from the command line: `create_api_token USERNAME --role NAME`.

A token acts as its user. Its scope says whether it may write; its user's permissions decide the two things a
scope does not: writing outputs' credentials (their secrets and destinations) and reading member identities. A
role is a built-in group holding such permissions (created by a migration in staff/migrations/).

There is no "operator" or "viewer" role: the Operators and Viewers groups restrict staff in the admin, and a
token is not restricted by its user's model permissions (its scope is), so such a role would promise a limit
the API does not apply. A read-only integration is `--scope read`.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Role:
    group: str
    allows: str  # what the role adds to a token, completing "Its tokens may …"


ROLES = {
    "integrator": Role(
        group="Integrators",
        allows="set outputs' credentials and destinations, and read member identities",
    ),
}
