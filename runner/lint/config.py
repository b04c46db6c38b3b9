"""`dwf lint` of a repository's dwf.yaml: found beside `workflows/` in a folder linted (or named
itself), checked against `schemas/dwf.schema.json` and positioned like a workflow's findings."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from runner.lint import linter
from runner.spec import loader, repository
from runner.spec.diagnostics import Diagnostic


def config_files(paths: Sequence[str | Path]) -> list[Path]:
    """The dwf.yaml of each folder in `paths`, and each path that is itself a dwf.yaml."""
    found = []
    for raw in paths:
        path = Path(raw)
        candidate = path / repository.CONFIG_FILE if path.is_dir() else path
        # A link (even a broken one) or a FIFO named dwf.yaml is reported, as a sync refuses it.
        exists = candidate.is_symlink() or candidate.exists()
        if candidate.name == repository.CONFIG_FILE and exists:
            found.append(candidate)
    return list(dict.fromkeys(found))


def lint_config(path: str) -> list[Diagnostic]:
    """Every problem of one dwf.yaml; a link is refused, as a sync refuses it."""
    if Path(path).is_symlink():
        message = "the repository's config must be a file, not a symbolic link (a sync refuses it)"
        return [Diagnostic(path, 1, 1, 1, 2, "error", "file-not-regular", message)]
    try:
        raw = loader.read_file(path)
    except loader.LoadError as exc:
        return linter.diagnose(path, "", [exc.finding])
    found = repository.check_config(path, raw)
    return linter.diagnose(path, found.text, found.findings)
