"""Every lint rule has a fixture in examples/invalid that fails exactly that rule, on its line.

A YAML fixture says what it expects on its first line: `# expect: <rule-id> line <N>`. A folder
(for the rules across files) holds an `EXPECT` file, `<file name> <rule-id> <line>`, naming the
file that carries the finding; a fixture that cannot hold a comment (a binary file) is listed in
examples/invalid/EXPECT. The examples in examples/workflows must lint clean, warnings included.
"""

from __future__ import annotations

import os
import re
import shutil
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import pytest

from runner.lint import linter
from runner.spec.rules import RULES

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
INVALID = EXAMPLES / "invalid"
WORKFLOWS = EXAMPLES / "workflows"
#: Rules without a committed fixture: one needs a bug, one a 1 MiB file, one a FIFO or device
#: (git stores neither); the last two are made in tmp_path below.
NO_FIXTURE = frozenset({"internal-error", "file-too-large", "file-not-regular"})
_HEADER = re.compile(r"^# expect: (?P<rule>[a-z0-9-]+) line (?P<line>[0-9]+)$")


@dataclass(frozen=True)
class Expectation:
    """A fixture (a file or a folder), the rule it must fail, and where."""

    fixture: Path
    rule: str
    file: Path
    line: int


def _header(path: Path) -> tuple[str, int] | None:
    with path.open("rb") as handle:
        first = handle.readline().decode("utf-8", "replace").rstrip("\r\n")
    match = _HEADER.match(first)
    return (match["rule"], int(match["line"])) if match else None


def _expect_file(folder: Path) -> dict[str, tuple[str, int]]:
    """`<file name> <rule-id> <line>` rows of a folder's EXPECT file, by file name."""
    rows = {}
    for row in (folder / "EXPECT").read_text(encoding="utf-8").splitlines():
        if row.strip():
            name, rule, line = row.split()
            rows[name] = (rule, int(line))
    return rows


def expectations() -> list[Expectation]:
    """Every fixture of examples/invalid with what it expects."""
    listed = _expect_file(INVALID)
    found = []
    for path in sorted(INVALID.iterdir()):
        if path.is_dir():
            ((name, (rule, line)),) = _expect_file(path).items()
            found.append(Expectation(path, rule, path / name, line))
        elif path.suffix == ".yaml":
            expected = listed.get(path.name) or _header(path)
            assert expected is not None, f"{path.name}: no `# expect:` header and not in EXPECT"
            found.append(Expectation(path, expected[0], path, expected[1]))
    return found


EXPECTATIONS = expectations()
#: The fixtures that are text, where a comment can go.
TEXT_EXPECTATIONS = [e for e in EXPECTATIONS if e.rule != "file-unreadable"]


def _findings(result: linter.LintResult) -> list[tuple[str, str, int]]:
    return [(Path(d.path).name, d.rule, d.line) for d in result.diagnostics]


@pytest.mark.parametrize("case", EXPECTATIONS, ids=[e.fixture.name for e in EXPECTATIONS])
def test_fixture_fails_exactly_its_rule_on_its_line(case: Expectation):
    result = linter.lint_paths([case.fixture], jobs=1)
    findings = _findings(result)
    assert findings, f"{case.fixture.name}: expected `{case.rule}`, the linter found nothing"
    assert findings == [(case.file.name, case.rule, case.line)], "\n".join(
        f"{d.path}:{d.line}:{d.column}: {d.severity}: {d.message} [{d.rule}]"
        for d in result.diagnostics
    )
    assert result.diagnostics[0].severity == RULES[case.rule].severity


@pytest.mark.parametrize("case", TEXT_EXPECTATIONS, ids=[e.fixture.name for e in TEXT_EXPECTATIONS])
def test_an_ignore_comment_on_the_reported_line_silences_the_finding(
    case: Expectation, tmp_path: Path
):
    # docs/lint-rules.md promises this for every rule.
    copy = tmp_path / case.fixture.name
    if case.fixture.is_dir():
        shutil.copytree(case.fixture, copy)
        target = copy / case.file.name
    else:
        shutil.copy(case.fixture, copy)
        target = copy
    lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[case.line - 1] = f"{lines[case.line - 1].rstrip()} # dwf-lint: ignore={case.rule}\n"
    target.write_text("".join(lines), encoding="utf-8")
    assert _findings(linter.lint_paths([copy], jobs=1)) == []


