"""The `dwf` command as a user runs it: a real process, its exit code, stdout and stderr."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gitrepo import GitRepo, flow
from tests.waiting import until_sync

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
    assert proc.stdout.strip() == "no problems found in 6 files"  # 5 workflows and dwf.yaml


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


@dataclass(frozen=True)
class Measured:
    """A finished `dwf` process: its exit code, output, and what it cost."""

    returncode: int
    stdout: str
    stderr: str
    wall_seconds: float
    cpu_seconds: float
    max_rss_mb: float


# Runs a command and writes its own rusage as JSON to argv[1]. A child's peak memory counts the
# process it was forked from, so the pytest process (100 MB) cannot be that parent itself.
_LAUNCHER = """
import json, os, sys, time
started = time.monotonic()
pid = os.posix_spawn(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as out:
    json.dump({
        "returncode": os.waitstatus_to_exitcode(status),
        "wall": time.monotonic() - started,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss": usage.ru_maxrss / 1024,
    }, out)
"""


def measured(*args: str, tmp_path: Path, timeout: float = 20) -> Measured:
    """Run `dwf` and read this very process's CPU time and peak memory (wait4's rusage)."""
    out, err, cost = (tmp_path / f"measured.{kind}" for kind in ("out", "err", "json"))
    cost.unlink(missing_ok=True)
    with out.open("wb") as stdout, err.open("wb") as stderr:
        launcher = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER, str(cost), DWF, *args],
            cwd=tmp_path, stdout=stdout, stderr=stderr, start_new_session=True,
        )  # fmt: skip
        try:
            until_sync(
                lambda: launcher.poll() is not None, timeout, f"dwf {' '.join(args)} to answer"
            )
        finally:
            if launcher.poll() is None:
                os.killpg(launcher.pid, signal.SIGKILL)  # dwf too, in the launcher's session
                launcher.wait()
    figures = json.loads(cost.read_text())
    return Measured(
        figures["returncode"],
        out.read_text(encoding="utf-8"),
        err.read_text(encoding="utf-8"),
        figures["wall"],
        figures["cpu"],
        figures["rss"],
    )


def hostile_files(folder: Path) -> dict[str, Path]:
    """Files that once made `dwf lint` slow, huge, hang or die, by what they are."""
    folder.mkdir()
    files = {name: folder / f"{name}.yaml" for name in ("sparse", "fifo", "zero", "line")}
    with files["sparse"].open("wb") as handle:  # 200 MB that take no disk
        handle.truncate(200 * 1000 * 1000)
    os.mkfifo(files["fifo"])
    files["zero"].symlink_to("/dev/zero")
    files["line"].write_text("x: " + "a" * 2_000_000 + "\n")
    return files


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="FIFOs, /dev/zero, wait4")
def test_lint_answers_quickly_and_small_on_any_file(tmp_path):
    expected = {
        "sparse": ("file-too-large", "200,000,000 bytes"),
        "fifo": ("file-not-regular", "a named pipe (FIFO)"),
        "zero": ("file-not-regular", "a symbolic link to /dev/zero, a character device"),
        "line": ("file-too-large", "2,000,004 bytes"),
    }
    for name, path in hostile_files(tmp_path / "files").items():
        run = measured("lint", str(path), tmp_path=tmp_path)
        assert run.returncode == 1, run.stderr
        rule, says = expected[name]
        first = run.stdout.splitlines()[0]
        assert first.startswith(f"{path}:1:1: error: ") and first.endswith(f"[{rule}]"), first
        assert says in first
        assert " | " not in run.stdout  # nothing of the file is echoed: it was never read
        # The budget is 1 s and 100 MB; CPU time, not wall time, so a busy machine cannot fail it.
        assert run.cpu_seconds < 1.0, (name, run)
        assert run.max_rss_mb < 100, (name, run)


def test_text_output_cuts_a_long_source_line(tmp_path):
    path = tmp_path / "long.yaml"
    path.write_text("x: " + "a" * 900_000 + ": b\n")  # under 1 MiB; `: ` in a plain value
    proc = dwf("lint", str(path))
    assert proc.returncode == 1
    header, source, caret, *_ = proc.stdout.splitlines()
    assert header.endswith("[yaml-syntax]")
    assert source.startswith("1 | …") and source.endswith("a: b")
    assert len(source) < 220
    assert source[caret.index("^")] == ":"


@pytest.mark.parametrize(
    ("fmt", "shown"),
    [
        ("text", "bad\\xff.yaml:"),
        ("json", '"path": "bad\\\\xff.yaml"'),
        ("github", "file=bad\\xff.yaml,"),
        ("sarif", '"uri": "bad%FF.yaml"'),
    ],
)
def test_a_file_name_that_is_not_utf8_is_escaped_in_every_format(tmp_path, fmt, shown):
    name = os.fsdecode(b"bad\xff.yaml")
    shutil.copy(INVALID / "cycle.yaml", tmp_path / name)
    proc = subprocess.run(
        [DWF, "lint", "--format", fmt, name], cwd=tmp_path, capture_output=True, check=False
    )
    assert proc.returncode == 1, proc.stderr
    stdout = proc.stdout.decode("utf-8")  # all of it is UTF-8 (was: a raw 0xff byte, a crash)
    assert shown in stdout
    if fmt in ("json", "sarif"):
        json.loads(stdout)
    missing = subprocess.run(
        [DWF, "lint", os.fsdecode(b"gone\xff.yaml")], cwd=tmp_path, capture_output=True,
        check=False,
    )  # fmt: skip
    assert missing.returncode == 2
    assert missing.stderr.decode("utf-8") == "dwf lint: gone\\xff.yaml: no such file or directory\n"


def test_graph_refuses_what_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    proc = dwf("graph", str(fifo))
    assert proc.returncode == 1
    assert "[file-not-regular]" in proc.stderr


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("5x", "'5x' is not a duration; write e.g. 250ms, 30s, 5m, 1h, 1d or 1h30m"),
        ("500ms", "'500ms' is not between 1s and 365d"),
        ("0.5", "'0.5' is not between 1s and 365d"),
        ("400d", "'400d' is not between 1s and 365d"),
    ],
)
def test_a_duration_flag_names_what_is_wrong(value, says):
    proc = dwf("serve", "--roles", "sync", "--repo", ".", "--interval", value)
    assert proc.returncode == 2
    assert f"Invalid value for '--interval': {says}" in proc.stderr


def test_duration_flags_take_the_yaml_syntax_and_plain_seconds():
    from runner.cli import params

    duration = params.Duration(minimum=1)
    assert [duration.convert(v, None, None) for v in ("5s", "1h30m", "1500ms", "30", "2.5")] == [
        5.0,
        5400.0,
        1.5,
        30.0,
        2.5,
    ]


@pytest.mark.slow
def test_serve_syncs_every_interval_given_as_a_duration(tmp_path, database_url):
    repo = GitRepo(tmp_path / "repo")
    repo.write("workflows/a.yaml", flow("a"))
    repo.commit()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("DWF_")} | {
        "DWF_DATABASE_URL": database_url,
        "DWF_HOME": str(tmp_path / "home"),
        "DWF_LOG_FORMAT": "json",
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [DWF, "serve", "--roles", "sync", "--repo", str(repo.root), "--interval", "1500ms"],
            env=environ, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            # Two syncs on the interval within seconds: 1.5 s, not the default 30 s.
            until_sync(
                lambda: log.read_text().count('"reason": "interval"') >= 2,
                20, "two interval syncs", interval=0.2,
            )  # fmt: skip
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(timeout=15) == 0, log.read_text()
    assert "Traceback" not in log.read_text()


@pytest.mark.parametrize("command", [(), ("lint",), ("graph",), ("schema",)])
def test_help(command):
    proc = dwf(*command, "--help")
    assert proc.returncode == 0
    assert "Usage: dwf" in proc.stdout
