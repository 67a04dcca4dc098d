"""The connections admin: importing the modules registers their ModelAdmins.

What connections adds to the audience and output pages is in `inlines`, registered in ConnectionsConfig.ready().
"""

from connections.admin import connection, delivery, outbox  # noqa: F401
