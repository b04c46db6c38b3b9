"""Lint the workflow files of a commit or a checkout, once each: what a sync and a plan apply.

Every rule of `dwf lint` runs, the rules across files included. Results are kept by (path,
blob id) in a `LintMemo`, so a daemon resyncing a repository lints only the files that changed;
the rules across files run over every file each time (a deleted target changes other files'
verdicts), but they need only the small per-file summaries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from runner.lint import linter
from runner.plan import checksum
from runner.plan.cache import LruCache
from runner.spec.diagnostics import Diagnostic, Finding
from runner.spec.loader import MAX_FILE_BYTES
from runner.sync.diff import LintedFile
from runner.sync.source import SourceFile

#: Lint results kept per process: a repository of this many files resyncs without relinting.
MEMO_SIZE = 20_000

LintMemo = LruCache[tuple[str, str], LintedFile]
Reader = Callable[[Sequence[str]], Mapping[str, bytes]]


def new_memo() -> LintMemo:
    """An empty memo of lint results."""
    return LruCache(MEMO_SIZE)


class Checked:
    """The linted files of one snapshot, and how to position more findings in them."""

    def __init__(self, files: list[LintedFile], read: Reader, raw: dict[str, bytes]) -> None:
        self.files, self._read, self._raw = files, read, raw
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
) -> Checked:
    """Lint `files` (reading with `read` only those the memo does not know) and run the rules
    across them. Blocking: run it in a thread."""
    memo = memo if memo is not None else new_memo()
    files = list(files)
    fresh = [f for f in files if f.readable and memo.get((f.path, f.blob)) is None]
    raw = dict(read([f.blob for f in fresh])) if fresh else {}
    results = linter.lint_sources([(f.path, raw[f.blob]) for f in fresh], jobs=jobs)
    for f, result in zip(fresh, results, strict=True):
        document = result.document
        valid = document is not None and not any(d.severity == "error" for d in result.diagnostics)
        memo.put(
            (f.path, f.blob),
            LintedFile(
                f.path, f.blob, result.diagnostics, result.summary,
                document if valid else None,
                checksum.definition_checksum(document) if valid else None,
            ),
        )  # fmt: skip
    linted: list[LintedFile] = []
    for f in files:
        if f.ignored is not None:
            linted.append(LintedFile(f.path, f.blob, ignored=f.ignored))
        elif f.size > MAX_FILE_BYTES:
            message = (
                f"the file is {f.size:,} bytes; workflow files are limited to "
                f"{MAX_FILE_BYTES:,} bytes (1 MiB)"
            )
            too_large = Diagnostic(f.path, 1, 1, 1, 2, "error", "file-too-large", message)
            linted.append(LintedFile(f.path, f.blob, (too_large,)))
        else:
            found = memo.get((f.path, f.blob))
            assert found is not None
            linted.append(found)
    checked = Checked(linted, read, raw)
    cross = linter.across(
        [linter.FileResult(f.path, f.diagnostics, f.summary) for f in linted], checked.text
    )
    if cross:
        checked.files = [_with(f, cross[f.path]) if f.path in cross else f for f in checked.files]
    return checked


def _with(f: LintedFile, extra: list[Diagnostic]) -> LintedFile:
    from dataclasses import replace

    diagnostics = tuple(sorted(f.diagnostics + tuple(extra), key=lambda d: (d.line, d.column)))
    failed = any(d.severity == "error" for d in extra)
    if failed:
        return replace(f, diagnostics=diagnostics, document=None, checksum=None)
    return replace(f, diagnostics=diagnostics)
