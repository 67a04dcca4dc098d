"""The connections admin: importing the modules registers their ModelAdmins."""

from connections.admin import connection  # noqa: F401
