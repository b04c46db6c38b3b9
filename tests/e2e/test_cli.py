"""The `dwf` command as a user runs it: a real process, its exit code, stdout and stderr."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
INVALID = EXAMPLES / "invalid"
DWF = shutil.which("dwf", path=str(Path(sys.executable).parent)) or "dwf"


def dwf(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "GITHUB_ACTIONS"}
    environ.update(env or {})
    proc = subprocess.run(
        [DWF, *args], cwd=cwd, env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def test_examples_lint_clean():
    proc = dwf("lint", "--strict", "examples")
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.strip() == "no problems found in 5 files"


def test_text_format_shows_position_source_line_and_caret():
    proc = dwf("lint", "examples/invalid/cycle.yaml")
    assert proc.returncode == 1
    header, source, caret = proc.stdout.splitlines()[:3]
    assert header.startswith("examples/invalid/cycle.yaml:")
    assert header.endswith("[cycle]") and ": error: edges form a cycle:" in header
    line = int(header.split(":")[1])
    assert source.endswith(
        (INVALID / "cycle.yaml").read_text().splitlines()[line - 1].expandtabs(4).rstrip()
    )
    assert "^" in caret


def test_json_format_and_exit_code():
    proc = dwf("lint", "--format", "json", "examples/invalid/unknown-edge-target.yaml")
    assert proc.returncode == 1
    [finding] = json.loads(proc.stdout)
    assert set(finding) == {
        "path",
        "line",
        "column",
        "endLine",
        "endColumn",
        "severity",
        "rule",
        "message",
    }
    assert finding["rule"] == "unknown-edge-target"
    assert finding["line"] >= 1 and finding["column"] >= 1


def test_github_format_is_the_default_under_github_actions():
    proc = dwf("lint", "examples/invalid/invalid-cron.yaml", env={"GITHUB_ACTIONS": "true"})
    assert proc.returncode == 1
    assert proc.stdout.startswith("::error file=examples/invalid/invalid-cron.yaml,line=")
    assert "title=invalid-cron::" in proc.stdout


def test_sarif_format():
    proc = dwf("lint", "--format", "sarif", "examples/invalid/schema-value.yaml")
    assert proc.returncode == 1
    log = json.loads(proc.stdout)
    assert log["version"] == "2.1.0"
    [result] = log["runs"][0]["results"]
    assert result["ruleId"] == "schema-value"


def test_warnings_fail_only_with_strict():
    assert dwf("lint", "examples/invalid/unused-var.yaml").returncode == 0
    assert dwf("lint", "--strict", "examples/invalid/unused-var.yaml").returncode == 1


def test_a_bad_file_does_not_stop_the_others(tmp_path):
    (tmp_path / "binary.yaml").write_bytes(b"\x00\x01\x02")
    (tmp_path / "empty.yaml").write_text("")
    (tmp_path / "deep.yaml").write_text("x: " + "[" * 100_000 + "]" * 100_000)
    shutil.copy(INVALID / "cycle.yaml", tmp_path / "cycle.yaml")
    proc = dwf("lint", "--format", "json", str(tmp_path))
    assert proc.returncode == 1
    rules = {Path(d["path"]).name: d["rule"] for d in json.loads(proc.stdout)}
    assert rules == {
        "binary.yaml": "file-unreadable",
        "empty.yaml": "not-a-mapping",
        "deep.yaml": "yaml-too-deep",
        "cycle.yaml": "cycle",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("lint", "no/such/file.yaml"), "no such file or directory"),
        (("lint", "--format", "xml", "examples"), "Invalid value for '--format'"),
    ],
)
def test_usage_and_io_errors_exit_2(args, message):
    proc = dwf(*args)
    assert proc.returncode == 2
    assert message in proc.stderr


def test_lint_without_paths_uses_the_workflows_folder(tmp_path):
    assert dwf("lint", cwd=tmp_path).returncode == 2
    shutil.copytree(EXAMPLES / "workflows", tmp_path / "workflows")
    proc = dwf("lint", cwd=tmp_path)
    assert proc.returncode == 0
    assert "5 files" in proc.stdout


def test_parallel_lint_reports_exactly_what_a_serial_lint_does(tmp_path):
    sources = sorted(INVALID.glob("*.yaml")) + sorted((EXAMPLES / "workflows").glob("*.yaml"))
    for i in range(3):  # enough files to pass the threshold where a process pool is used
        for source in sources:
            (tmp_path / f"{i}-{source.name}").write_bytes(source.read_bytes())
    serial = dwf("lint", "--format", "json", "-j", "1", str(tmp_path))
    parallel = dwf("lint", "--format", "json", "-j", "2", str(tmp_path))
    assert json.loads(parallel.stdout) == json.loads(serial.stdout)
    assert len(json.loads(serial.stdout)) > 50


def test_schema_prints_the_schema_file():
    proc = dwf("schema")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == json.loads(
        (ROOT / "schemas/workflow.schema.json").read_text()
    )


def test_graph_draws_mermaid_and_dot():
    mermaid = dwf("graph", "examples/workflows/retry-and-recover.yaml")
    assert mermaid.returncode == 0 and mermaid.stdout.startswith("flowchart TD")
    assert "-.->" in mermaid.stdout  # a failure edge
    dot = dwf("graph", "--format", "dot", "examples/workflows/retry-and-recover.yaml")
    assert dot.returncode == 0 and dot.stdout.startswith("digraph ")


def test_graph_of_an_invalid_file_shows_its_findings():
    proc = dwf("graph", "examples/invalid/cycle.yaml")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "[cycle]" in proc.stderr


@pytest.mark.parametrize("command", [(), ("lint",), ("graph",), ("schema",)])
def test_help(command):
    proc = dwf(*command, "--help")
    assert proc.returncode == 0
    assert "Usage: dwf" in proc.stdout
