"""Use cases: the only API the HTTP layer and the CLI call. Collaborators come in as arguments."""
