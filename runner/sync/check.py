"""Lint the workflow files of a commit or a checkout, once each: what a sync and a plan apply.

Every rule of `dwf lint` runs, the rules across files included. A file's result depends on its
path, its bytes (the git blob id names them) and a *stamp* (`lint_stamp`): the runner's lint
code and schema, the action types and their parameter schemas, and the repository's default
options (merged into each document before its checksum). Results are kept by (path, blob,
stamp) in a process's `LintMemo`, and a sync stores them in the database (`sync_files`), so a
daemon resyncing, a restarted daemon and a fresh `dwf sync` process lint only the files whose
blob changed. A stored result has no document: a file that must be written is read and linted
again (`ChangeSet.unread`). The rules across files run over every file each time (a deleted
target changes other files' verdicts), but they need only the small per-file summaries.

The repository's dwf.yaml is checked here too (`check_config`), with the same positions.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runner.lint import linter
from runner.plan import checksum
from runner.plan.cache import LruCache
from runner.spec import lifecycle, repository
from runner.spec.diagnostics import Diagnostic, Finding
from runner.spec.loader import MAX_FILE_BYTES
from runner.spec.repository import RepositoryConfig, WorkflowSummary
from runner.sync.diff import FileChange, LintedFile
from runner.sync.source import SourceFile

#: Lint results kept per process: a repository of this many files resyncs without relinting.
MEMO_SIZE = 20_000
#: What a lint result depends on besides the file: the code that lints and checksums it.
_LINT_CODE = ("spec", "lint")
_LINT_FILES = ("plan/checksum.py", "sync/check.py")

LintMemo = LruCache[tuple[str, str, str], LintedFile]
Reader = Callable[[Sequence[str]], Mapping[str, bytes]]


def new_memo() -> LintMemo:
    """An empty memo of lint results."""
    return LruCache(MEMO_SIZE)


class Checked:
    """The linted files of one snapshot, and how to position more findings in them. `fresh`:
    the per-file results linted by this check (not known before), to store."""

    def __init__(
        self,
        files: list[LintedFile],
        read: Reader,
        raw: dict[str, bytes],
        fresh: Sequence[LintedFile] = (),
    ) -> None:
        self.files, self._read, self._raw = files, read, raw
        self.fresh = list(fresh)
        self._blobs = {f.path: f.blob for f in files}

    def text(self, path: str) -> str:
        """A file's text (read again from the source if this run did not read it)."""
        blob = self._blobs[path]
        if blob not in self._raw:
            self._raw.update(self._read([blob]))
        return self._raw[blob].decode("utf-8-sig", "replace")

    def diagnose(self, path: str, findings: list[Finding]) -> list[Diagnostic]:
        """Findings positioned in the file (see `runner.lint.linter.diagnose`)."""
        return linter.diagnose(path, self.text(path), findings)


def check(
    files: Iterable[SourceFile],
    read: Reader,
    memo: LintMemo | None = None,
    *,
    jobs: int | None = None,
    config: RepositoryConfig | None = None,
    known: Mapping[str, LintedFile] | None = None,
    reread: Collection[str] = (),
) -> Checked:
    """Lint `files` (reading with `read` only those neither the memo nor `known`, stored
    results by path, has for their blob; always those in `reread`), fill in the repository's
    default options, and run the rules across them. Blocking: run it in a thread."""
    memo = memo if memo is not None else new_memo()
    config = config if config is not None else RepositoryConfig()
    stamp = lint_stamp(config)
    known = known or {}
    files = list(files)
    results: dict[str, LintedFile] = {}
    fresh: list[SourceFile] = []
    for f in files:
        if not f.readable:
            continue
        found = None if f.path in reread else memo.get((f.path, f.blob, stamp))
        if found is None and f.path not in reread:
            stored = known.get(f.path)
            found = stored if stored is not None and stored.blob == f.blob else None
        if found is None:
            fresh.append(f)
        else:
            results[f.path] = found
    raw = dict(read([f.blob for f in fresh])) if fresh else {}
    # By path: the lint's process pool returns results in its own order.
    by_path = {
        r.path: r for r in linter.lint_sources([(f.path, raw[f.blob]) for f in fresh], jobs=jobs)
    }
    linted_now = []
    for f in fresh:
        linted = _linted(f, by_path[f.path], config)
        memo.put((f.path, f.blob, stamp), linted)
        results[f.path] = linted
        linted_now.append(linted)
    out: list[LintedFile] = []
    for f in files:
        if f.ignored is not None:
            out.append(LintedFile(f.path, f.blob, ignored=f.ignored))
        elif f.size > MAX_FILE_BYTES:
            out.append(LintedFile(f.path, f.blob, (_too_large(f),)))
        else:
            out.append(results[f.path])
    checked = Checked(out, read, raw, linted_now)
    cross = linter.across(
        [linter.FileResult(f.path, f.diagnostics, f.summary) for f in out], checked.text
    )
    if cross:
        checked.files = [_with(f, cross[f.path]) if f.path in cross else f for f in checked.files]
    return checked


def _linted(f: SourceFile, result: linter.FileResult, config: RepositoryConfig) -> LintedFile:
    document = result.document
    if document is None or any(d.severity == "error" for d in result.diagnostics):
        return LintedFile(f.path, f.blob, result.diagnostics, result.summary)
    effective = config.apply(document)
    return LintedFile(
        f.path, f.blob, result.diagnostics, result.summary, effective,
        checksum.definition_checksum(effective), status=lifecycle.declared_status(effective),
    )  # fmt: skip


