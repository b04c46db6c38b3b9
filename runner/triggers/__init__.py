"""Triggers (SPEC §5): the scheduler, signed webhooks, and the fire log they write."""
