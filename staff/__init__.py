"""Staff: the groups operations staff belong to, and the audit history of what they (and the API) changed."""