def _too_large(f: SourceFile, what: str = "workflow files") -> Diagnostic:
    message = (
        f"the file is {f.size:,} bytes; {what} are limited to {MAX_FILE_BYTES:,} bytes (1 MiB)"
    )
    return Diagnostic(f.path, 1, 1, 1, 2, "error", "file-too-large", message)


def _with(f: LintedFile, extra: list[Diagnostic]) -> LintedFile:
    diagnostics = tuple(sorted(f.diagnostics + tuple(extra), key=lambda d: (d.line, d.column)))
    failed = any(d.severity == "error" for d in extra)
    if failed:
        return replace(f, diagnostics=diagnostics, document=None, checksum=None, status=None)
    return replace(f, diagnostics=diagnostics)


# The stamp and stored results ----------------------------------------------------------------


def lint_stamp(config: RepositoryConfig) -> str:
    """What a file's lint result depends on besides its path and bytes, as one hash."""
    digest = hashlib.sha256(_code_stamp().encode())
    digest.update(_actions_stamp().encode())
    digest.update(config.fingerprint.encode())
    return digest.hexdigest()[:32]


@functools.cache
def _code_stamp() -> str:
    """The runner's version and the text of the code that lints a file (a development
    checkout changes it without a new version)."""
    from runner import __version__

    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(__version__.encode())
    paths = [p for folder in _LINT_CODE for p in sorted((root / folder).iterdir())]
    for path in [*paths, *(root / name for name in _LINT_FILES)]:
        if path.suffix in (".py", ".json") and path.is_file():
            digest.update(path.name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _actions_stamp() -> str:
    """The action types lint knows and their parameter schemas (a plugin installed, removed
    or upgraded changes what `unknown-action-type` and parameter checks say)."""
    import json

    from runner.actions import registry
    from runner.errors import ActionRegistryError

    try:
        types = registry.all_types()
    except ActionRegistryError as exc:
        return f"error: {exc}"
    catalog = {name: [str(cls.version), cls.parameters_schema] for name, cls in types.items()}
    return json.dumps(catalog, sort_keys=True, default=str)


def stored(f: LintedFile) -> dict[str, Any]:
    """A file's own lint result (before the rules across files) as the database keeps it."""
    summary = f.summary
    return {
        "diagnostics": [
            [d.line, d.column, d.end_line, d.end_column, d.severity, d.rule, d.message]
            for d in f.diagnostics
        ],
        "summary": None
        if summary is None
        else {
            "workflowId": summary.workflow_id,
            "webhooks": [[p, list(at)] for p, at in summary.webhooks],
            "subworkflows": [[t, list(at)] for t, at in summary.subworkflows],
        },
        "checksum": f.checksum,
        "status": f.status,
    }


def from_stored(path: str, blob: str, data: Mapping[str, Any]) -> LintedFile | None:
    """A stored lint result (without its document); None when it is not of this shape."""
    try:
        diagnostics = tuple(Diagnostic(path, *d) for d in data["diagnostics"])
        found = data["summary"]
        summary = None
        if found is not None:
            summary = WorkflowSummary(
                found["workflowId"],
                tuple((p, tuple(at)) for p, at in found["webhooks"]),
                tuple((t, tuple(at)) for t, at in found["subworkflows"]),
            )
        status = data["status"]
        if status not in (None, *lifecycle.STATUS_OF.values()):
            return None
        return LintedFile(path, blob, diagnostics, summary, None, data["checksum"], status=status)
    except (KeyError, TypeError, ValueError):
        return None


# The repository's dwf.yaml ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigResult:
    """The repository's dwf.yaml: its config, or (None and) its entry in the run: outcome
    `invalid`, with the diagnostics that refuse the sync."""

    config: RepositoryConfig | None
    change: FileChange | None = None

    @property
    def refusal(self) -> str | None:
        """Why nothing of the repository may be synced, or None."""
        if self.config is not None or self.change is None:
            return None
        errors = [d.message for d in self.change.diagnostics if d.severity == "error"]
        why = errors[0] if len(errors) == 1 else f"{len(errors)} errors, listed with it"
        return f"refused: {self.change.path} cannot be used ({why}); nothing was changed"


def check_config(
    file: SourceFile | None, read: Reader, *, runner_tenant: str, pinned: bool
) -> ConfigResult:
    """Check the repository's dwf.yaml (none: the defaults) for a runner of `runner_tenant`
    (`pinned`: see `repository.tenant_refusal`). One that cannot be read (a link, too large),
    has an error or names a tenant this runner may not sync makes the sync refuse: its tenant
    decides where the workflows go. Blocking: run it in a thread."""
    if file is None:
        return ConfigResult(RepositoryConfig())
    if file.ignored is not None:
        message = f"the repository's config must be a file, not {file.ignored}"
        problem = Diagnostic(file.path, 1, 1, 1, 2, "error", "file-not-regular", message)
        return ConfigResult(None, FileChange(file.path, None, "invalid", (problem,)))
    if file.size > MAX_FILE_BYTES:
        problem = _too_large(file, f"{repository.CONFIG_FILE} files")
        return ConfigResult(None, FileChange(file.path, None, "invalid", (problem,)))
    raw = read([file.blob])[file.blob]
    found = repository.check_config(file.path, raw)
    findings = list(found.findings)
    if found.config is not None:
        refusal = repository.tenant_refusal(found.config, runner_tenant, pinned=pinned)
        findings += [refusal] if refusal is not None else []
    diagnostics = tuple(linter.diagnose(file.path, found.text, findings))
    if found.config is None or diagnostics:
        return ConfigResult(None, FileChange(file.path, None, "invalid", diagnostics))
    return ConfigResult(found.config)
