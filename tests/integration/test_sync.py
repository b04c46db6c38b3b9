"""GitOps sync (SPEC §6) against real local git repositories and a real Postgres."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from runner.engine.requests import StartRequest
from runner.settings import Settings
from runner.store import sync as sync_store
from runner.store import triggers, workflows
from runner.store.database import Database
from runner.sync.apply import Syncer
from runner.sync.source import GitSource
from tests.gitrepo import GitRepo, flow
from tests.waiting import until

pytestmark = pytest.mark.anyio


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return GitRepo(tmp_path / "repo")


def syncer(
    db: Database, settings: Settings, repo: GitRepo, replica: str = "r1", **source: str
) -> Syncer:
    url = source.get("url", str(repo.root))
    git = GitSource(url, source.get("branch", "main"), source.get("folder", ""),
                    cache_root=settings.home / "git")  # fmt: skip
    return Syncer(db, settings, git, replica=replica)


async def state(db: Database, settings: Settings) -> dict[str, tuple[str, int | None, str]]:
    """Every workflow: (status, current version, managed by)."""
    async with db.connection() as conn:
        rows = await sync_store.current_state(conn, settings.tenant)
    return {r.workflow_id: (r.status, r.current_version, r.managed_by) for r in rows}


async def versions(db: Database, settings: Settings, workflow_id: str) -> list[int]:
    async with db.connection() as conn:
        return [v.version for v in await workflows.versions(conn, settings.tenant, workflow_id)]


async def trigger_ids(db: Database, settings: Settings, workflow_id: str) -> list[str]:
    async with db.connection() as conn:
        return [
            t.trigger_id for t in await triggers.for_workflow(conn, settings.tenant, workflow_id)
        ]


def outcomes(run: sync_store.SyncRunRow) -> dict[str, str]:
    return {f["path"]: f["outcome"] for f in run.files}


async def test_commit_and_sync_records_versions_with_their_source_and_triggers(db, settings, repo):
    repo.write("workflows/a.yaml", flow("a", cron="0 9 * * 1-5", hook="a/new"))
    repo.write("workflows/b.yaml", flow("b", status="draft"))
    repo.write("README.md", "not a workflow\n")
    commit = repo.commit()
    run = await syncer(db, settings, repo).sync("cli")
    assert run is not None and run.status == "applied", run
    assert run.commit == commit and run.finished_at is not None
    assert run.summary == {"files": 2, "added": 2}
    assert outcomes(run) == {"workflows/a.yaml": "added", "workflows/b.yaml": "added"}
    assert await state(db, settings) == {"a": ("Active", 1, "git"), "b": ("Draft", 1, "git")}
    async with db.connection() as conn:
        version = await workflows.get_definition(conn, settings.tenant, "a")
    assert version.source == f"{repo.root}@{commit}:workflows/a.yaml"
    # Only an Active workflow has trigger rows.
    assert await trigger_ids(db, settings, "a") == ["by-hand", "hook", "timer"]
    assert await trigger_ids(db, settings, "b") == []
    # Each version's plan is compiled and stored by the sync: no worker compiles it.
    async with db.connection() as conn:
        for workflow_id in ("a", "b"):
            stored = await workflows.get_definition(conn, settings.tenant, workflow_id)
            plan = await workflows.get_plan(conn, settings.tenant, stored.checksum, 1)
            assert plan is not None and plan["workflowId"] == workflow_id


async def test_a_change_makes_a_new_version_and_triggers_follow(db, settings, repo):
    repo.write("workflows/a.yaml", flow("a", cron="0 9 * * 1-5"))
    repo.commit()
    sync = syncer(db, settings, repo)
    await sync.sync("cli")
    repo.write("workflows/a.yaml", flow("a", message="changed", hook="a/hook"))
    commit = repo.commit()
    run = await sync.sync("cli")
    assert run is not None and run.status == "applied"
    assert outcomes(run) == {"workflows/a.yaml": "updated"}
    assert run.files[0]["version"] == 2
    assert await versions(db, settings, "a") == [2, 1]
    assert await trigger_ids(db, settings, "a") == ["by-hand", "hook"]
    async with db.connection() as conn:
        version = await workflows.get_definition(conn, settings.tenant, "a")
    assert version.source_commit == commit
    assert version.definition["nodes"][1]["parameters"]["message"] == "changed"


async def test_reformatting_makes_no_new_version(db, settings, repo):
    repo.write("workflows/a.yaml", flow("a"))
    repo.commit()
    sync = syncer(db, settings, repo)
    await sync.sync("cli")
    reformatted = "# a comment, new layout\n" + flow("a").replace(
        "startNode: first", "startNode:   'first'   # quoted now"
    )
    repo.write("workflows/a.yaml", reformatted)
    repo.commit()
    run = await sync.sync("cli")
    assert run is not None and run.status == "unchanged"
    assert run.summary == {"files": 1, "unchanged": 1} and run.files == []
    assert await versions(db, settings, "a") == [1]


async def test_a_deleted_file_archives_its_workflow_and_a_running_execution_finishes(
    db, settings, daemon, repo
):
    repo.write("workflows/keep.yaml", flow("keep"))
    repo.write("workflows/slow.yaml", flow("slow", delay="1500ms", cron="*/5 * * * *"))
    repo.commit()
    sync = syncer(db, settings, repo)
    await sync.sync("cli")
    running = asyncio.create_task(
        daemon.execute(StartRequest(workflow_id="slow", trigger_type="api"))
    )

    async def started() -> bool:
        async with db.connection() as conn:
            cur = await conn.execute("SELECT status FROM workflow_executions")
            return [r["status"] for r in await cur.fetchall()] == ["Running"]

    await until(started, 10, "the execution to start")
    repo.delete("workflows/slow.yaml")
    repo.commit()
    run = await sync.sync("cli")
    assert run is not None and run.status == "applied"
    assert outcomes(run) == {"workflows/slow.yaml": "archived"}
    assert (await state(db, settings))["slow"] == ("Archived", 1, "git")
    assert await trigger_ids(db, settings, "slow") == []
    finished = await asyncio.wait_for(running, 10)
    assert finished.status == "Succeeded"
    # Archived: no new execution starts.
    with pytest.raises(Exception, match="Archived"):
        await daemon.starts.start(StartRequest(workflow_id="slow", trigger_type="api"))


async def test_a_bad_commit_keeps_the_last_good_version_and_reports_diagnostics(db, settings, repo):
    repo.write("workflows/a.yaml", flow("a"))
    repo.write("workflows/b.yaml", flow("b"))
    repo.commit()
    sync = syncer(db, settings, repo)
    await sync.sync("cli")
    repo.write("workflows/a.yaml", flow("a").replace("startNode: first", "startNode: nowhere"))
    repo.write("workflows/b.yaml", "id: [b\n")
    repo.write("workflows/c.yaml", flow("c", message="fine"))
    repo.commit()
    run = await sync.sync("cli")
    assert run is not None and run.status == "applied", run  # c was added
    assert outcomes(run) == {
        "workflows/a.yaml": "invalid",
        "workflows/b.yaml": "invalid",
        "workflows/c.yaml": "added",
    }
    assert run.summary["invalid"] == 2
    by_path = {f["path"]: f for f in run.files}
    [problem] = by_path["workflows/a.yaml"]["diagnostics"]
    assert problem["rule"] == "unknown-start-node" and problem["line"] == 5
    assert "nowhere" in problem["message"]
    assert by_path["workflows/b.yaml"]["diagnostics"][0]["rule"] == "yaml-syntax"
    # The broken files' workflows keep running their last good version (neither is archived).
    assert await state(db, settings) == {
        "a": ("Active", 1, "git"),
        "b": ("Active", 1, "git"),
        "c": ("Active", 1, "git"),
    }


async def test_publish_time_validation_refuses_an_active_workflow_starting_a_draft(
    db, settings, repo
):
    repo.write("workflows/parent.yaml", flow("parent", child="child"))
    repo.write("workflows/child.yaml", flow("child", status="draft"))
    repo.commit()
    run = await syncer(db, settings, repo).sync("cli")
    assert run is not None
    parent = next(f for f in run.files if f["path"] == "workflows/parent.yaml")
    assert parent["outcome"] == "invalid"
    assert parent["diagnostics"][0]["rule"] == "subworkflow-not-active"
    assert "child" in parent["diagnostics"][0]["message"]
    assert await state(db, settings) == {"child": ("Draft", 1, "git")}


async def test_mass_delete_is_refused_unless_allowed(db, settings, repo):
    for name in ("a", "b", "c"):
        repo.write(f"workflows/{name}.yaml", flow(name))
    repo.commit()
    sync = syncer(db, settings, repo)
    await sync.sync("cli")
    repo.delete("workflows/a.yaml")
    repo.delete("workflows/b.yaml")
    repo.commit()
    run = await sync.sync("cli")
    assert run is not None and run.status == "refused"
    assert "would archive 2 of the 3 workflows" in str(run.error)
    assert "--allow-mass-delete" in str(run.error)
    assert {k: v[0] for k, v in (await state(db, settings)).items()} == {
        "a": "Active", "b": "Active", "c": "Active",
    }  # fmt: skip
    run = await sync.sync("cli", allow_mass_delete=True)
    assert run is not None and run.status == "applied"
    assert {k: v[0] for k, v in (await state(db, settings)).items()} == {
        "a": "Archived", "b": "Archived", "c": "Active",
    }  # fmt: skip


async def test_deleting_every_workflow_is_refused_even_below_the_share(db, settings, repo):
    repo.write("workflows/only.yaml", flow("only"))
    repo.commit()
    sync = syncer(db, settings, repo)
    await sync.sync("cli")
    repo.delete("workflows/only.yaml")
    repo.commit()
    lenient = dataclasses.replace(settings, sync_max_archive_share=1.0)
    run = await Syncer(db, lenient, sync.source, replica=sync.replica).sync("cli")
    assert run is not None and run.status == "refused" and "every one" in str(run.error)


async def test_two_replicas_syncing_at_once_apply_once(settings, repo, tmp_path):
    for i in range(30):
        repo.write(f"workflows/w{i}.yaml", flow(f"w{i}", cron="0 * * * *"))
    repo.commit()
    other = dataclasses.replace(settings, home=tmp_path / "home2")
    async with Database.open(settings) as db1, Database.open(other) as db2:
        one, two = syncer(db1, settings, repo, "r1"), syncer(db2, other, repo, "r2")
        # A push or `dwf sync` waits for the lock, then finds nothing left to do.
        runs = await asyncio.gather(one.sync("cli", wait=True), two.sync("cli", wait=True))
        assert sorted(r.status for r in runs if r) == ["applied", "unchanged"]
        # The interval skips while another replica holds the lock.
        async with db1.connection() as conn:
            assert await sync_store.try_lock(conn, settings.tenant)
            assert await two.sync("interval") is None
            await sync_store.unlock(conn, settings.tenant)
        async with db1.connection() as conn:
            cur = await conn.execute("SELECT count(*) AS n FROM workflow_definitions")
            assert (await cur.fetchone())["n"] == 30
            cur = await conn.execute("SELECT count(*) AS n FROM workflow_triggers")
            assert (await cur.fetchone())["n"] == 60
            cur = await conn.execute("SELECT count(*) AS n FROM sync_runs")
            assert (await cur.fetchone())["n"] == 2


async def test_a_push_already_covered_by_a_later_sync_is_not_synced_again(db, settings, repo):
    repo.write("workflows/a.yaml", flow("a"))
    repo.commit()
    async with db.connection() as conn:
        cur = await conn.execute("SELECT now() AS at")
        pushed_at = (await cur.fetchone())["at"]
    sync = syncer(db, settings, repo)
    first = await sync.sync("interval")
    again = await sync.sync("webhook", wait=True, since=pushed_at)
    assert first is not None and again is not None and again.sync_id == first.sync_id


async def test_an_unreachable_remote_fails_the_sync_and_changes_nothing(
    db, settings, repo, tmp_path
):
    repo.write("workflows/a.yaml", flow("a"))
    repo.commit()
    await syncer(db, settings, repo).sync("cli")
    gone = syncer(db, settings, repo, url=str(tmp_path / "no-such-repo"))
    run = await gone.sync("cli")
    assert run is not None and run.status == "failed" and run.commit is None
    assert "does not appear to be a git repository" in str(run.error)
    port = _closed_port()
    run = await syncer(db, settings, repo, url=f"http://127.0.0.1:{port}/r.git").sync("cli")
    assert run is not None and run.status == "failed"
    assert "127.0.0.1" in str(run.error)
    assert await state(db, settings) == {"a": ("Active", 1, "git")}


async def test_a_missing_branch_fails_the_sync_naming_it(db, settings, repo):
    repo.write("workflows/a.yaml", flow("a"))
    repo.commit()
    run = await syncer(db, settings, repo, branch="release").sync("cli")
    assert run is not None and run.status == "failed"
    assert run.error == f"{repo.root}: branch 'release' does not exist"
    assert await state(db, settings) == {}


async def test_a_corrupt_repository_fails_the_sync_and_changes_nothing(db, settings, repo):
    repo.write("workflows/a.yaml", flow("a"))
    repo.commit()
    sync = syncer(db, settings, repo)
    await sync.sync("cli")
    repo.write("workflows/a.yaml", flow("a", message="new"))
    repo.commit()
    for blob in (repo.root / ".git" / "objects").glob("??/*"):
        blob.chmod(0o644)
        blob.write_bytes(b"garbage")
    run = await sync.sync("cli")
    assert run is not None and run.status == "failed" and run.error
    assert await versions(db, settings, "a") == [1]


async def test_a_damaged_cache_is_rebuilt(db, settings, repo):
    repo.write("workflows/a.yaml", flow("a"))
    repo.commit()
    sync = syncer(db, settings, repo)
    await sync.sync("cli")
    for path in sync.source.cache.joinpath("objects").glob("??/*"):
        path.chmod(0o644)
        path.write_bytes(b"garbage")
    repo.write("workflows/a.yaml", flow("a", message="new"))
    repo.commit()
    run = await sync.sync("cli")
    assert run is not None and run.status == "applied", run.error
    assert await versions(db, settings, "a") == [2, 1]


async def test_symlinks_and_files_outside_the_folder_are_never_read(db, settings, repo, tmp_path):
    secret = tmp_path / "outside.yaml"
    secret.write_text(flow("stolen"))
    repo.write("flows/workflows/a.yaml", flow("a"))
    (repo.root / "flows/workflows/link.yaml").symlink_to(secret)
    (repo.root / "flows/workflows/inside-link.yaml").symlink_to("a.yaml")
    repo.write("elsewhere/b.yaml", flow("b"))
    repo.write("flows/workflows/.hidden/c.yaml", flow("c"))
    repo.commit()
    run = await syncer(db, settings, repo, folder="flows").sync("cli")
    assert run is not None and run.status == "applied"
    assert outcomes(run) == {
        "flows/workflows/a.yaml": "added",
        "flows/workflows/inside-link.yaml": "ignored",
        "flows/workflows/link.yaml": "ignored",
    }
    ignored = next(f for f in run.files if f["path"] == "flows/workflows/link.yaml")
    assert "symbolic link" in ignored["diagnostics"][0]["message"]
    assert await state(db, settings) == {"a": ("Active", 1, "git")}


async def test_a_folder_climbing_out_of_the_repository_is_refused(settings, repo):
    with pytest.raises(Exception, match="inside the repository"):
        GitSource(str(repo.root), "main", "../etc", cache_root=settings.home / "git")


async def test_a_workflow_made_over_the_api_is_not_taken_over(db, settings, daemon, repo):
    from runner.spec import loader

    data = loader.load(flow("a"))
    await daemon.versions.record(data, tenant=settings.tenant, source_kind="api", status="Active")
    repo.write("workflows/a.yaml", flow("a", message="from git"))
    repo.commit()
    run = await syncer(db, settings, repo).sync("cli")
    assert run is not None
    assert run.files[0]["outcome"] == "invalid"
    assert run.files[0]["diagnostics"][0]["rule"] == "workflow-not-from-git"
    assert await state(db, settings) == {"a": ("Active", 1, "api")}


async def test_a_resync_lints_only_changed_files(db, settings, repo):
    for i in range(5):
        repo.write(f"workflows/w{i}.yaml", flow(f"w{i}"))
    repo.commit()
    sync = syncer(db, settings, repo)
    await sync.sync("cli")
    assert sync.memo.cache_info().misses == 5
    repo.write("workflows/w3.yaml", flow("w3", message="changed"))
    repo.commit()
    run = await sync.sync("cli")
    assert run is not None and outcomes(run) == {"workflows/w3.yaml": "updated"}
    assert sync.memo.cache_info().misses == 6  # only the changed file was linted again


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
