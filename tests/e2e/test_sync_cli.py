"""`dwf sync`, `dwf plan` and `dwf serve --roles sync` as a user runs them, on real git
repositories. `dwf plan` output is compared with golden files under tests/data/plan/ (rewrite
them on purpose with DWF_UPDATE_GOLDEN=1, then review the diff)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.test_serve import DWF, ROOT, env  # noqa: F401 (env: a fixture)
from tests.gitrepo import GitRepo, flow
from tests.waiting import until_sync

GOLDEN = ROOT / "tests" / "data" / "plan"
NOW = "2026-01-05T08:00:00"  # a Monday: schedules' next fire times are fixed


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


def dwf(*args: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:  # noqa: F811
    proc = subprocess.run(
        [DWF, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def base(repo: GitRepo) -> None:
    repo.write("workflows/hello.yaml", flow("hello", cron="0 9 * * 1-5"))
    repo.write("workflows/report.yaml", flow("report", status="draft"))
    repo.write("workflows/hook.yaml", flow("hook", hook="orders/new"))


def change(repo: GitRepo) -> None:
    text = flow("hello", message="changed", cron="30 7 * * *").replace(
        "    parameters: {message: start}",
        "    parameters: {message: start}\n    retry: {maxAttempts: 3}",
    )
    repo.write("workflows/hello.yaml", text)
    repo.write("workflows/report.yaml", flow("report", status="active"))
    repo.write("workflows/new.yaml", flow("new", status="draft"))


def reformat(repo: GitRepo) -> None:
    repo.write("workflows/hello.yaml", "# reformatted\n\n" + flow("hello", cron="0 9 * * 1-5"))


def delete(repo: GitRepo) -> None:
    repo.delete("workflows/hook.yaml")


def bad(repo: GitRepo) -> None:
    repo.write(
        "workflows/hello.yaml", flow("hello").replace("startNode: first", "startNode: nowhere")
    )
    repo.write("workflows/broken.yaml", "id: [broken\n")


def mass_delete(repo: GitRepo) -> None:
    repo.delete("workflows/hook.yaml")
    repo.delete("workflows/hello.yaml")


#: case: (what is synced first, or None for an empty database; the change in the checkout).
CASES: dict[str, tuple[Callable[[GitRepo], None] | None, Callable[[GitRepo], None]]] = {
    "first-sync": (None, base),
    "change": (base, change),
    "reformat": (base, reformat),
    "delete": (base, delete),
    "bad-commit": (base, bad),
    "mass-delete": (base, mass_delete),
}
EXIT_CODES = {"first-sync": 2, "change": 2, "reformat": 0, "delete": 2, "bad-commit": 1,
              "mass-delete": 1}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_matches_the_golden_files(case, env, repo):  # noqa: F811
    synced, changed = CASES[case]
    if synced is not None:
        synced(repo)
        repo.commit("base")
        proc = dwf("sync", "--repo", str(repo.root), env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    changed(repo)
    outputs = {}
    for fmt, suffix in (("text", "txt"), ("markdown", "md"), ("json", "json")):
        proc = dwf("plan", "--repo", str(repo.root), "--format", fmt, "--now", NOW,
                   "--detailed-exitcode", env=env)  # fmt: skip
        assert proc.returncode == EXIT_CODES[case], proc.stdout + proc.stderr
        outputs[suffix] = proc.stdout
    assert str(repo.root) not in "".join(outputs.values())  # nothing of this machine
    for suffix, text in outputs.items():
        golden = GOLDEN / f"{case}.{suffix}"
        if os.environ.get("DWF_UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text, encoding="utf-8")
        assert text == golden.read_text(encoding="utf-8"), f"{golden.name} differs"
    # What plan said is what sync does.
    plan = json.loads(outputs["json"])
    repo.commit("the change")
    proc = dwf("sync", "--repo", str(repo.root), "--output", "json", env=env)
    run = json.loads(proc.stdout)
    # The run also lists unchanged files with warnings; a plan shows what changes.
    shown = [f for f in run["files"] if f["outcome"] not in ("ignored", "unchanged")]
    done = {f["path"]: f["outcome"] for f in shown}
    planned = {w["path"]: w["action"] for w in plan["workflows"]}
    planned |= {p["path"]: p["outcome"] for p in plan["problems"]}
    if plan["refused"]:
        assert run["status"] == "refused" and proc.returncode == 1
    else:
        assert done == planned


def test_plan_without_changes_exits_0_and_without_the_flag_0_with_changes(env, repo):  # noqa: F811
    base(repo)
    proc = dwf("plan", "--repo", str(repo.root), env=env)
    assert proc.returncode == 0 and "3 to add" in proc.stdout
    proc = dwf("plan", "--repo", str(repo.root / "nowhere"), "--detailed-exitcode", env=env)
    assert proc.returncode == 1 and "no such folder" in proc.stderr


def test_sync_cli_reports_and_executions_show_the_source_of_what_ran(env, repo):  # noqa: F811
    repo.write("workflows/hello.yaml", flow("hello"))
    commit = repo.commit()
    proc = dwf("sync", "--repo", str(repo.root), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"sync applied: {repo.root} main at {commit[:12]}")
    assert "added     workflows/hello.yaml (hello v1)" in proc.stdout
    ran = dwf("run", "hello", "--output", "json", env=env)
    assert ran.returncode == 0, ran.stderr
    execution = json.loads(ran.stdout)["executionId"]
    shown = dwf("executions", "show", execution, env=env)
    assert f"source   {repo.root}@{commit}:workflows/hello.yaml" in shown.stdout
    # A local file of a workflow managed by git is refused, saying why.
    local = repo.root / "workflows" / "hello.yaml"
    refused = dwf("run", str(local), env=env)
    assert refused.returncode == 1 and "managed by git" in refused.stderr
    repo.write("workflows/hello.yaml", "id: [x\n")
    repo.commit()
    proc = dwf("sync", "--repo", str(repo.root), env=env)
    assert proc.returncode == 1
    assert "workflows/hello.yaml:2:1: error:" in proc.stdout
    missing = dwf("sync", "--repo", str(repo.root), "--branch", "nope", env=env)
    assert missing.returncode == 1 and "branch 'nope' does not exist" in missing.stdout
    assert dwf("sync", env=env).returncode == 2  # no repository given


def test_two_sync_processes_at_once_apply_once(env, repo, tmp_path):  # noqa: F811
    for i in range(40):
        repo.write(f"workflows/w{i}.yaml", flow(f"w{i}", cron="*/10 * * * *"))
    repo.commit()
    procs = [
        subprocess.Popen(
            [DWF, "sync", "--repo", str(repo.root), "--output", "json"],
            env=env | {"DWF_HOME": str(tmp_path / f"home{i}")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    statuses = sorted(json.loads(p.communicate(timeout=60)[0])["status"] for p in procs)
    assert statuses == ["applied", "unchanged"]
    proc = dwf("plan", "--repo", str(repo.root), "--detailed-exitcode", env=env)
    assert proc.returncode == 0, proc.stdout  # everything applied exactly once


def test_serve_with_the_sync_role_picks_up_a_commit_within_an_interval(env, repo, tmp_path):  # noqa: F811
    repo.write("workflows/a.yaml", flow("a"))
    repo.commit()
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [DWF, "serve", "--roles", "sync", "--repo", str(repo.root), "--interval", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        until_sync(
            lambda: '"sync applied"' in (tmp_path / "serve.log").read_text(),
            20, "the first sync to be applied", interval=0.2,
        )  # fmt: skip
        repo.write("workflows/b.yaml", flow("b"))
        repo.commit()
        until_sync(
            lambda: "b (workflows/b.yaml)" not in plan_text(env, repo),
            20, "the commit of b.yaml to be synced", interval=0.2,
        )  # fmt: skip
        assert "0 to add" in plan_text(env, repo)
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=15) == 0
        log.close()


def plan_text(env: dict[str, str], repo: GitRepo) -> str:  # noqa: F811
    return dwf("plan", "--repo", str(repo.root), env=env).stdout


def test_sync_plan_and_lint_read_the_repositorys_dwf_yaml(env, repo):  # noqa: F811
    repo.write("dwf.yaml", "tenant: acme\ndefaults:\n  options:\n    maxParallelActions: 4\n")
    repo.write("workflows/hello.yaml", flow("hello"))
    repo.commit()
    proc = dwf("sync", "--repo", str(repo.root), env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(tenant acme; 1 files: 1 added)" in proc.stdout
    # Compared with the tenant the repository names, nothing is left to do.
    proc = dwf("plan", "--repo", str(repo.root), "--detailed-exitcode", env=env)
    assert proc.returncode == 0 and "1 unchanged" in proc.stdout, proc.stdout
    # New defaults are a new version of every workflow that takes them.
    repo.write("dwf.yaml", "tenant: acme\ndefaults:\n  options:\n    maxParallelActions: 2\n")
    proc = dwf("plan", "--repo", str(repo.root), "--format", "json", env=env)
    [entry] = json.loads(proc.stdout)["workflows"]
    assert (entry["action"], entry["fields"]) == ("updated", ["options"])
    # A bad dwf.yaml: plan refuses, naming the line; lint reports it like a workflow file.
    repo.write("dwf.yaml", "tenant: acme\ndefault:\n  options: {}\n")
    proc = dwf("plan", "--repo", str(repo.root), env=env)
    assert proc.returncode == 1
    assert "dwf.yaml:2:1: error: unknown key `default` at the top level" in proc.stdout
    assert "REFUSED" in proc.stdout
    proc = dwf("lint", str(repo.root), env=env)
    assert proc.returncode == 1 and "dwf.yaml:2:1: error: unknown key `default`" in proc.stdout
    proc = dwf("lint", env=env, cwd=repo.root)  # no PATH: ./workflows and ./dwf.yaml
    assert proc.returncode == 1 and "dwf.yaml:2:1:" in proc.stdout


@pytest.mark.parametrize(
    ("zone", "now", "expected"),
    [
        ("Europe/London", "2026-10-24T12:00:00", "2026-10-25T01:30:00+01:00, "
         "2026-10-26T01:30:00+00:00, 2026-10-27T01:30:00+00:00"),
        ("Europe/London", "2026-03-28T12:00:00", "2026-03-29T02:00:00+01:00, "
         "2026-03-30T01:30:00+01:00, 2026-03-31T01:30:00+01:00"),
    ],
)  # fmt: skip
def test_plan_lists_the_fire_times_the_scheduler_fires_on_dst_days(env, repo, zone, now, expected):  # noqa: F811
    text = flow("nightly").replace(
        "  - {id: by-hand, type: manual}",
        f'  - {{id: nightly, type: schedule, cron: "30 1 * * *", timezone: {zone}}}',
    )
    repo.write("workflows/nightly.yaml", text)
    proc = dwf("plan", "--repo", str(repo.root), "--now", now, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"`30 1 * * *` {zone}; next {expected})" in proc.stdout
