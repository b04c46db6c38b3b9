"""Fixtures the end-to-end modules share."""

from tests.e2e.test_workers import workers  # noqa: F401 (`dwf worker` processes, killed at the end)
