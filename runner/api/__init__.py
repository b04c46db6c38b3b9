"""The HTTP API (SPEC §9): a thin front that translates HTTP to the conductor and the store."""
