"""docs/settings.md is the one table of `DWF_*` variables: it names every variable the runner
mentions, each of its rows is one the runner reads, and each documented default is the real one.

A variable is *mentioned* when it appears in any string literal under runner/ (help texts and
error messages included), and *read* when a string literal is exactly its name (the key the
runner looks up). `DWF_SECRET_<NAME>` stands for every `DWF_SECRET_*` name.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest

from runner.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "settings.md"
NAME = re.compile(r"DWF_[A-Z0-9_]+")
SECRET_PREFIX = "DWF_SECRET_"
SECRET_ROW = "DWF_SECRET_<NAME>"
TEST_ONLY_HEADING = "## Tests and benchmarks only"
#: A table row's first cell naming a variable, and its default cell's leading code span.
ROW = re.compile(r"^\|\s*`(DWF_[A-Z0-9_]+(?:<NAME>)?)`\s*\|([^|]*)\|")
CODE = re.compile(r"^`([^`]*)`")


@functools.cache
def _rows() -> dict[str, tuple[str, bool]]:
    """Each row of the tables: variable -> (its default cell, whether it is test/bench only)."""
    rows: dict[str, tuple[str, bool]] = {}
    test_only = False
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            test_only = line.strip() == TEST_ONLY_HEADING
        found = ROW.match(line)
        if found:
            name = found.group(1)
            assert name not in rows, f"docs/settings.md has two rows for {name}"
            rows[name] = (found.group(2).strip(), test_only)
    return rows


def _runner_rows() -> set[str]:
    return {name for name, (_, test_only) in _rows().items() if not test_only}


def _strings(folder: Path) -> list[tuple[str, str]]:
    """Every string literal of the Python files under `folder`: (where, text)."""
    found = []
    for path in sorted(folder.rglob("*.py")):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=where)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append((f"{where}:{node.lineno}", node.value))
    return found


def _row_of(name: str) -> str:
    """The row that documents `name`: itself, or the pattern row of a secret's variable."""
    return SECRET_ROW if name.startswith(SECRET_PREFIX) else name


def _documented(name: str, rows: set[str]) -> bool:
    """Whether `name` has a row; a name ending in `_` (`DWF_SECRET_*`) names a family, which
    some row must belong to."""
    if name.endswith("_"):
        return any(row.startswith(name) for row in rows)
    return _row_of(name) in rows


def test_the_tables_are_found() -> None:
    rows = _rows()
    assert {"DWF_DATABASE_URL", "DWF_AUTH_MODE", SECRET_ROW} <= _runner_rows()
    assert "DWF_TEST_DATABASE_URL" in rows and "DWF_TEST_DATABASE_URL" not in _runner_rows()


def test_every_variable_the_runner_mentions_is_a_row() -> None:
    rows = _runner_rows()
    missing = sorted(
        f"{name} ({where})"
        for where, text in _strings(ROOT / "runner")
        for name in NAME.findall(text)
        if not _documented(name, rows)
    )
    assert not missing, "add a row to docs/settings.md for: " + ", ".join(missing)


def test_every_row_is_a_variable_the_runner_reads() -> None:
    read = {_row_of(text) for _, text in _strings(ROOT / "runner") if NAME.fullmatch(text)}
    stale = sorted(_runner_rows() - read)
    assert not stale, (
        "docs/settings.md documents variables nothing under runner/ reads (remove their rows, "
        "or move them to the tests-and-benchmarks table): " + ", ".join(stale)
    )


def test_every_test_or_bench_variable_is_a_row_and_every_such_row_is_read() -> None:
    rows = _rows()
    read: dict[str, str] = {}
    for folder in ("tests", "bench"):
        for where, text in _strings(ROOT / folder):
            if NAME.fullmatch(text) and not text.startswith(SECRET_PREFIX):
                read.setdefault(text, where)
    missing = sorted(f"{name} ({where})" for name, where in read.items() if name not in rows)
    assert not missing, (
        f"add a row under {TEST_ONLY_HEADING!r} in docs/settings.md for: " + ", ".join(missing)
    )
    test_only = {name for name, (_, only) in rows.items() if only}
    stale = sorted(test_only - set(read))
    assert not stale, "test/bench rows that no test or benchmark reads: " + ", ".join(stale)


def test_the_docs_name_no_variable_the_table_lacks() -> None:
    rows = set(_rows())
    unknown = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in NAME.findall(path.read_text(encoding="utf-8")):
            if not _documented(name, rows):
                unknown.append(f"{name} ({path.relative_to(ROOT)})")
    assert not unknown, "variables named in the docs but not in docs/settings.md: " + ", ".join(
        sorted(set(unknown))
    )


@pytest.mark.parametrize(
    "name",
    sorted(
        name
        for name, (default, test_only) in _rows().items()
        if not test_only and CODE.match(default)
    ),
)
def test_setting_a_variable_to_its_documented_default_changes_nothing(name: str) -> None:
    found = CODE.match(_rows()[name][0])
    assert found is not None  # the parameters are the rows with a value
    value = found.group(1)
    assert Settings.from_env({name: value}) == Settings.from_env({}), (
        f"docs/settings.md says {name} defaults to {value!r}, but setting it changes the settings"
    )


def test_every_default_is_a_value_or_says_what_unset_means() -> None:
    # Rows without a value default must say what unset means; the runner's own variables with
    # a real default must show it as one, so the test above checks it.
    unchecked = sorted(
        name
        for name, (default, test_only) in _rows().items()
        if not test_only and not CODE.match(default) and not default.startswith("unset")
    )
    assert not unchecked, "write the default as `value` or `unset…`: " + ", ".join(unchecked)
