"""The runner's exception hierarchy: every error the runner raises on purpose is one of these.

    DwfError
    ├── UsageError            a command was called wrongly (bad flag value, missing file)
    ├── DefinitionError       a workflow document is invalid; carries its diagnostics
    ├── PlanError             a definition could not be compiled into a plan
    ├── ActionRegistryError   an action type is unknown or a plugin failed to load
    ├── ExpressionError       a template or condition failed at run time
    │   ├── TemplateRenderError   rendering failed (undefined name, sandbox, size)
    │   └── ConditionError        a condition threw, timed out, ran out of memory, not boolean
    ├── StoreError            the database could not do what was asked
    │   ├── DatabaseClosed        the pool was used outside `async with` (or after it)
    │   ├── MigrationError        migrations cannot be applied (edited, missing, failed)
    │   └── LeaseLost             another worker took over an execution; nothing was written
    ├── MissingCredential     a secret an action or trigger needs is not configured
    ├── InvalidRequest        a start or API request is malformed (payload not an object, too big)
    ├── SourceError           a git source cannot be fetched or read (unreachable, no branch)
    ├── WebhookRejected       a webhook delivery is refused (signature, body); `status` says how
    ├── NotFound              a workflow or execution does not exist (for this tenant)
    └── Conflict              the request contradicts the current state (e.g. managed by git)

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


class ExpressionError(DwfError):
    """A template or condition failed while an execution ran."""


class TemplateRenderError(ExpressionError):
    """Rendering a template failed; the message names the node, the parameter path and the cause."""


class ConditionError(ExpressionError):
    """A condition threw, timed out, ran out of memory or did not return a boolean."""


class StoreError(DwfError):
    """The database could not do what was asked."""


class DatabaseClosed(StoreError):
    """The database was used before it was opened or after it was closed."""


class MigrationError(StoreError):
    """Migrations cannot be applied: an applied one was edited, or one failed."""


class MissingCredential(DwfError):
    """A named secret is not configured; the message names it (never its value) and where."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


class InvalidRequest(DwfError):
    """A request to start or query something is malformed; the message names the field."""


class SourceError(DwfError):
    """A workflow repository cannot be fetched or read; the message names the repo and why."""


class LeaseLost(StoreError):
    """Another worker holds the execution's lease now; the transaction wrote nothing."""


class WebhookRejected(DwfError):
    """A webhook delivery is refused: `status` is the HTTP answer (401 signature, 415 or 400 body,
    404 no such hook, 422 activation condition failed), `kind` its problem type slug."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status, self.kind = status, kind


class NotFound(DwfError):
    """A workflow or execution does not exist (for this tenant)."""


class Conflict(DwfError):
    """The request contradicts the current state, e.g. it changes a workflow managed by git."""
