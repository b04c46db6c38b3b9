"""The runner's exception hierarchy: every error the runner raises on purpose is one of these.

    DwfError
    ├── UsageError            a command was called wrongly (bad flag value, missing file)
    ├── DefinitionError       a workflow document is invalid; carries its diagnostics
    ├── PlanError             a definition could not be compiled into a plan
    └── ActionRegistryError   an action type is unknown or a plugin failed to load

Messages name the file, node and field involved, and say what would be valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.spec.diagnostics import Diagnostic


class DwfError(Exception):
    """Root of every error the runner raises deliberately."""


class UsageError(DwfError):
    """A command or function was called with arguments that cannot work."""


class DefinitionError(DwfError):
    """A workflow document failed loading or validation; `diagnostics` says where and why."""

    def __init__(self, message: str, diagnostics: Sequence[Diagnostic] = ()) -> None:
        super().__init__(message)
        self.diagnostics = tuple(diagnostics)


class PlanError(DwfError):
    """A valid-looking definition could not be compiled into an executable plan."""


class ActionRegistryError(DwfError):
    """An action type is not registered, or a registered plugin could not be loaded."""
