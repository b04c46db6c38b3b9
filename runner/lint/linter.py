"""`dwf lint`: find workflow files, check each (in parallel where it pays), then across files.

A worker process gets a chunk of paths and returns positioned diagnostics plus a small summary
per file for the cross-file rules, which the parent runs. Clean files never pay for positions.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from runner.spec import loader, positions, repository
from runner.spec.diagnostics import Diagnostic, Finding
from runner.spec.model import Workflow
from runner.spec.repository import WorkflowSummary
from runner.spec.rules import severity_of

#: Below this many files a process pool costs more than it saves.
PARALLEL_THRESHOLD = 48
_IGNORE = re.compile(r"#\s*dwf-lint:\s*ignore=([A-Za-z0-9_-]+(?:\s*,\s*[A-Za-z0-9_-]+)*)")
YAML_SUFFIXES = (".yaml", ".yml")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FileResult:
    """One file's diagnostics and, when it loaded as a workflow, its summary and document."""

    path: str
    diagnostics: tuple[Diagnostic, ...]
    summary: WorkflowSummary | None = None
    document: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class LintResult:
    """All diagnostics of a lint run, sorted by file and position."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    files_checked: int = 0

    @property
    def errors(self) -> int:
        """How many diagnostics are errors."""
        return sum(1 for d in self.diagnostics if d.severity == "error")

    @property
    def warnings(self) -> int:
        """How many diagnostics are warnings."""
        return sum(1 for d in self.diagnostics if d.severity == "warning")


def discover(paths: Sequence[str | Path]) -> list[Path]:
    """The workflow files named by `paths`: files as given, folders searched for *.yaml/*.yml.

    A folder that holds a `workflows/` folder is a repository (SPEC §2): only its workflows/ is
    searched, so templates and other YAML beside it are not mistaken for workflows.
    Raises FileNotFoundError naming a path that does not exist.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            if (path / "workflows").is_dir():
                path = path / "workflows"
            # Not only regular files: a FIFO or device named *.yaml is reported, not skipped.
            found.extend(
                sorted(
                    p
                    for p in path.rglob("*")
                    if p.suffix in YAML_SUFFIXES
                    and not p.is_dir()
                    and not any(part.startswith(".") for part in p.relative_to(path).parts)
                )
            )
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"{raw}: no such file or directory")
    return list(dict.fromkeys(found))


def lint_paths(
    paths: Sequence[str | Path], *, jobs: int | None = None, across_files: bool = True
) -> LintResult:
    """Lint every workflow file under `paths`, each rule on each file, then (unless
    `across_files` is False) the rules across the files linted together. A folder's dwf.yaml
    (or a path named dwf.yaml) is checked as the repository's config."""
    from runner.lint import config

    configs = [str(p) for p in config.config_files(paths)]
    files = [str(p) for p in discover(paths) if str(p) not in configs]
    results = _in_pool(_lint_chunk, files, jobs)
    diagnostics = [d for r in results for d in r.diagnostics]
    diagnostics.extend(d for path in configs for d in config.lint_config(path))
    if across_files:
        cross = across(results, read_text)
        diagnostics.extend(d for found in cross.values() for d in found)
    diagnostics.sort(key=lambda d: (d.path, d.line, d.column, d.rule))
    return LintResult(diagnostics, len(files) + len(configs))


def lint_sources(
    sources: Sequence[tuple[str, bytes]], *, jobs: int | None = None
) -> list[FileResult]:
    """Lint files given as (path, bytes), e.g. read from git, each rule on each file (in
    parallel where it pays); the rules across files are `across`."""
    return _in_pool(_lint_source_chunk, list(sources), jobs)


def across(
    results: Iterable[FileResult], text_of: Callable[[str], str]
) -> dict[str, list[Diagnostic]]:
    """The diagnostics of the rules across files, by path; `text_of(path)` gives a file's text
    (read only for files with findings, to position them)."""
    summaries = {r.path: r.summary for r in results if r.summary is not None}
    return {
        path: diagnose(path, text_of(path), findings)
        for path, findings in repository.check(summaries).items()
    }


def read_text(path: str) -> str:
    """A file's text as lint read it, or "" when it cannot be read (again) as a workflow file."""
    try:
        return loader.decode(path, loader.read_file(path)).text
    except loader.LoadError:
        return ""


def lint_source(path: str, raw: bytes) -> FileResult:
    """Lint one file's bytes; never raises: an internal failure becomes a diagnostic."""
    try:
        return _lint_source(path, raw)
    except (
        Exception
    ) as exc:  # the contract: no traceback reaches a user, one file never stops a lint
        message = f"the linter failed on this file ({type(exc).__name__}: {exc}); please report it"
        return FileResult(path, (Diagnostic(path, 1, 1, 1, 2, "error", "internal-error", message),))


def _lint_source(path: str, raw: bytes) -> FileResult:
    from runner.spec import checks

    try:
        source = loader.decode(path, raw)
        data = loader.load(source.text)
    except loader.LoadError as exc:
        text = raw.decode("utf-8", "replace") if exc.finding.rule != "file-unreadable" else ""
        return FileResult(path, tuple(diagnose(path, text, [exc.finding])))
    workflow, findings = checks.check_document(data, _schema_lookup, _known_types)
    summary = repository.summarize(workflow) if workflow is not None and workflow.id else None
    return FileResult(path, tuple(diagnose(path, source.text, findings)), summary, data)


def check_data(data: dict[str, Any]) -> tuple[Workflow | None, list[Finding]]:
    """Every single-file rule on an already loaded document (one posted over the API): the
    model, when it builds, and findings located by document path."""
    from runner.spec import checks

    return checks.check_document(data, _schema_lookup, _known_types)


def _schema_lookup(action_type: str) -> Mapping[str, Any] | None:
    from runner.actions import registry

    cls = registry.find(action_type)
    return None if cls is None else cls.parameters_schema


def _known_types() -> list[str]:
    from runner.actions import registry

    return registry.usable_types()


def diagnose(path: str, text: str, findings: Iterable[Finding]) -> list[Diagnostic]:
    """Position findings in the file's text and drop those silenced by an ignore comment."""
    findings = list(findings)
    if not findings:
        return []
    index = positions.index_positions(text) if any(f.span is None for f in findings) else {}
    lines = positions.split_lines(text)
    out = []
    for finding in findings:
        span = positions.resolve(finding, index)
        if _silenced(lines, span.line, finding.rule):
            continue
        out.append(
            Diagnostic(
                path=path,
                line=span.line,
                column=span.column,
                end_line=span.end_line,
                end_column=span.end_column,
                severity=finding.severity or severity_of(finding.rule),
                rule=finding.rule,
                message=finding.message,
            )
        )
    return out


def _silenced(lines: list[str], line: int, rule: str) -> bool:
    if not 0 < line <= len(lines) or "dwf-lint" not in lines[line - 1]:
        return False
    match = _IGNORE.search(lines[line - 1])
    return match is not None and rule in {r.strip() for r in match.group(1).split(",")}


def _lint_chunk(paths: list[str]) -> list[FileResult]:
    results = []
    for path in paths:
        try:
            raw = loader.read_file(path)
        except loader.LoadError as exc:
            results.append(FileResult(path, tuple(diagnose(path, "", [exc.finding]))))
            continue
        results.append(lint_source(path, raw))
    return results


def _lint_source_chunk(sources: list[tuple[str, bytes]]) -> list[FileResult]:
    return [lint_source(path, raw) for path, raw in sources]


def _in_pool(
    lint_chunk: Callable[[list[T]], list[FileResult]], files: list[T], jobs: int | None
) -> list[FileResult]:
    workers = min(jobs or os.cpu_count() or 1, max(1, len(files) // (PARALLEL_THRESHOLD // 2)))
    if workers <= 1 or len(files) < PARALLEL_THRESHOLD:
        return lint_chunk(files)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from runner.spec import checks

    checks.prepare()  # build validators once, before forking, so children inherit them

    # Fork shares the parent's already-imported modules; chunks interleave files so a run of
    # large files does not land on one worker.
    chunks = [files[i::workers] for i in range(workers)]
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        parts = list(pool.map(lint_chunk, chunks))
    return [r for part in parts for r in part]
