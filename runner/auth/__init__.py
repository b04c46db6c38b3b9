"""Who is calling (SPEC §12): identities, roles, and the check of bearer tokens (PyJWT)."""