def test_fixture_names_match_their_rule():
    for case in EXPECTATIONS:
        assert case.fixture.name.removesuffix(".yaml") == case.rule, case.fixture
        assert case.rule in RULES, f"{case.fixture.name}: `{case.rule}` is not a rule id"


def test_folder_fixtures_repeat_the_expectation_in_the_file_header():
    for case in EXPECTATIONS:
        if case.fixture.is_dir():
            assert _header(case.file) == (case.rule, case.line), case.file


def test_every_rule_has_a_fixture():
    covered = {case.rule for case in EXPECTATIONS}
    assert sorted(set(RULES) - NO_FIXTURE - covered) == []
    assert len(covered) == len(EXPECTATIONS), "two fixtures for one rule"


def test_every_rule_is_documented():
    docs = (EXAMPLES.parent / "docs" / "lint-rules.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^## ([a-z0-9-]+)$", docs, flags=re.MULTILINE))
    assert sorted(set(RULES) - headings) == []


def test_file_too_large(tmp_path: Path):
    path = tmp_path / "too-large.yaml"
    valid = (WORKFLOWS / "hello.yaml").read_bytes()
    padding = b"# padding to pass the limit\n" * (1024 * 1024 // 28 + 1)
    path.write_bytes(valid + padding)
    assert path.stat().st_size > 1024 * 1024
    result = linter.lint_paths([path], jobs=1)
    assert _findings(result) == [(path.name, "file-too-large", 1)]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_file_not_regular_is_refused_without_reading(tmp_path: Path):
    # A FIFO would block a read forever and /dev/zero never ends: both are refused from stat.
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    result = linter.lint_paths([tmp_path / "pipe.yaml", tmp_path / "zero.yaml"], jobs=1)
    assert _findings(result) == [
        ("pipe.yaml", "file-not-regular", 1),
        ("zero.yaml", "file-not-regular", 1),
    ]
    pipe, zero = (d.message for d in result.diagnostics)
    assert pipe.startswith("the path is a named pipe (FIFO);")
    assert zero.startswith("the path is a symbolic link to /dev/zero, a character device;")
    # Found in a folder too, rather than skipped as if it were not there.
    assert _findings(linter.lint_paths([tmp_path], jobs=1)) == _findings(result)


def test_file_too_large_is_refused_before_reading(tmp_path: Path):
    path = tmp_path / "sparse.yaml"
    with path.open("wb") as handle:  # 200 MB that take no disk, only memory once read
        handle.truncate(200 * 1000 * 1000)
    tracemalloc.start()
    try:
        result = linter.lint_paths([path], jobs=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, f"linting it took {peak:,} bytes"
    assert _findings(result) == [(path.name, "file-too-large", 1)]
    assert "200,000,000 bytes" in result.diagnostics[0].message


def test_examples_lint_clean():
    result = linter.lint_paths([WORKFLOWS], jobs=1)
    assert result.files_checked == len(list(WORKFLOWS.glob("*.yaml")))
    assert [f"{d.path}:{d.line}: {d.message} [{d.rule}]" for d in result.diagnostics] == []


def test_examples_lint_clean_as_a_repository():
    # examples/ holds dwf.yaml and workflows/: a repository, whose workflows/ alone is linted
    # (the fixtures of invalid/ and the connector example beside it are not workflows of it).
    assert (EXAMPLES / "dwf.yaml").is_file()
    result = linter.lint_paths([EXAMPLES], jobs=1)
    assert result.files_checked == len(list(WORKFLOWS.glob("*.yaml"))) + 1  # and its dwf.yaml
    assert [f"{d.path}:{d.line}: {d.message} [{d.rule}]" for d in result.diagnostics] == []


def test_connector_example_lacks_only_its_connectors():
    # Its action types come from connector packages that are not registered yet.
    result = linter.lint_paths([EXAMPLES / "connectors" / "monday-to-slack.yaml"], jobs=1)
    assert {d.rule for d in result.diagnostics} <= {"unknown-action-type"}


def test_alias_bomb_is_refused_quickly():
    started = time.perf_counter()
    result = linter.lint_paths([INVALID / "yaml-aliases.yaml"], jobs=1)
    elapsed = time.perf_counter() - started
    assert {d.rule for d in result.diagnostics} == {"yaml-aliases"}
    assert elapsed < 2.0, f"the alias bomb took {elapsed:.2f}s to refuse"
