"""The runner's exception hierarchy: every error the runner raises on purpose is one of these.

    DwfError
    ├── UsageError            a command was called wrongly (bad flag value, missing file)
    │   └── DaemonClosed          a part of the Daemon was used outside `async with` (or after)
    ├── DefinitionError       a workflow document is invalid; carries its diagnostics
    │   ├── LoadError             a file cannot become a document (YAML, limits); one finding
    │   └── ShapeError            data lacks the shape the schema promises (model building)
    ├── PlanError             a definition could not be compiled into a plan
    ├── ActionRegistryError   an action type is unknown or a plugin failed to load
    ├── ExpressionError       a template or condition failed at run time
    │   ├── TemplateRenderError   rendering failed (undefined name, sandbox, size)
    │   └── ConditionError        a condition threw, timed out, ran out of memory, not boolean
    ├── StoreError            the database could not do what was asked
    │   ├── DatabaseUnavailable   it cannot be reached now (refused, lost, shut down, timed out)
    │   ├── QueryError            a statement failed on its own account (a constraint, a bug)
    │   ├── DatabaseClosed        the pool was used outside `async with` (or after it)
    │   ├── MigrationError        migrations cannot be applied (edited, missing, failed)
    │   └── LeaseLost             another worker took over an execution; nothing was written
    ├── MissingCredential     a secret an action or trigger needs is not configured
    ├── InvalidRequest        a start or API request is malformed (payload not an object, too big)
    │   ├── InvalidField          … in one named field (`body.trigger`, `query.cursor`)
    │   └── InvalidDocument       a workflow document to record or publish fails validation
    ├── SourceError           a git source cannot be fetched or read (unreachable, no branch)
    ├── WebhookRejected       a webhook delivery is refused (signature, body); `status` says how
    ├── NotFound              a workflow or execution does not exist (for this tenant)
    ├── AuthError             a request is refused for who sent it (SPEC §12)
    │   ├── Unauthenticated       no token, or one that does not verify: 401
    │   ├── Forbidden             a verified caller without the route's role: 403
    │   ├── KeysUnavailable       the JWKS cannot be fetched, so no token can be checked: 503
    │   └── RateLimited           over the caller's rate limit: 429 with Retry-After
    └── Conflict              the request contradicts the current state (e.g. managed by git)
        └── NotActive             a start of a workflow that is not Active (a Draft, Archived)

Messages name the file, node and field involved, and say what would be valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runner.spec.diagnostics import Diagnostic, Finding


class DwfError(Exception):
    """Root of every error the runner raises deliberately."""


class UsageError(DwfError):
    """A command or function was called with arguments that cannot work."""


class DaemonClosed(UsageError):
    """A part of the Daemon was used before `async with Daemon(...)` opened it, or after."""


class DefinitionError(DwfError):
    """A workflow document failed loading or validation; `diagnostics` says where and why."""

    def __init__(self, message: str, diagnostics: Sequence[Diagnostic] = ()) -> None:
        super().__init__(message)
        self.diagnostics = tuple(diagnostics)


class LoadError(DefinitionError):
    """A file cannot become a document (YAML syntax, encoding, limits); `finding` says where and
    why. It has no diagnostics yet: the lint positions the finding in its file."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.message)
        self.finding = finding


class ShapeError(DefinitionError):
    """Data lacks the shape the schema promises (a node that is not a mapping, a missing id), so
    no model can be built; the message names the part, and the schema check reports why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


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


class DatabaseUnavailable(StoreError):
    """The database cannot be reached now: connection refused or lost, the server shutting down,
    no pooled connection in time. Worth retrying later; nothing the caller sent was wrong."""


class QueryError(StoreError):
    """A statement failed on its own account (a constraint, a type, a bug): retrying the same
    statement fails the same way. `sqlstate` is Postgres's error code, when it gave one."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


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


class InvalidField(InvalidRequest):
    """A request is malformed in one named field (`body.trigger`, `query.cursor`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class InvalidDocument(InvalidRequest):
    """A workflow document to record or publish fails validation: `problems` holds a (field,
    message) pair per finding, the field a path such as `definition.nodes[0].workflowId`."""

    def __init__(self, message: str, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__(message)
        self.problems = tuple(problems)


class SourceError(DwfError):
    """A workflow repository cannot be fetched or read; the message names the repo and why."""


class LeaseLost(StoreError):
    """Another worker holds the execution's lease now; the transaction wrote nothing."""


class WebhookRejected(DwfError):
    """A webhook delivery is refused: `status` is the HTTP answer (401 signature, 415 or 400 body,
    404 no such hook, 422 activation condition failed), `kind` its problem type slug, `field`
    the part of the request at fault when it is one (`body.text`)."""

    def __init__(self, status: int, kind: str, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.field = status, kind, field


class NotFound(DwfError):
    """A workflow or execution does not exist (for this tenant)."""


class AuthError(DwfError):
    """A request refused for who sent it (SPEC §12): its HTTP status, and headers to answer with."""

    status = 401

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


class Unauthenticated(AuthError):
    """No bearer token, or one that does not verify (signature, claims, key): 401; `code` is
    the RFC 6750 error code for `WWW-Authenticate` (`invalid_request`, `invalid_token`)."""

    status = 401

    def __init__(self, message: str, *, code: str | None = "invalid_token") -> None:
        challenge = 'Bearer realm="dwf"'
        if code is not None:
            # RFC 6750 §3: the description is printable ASCII but `"` and backslash (a header
            # that could not be encoded would turn the 401 into a 500).
            quoted = "".join(c if " " <= c <= "~" and c not in '"\\' else "?" for c in message)
            challenge += f', error="{code}", error_description="{quoted}"'
        super().__init__(message, headers={"WWW-Authenticate": challenge})
        self.code = code


class Forbidden(AuthError):
    """A verified caller without the role a route needs: 403."""

    status = 403


class KeysUnavailable(AuthError):
    """The keys to check tokens with cannot be fetched now (the JWKS URL): 503, to retry, not
    the token's fault."""

    status = 503


class RateLimited(AuthError):
    """Over a rate limit: 429 with `Retry-After` and the RateLimit headers."""

    status = 429


class Conflict(DwfError):
    """The request contradicts the current state, e.g. it changes a workflow managed by git."""


class NotActive(Conflict):
    """A start of a workflow that is not Active: `status` is what it is. A Draft starts only when
    the start allows Drafts; `draft_hint` tells the caller how (each front has its own way)."""

    def __init__(self, workflow_id: str, status: str, *, draft_hint: str = "") -> None:
        hint = f" ({draft_hint})" if draft_hint and status == "Draft" else ""
        super().__init__(
            f"workflow {workflow_id!r} is {status}; only Active workflows start executions{hint}"
        )
        self.workflow_id, self.status = workflow_id, status
