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


# -- a fresh process resyncs from what the database knows (no relint) ------------------------


async def stored_files(db: Database, tenant: str = "default") -> dict[str, str]:
    async with db.connection() as conn:
        cur = await conn.execute("SELECT path, blob FROM sync_files WHERE tenant = %s", (tenant,))
        return {r["path"]: r["blob"] for r in await cur.fetchall()}


async def test_a_fresh_process_lints_only_the_files_changed_since_the_last_sync(db, settings, repo):
    for i in range(5):
        repo.write(f"workflows/w{i}.yaml", flow(f"w{i}"))
    repo.commit()
    await syncer(db, settings, repo).sync("cli")
    assert sorted(await stored_files(db)) == [f"workflows/w{i}.yaml" for i in range(5)]
    fresh = syncer(db, settings, repo)  # a new process: an empty memo
    run = await fresh.sync("cli")
    assert run is not None and run.status == "unchanged" and run.summary["unchanged"] == 5
    assert fresh.memo.cache_info().currsize == 0  # nothing linted
    # A changed file is still checked, by a fresh process too; a deleted one is forgotten.
    repo.write("workflows/w1.yaml", flow("w1").replace("startNode: first", "startNode: nowhere"))
    repo.write("workflows/w2.yaml", flow("w2", message="changed"))
    repo.delete("workflows/w4.yaml")
    repo.commit()
    fresh = syncer(db, settings, repo)
    run = await fresh.sync("cli")
    assert run is not None and outcomes(run) == {
        "workflows/w1.yaml": "invalid", "workflows/w2.yaml": "updated",
        "workflows/w4.yaml": "archived",
    }  # fmt: skip
    assert fresh.memo.cache_info().currsize == 2
    assert "workflows/w4.yaml" not in await stored_files(db)
    # The invalid file stays invalid on the next fresh resync, from its stored result.
    run = await syncer(db, settings, repo).sync("cli")
    assert run is not None and outcomes(run) == {"workflows/w1.yaml": "invalid"}
    assert run.files[0]["diagnostics"][0]["rule"] == "unknown-start-node"


async def test_stored_lint_results_are_used_only_under_the_same_stamp(db, settings, repo):
    repo.write("workflows/a.yaml", flow("a", hook="a/hook"))
    repo.commit()
    await syncer(db, settings, repo).sync("cli")
    # What a fresh process reports for an unchanged file comes from the stored result ...
    async with db.transaction() as conn:
        await conn.execute(
            "UPDATE sync_files SET result = jsonb_set(result, '{diagnostics}',"
            ' \'[[1, 1, 1, 2, "warning", "x-stored", "from the database"]]\')'
        )
    run = await syncer(db, settings, repo).sync("cli")
    assert run is not None and run.files[0]["diagnostics"][0]["message"] == "from the database"
    # ... unless it was linted by another runner (code, action types) or other defaults.
    async with db.transaction() as conn:
        await conn.execute("UPDATE sync_files SET stamp = 'another runner'")
    fresh = syncer(db, settings, repo)
    run = await fresh.sync("cli")
    assert run is not None and fresh.memo.cache_info().currsize == 1
    assert all(d["rule"] != "x-stored" for f in run.files for d in f["diagnostics"])
    # A stored result that is not of the expected shape is linted again, never trusted.
    async with db.transaction() as conn:
        await conn.execute("UPDATE sync_files SET result = '{\"diagnostics\": 3}'")
    fresh = syncer(db, settings, repo)
    run = await fresh.sync("cli")
    assert run is not None and run.status == "unchanged" and fresh.memo.cache_info().currsize == 1


async def test_a_stored_valid_file_that_must_now_be_written_is_read_again(db, settings, repo):
    # An Active parent starting a Draft child is refused (publish-time validation) ...
    repo.write("workflows/parent.yaml", flow("parent", child="child"))
    repo.write("workflows/child.yaml", flow("child", status="draft"))
    repo.commit()
    run = await syncer(db, settings, repo).sync("cli")
    assert run is not None and outcomes(run)["workflows/parent.yaml"] == "invalid"
    # ... until the child is activated. The parent's file did not change, so a fresh process
    # has its stored result, which holds no document: it reads the file to write it.
    repo.write("workflows/child.yaml", flow("child"))
    repo.commit()
    fresh = syncer(db, settings, repo)
    run = await fresh.sync("cli")
    assert run is not None and outcomes(run) == {
        "workflows/child.yaml": "updated", "workflows/parent.yaml": "added",
    }  # fmt: skip
    assert fresh.memo.cache_info().currsize == 2
    async with db.connection() as conn:
        stored = await workflows.get_definition(conn, settings.tenant, "parent")
    assert stored.definition["nodes"][0]["workflowId"] == "child"
    # Both files' results are kept for the next sync, at the blobs of this commit.
    files = ("workflows/child.yaml", "workflows/parent.yaml")
    assert await stored_files(db) == {p: repo.git("rev-parse", f"HEAD:{p}") for p in files}


# -- dwf.yaml: the repository's tenant and defaults -------------------------------------------


async def test_a_repository_syncs_into_the_tenant_its_dwf_yaml_names(db, settings, repo):
    repo.write("workflows/other.yaml", flow("other"))
    repo.commit()
    await syncer(db, settings, repo).sync("cli")  # a git workflow of the default tenant
    repo.delete("workflows/other.yaml")
    repo.write("dwf.yaml", "tenant: acme\n")
    repo.write("workflows/a.yaml", flow("a", hook="orders/new"))
    repo.commit()
    run = await syncer(db, settings, repo).sync("cli")
    assert run is not None and run.status == "applied", run.error
    assert run.tenant == "default" and run.target_tenant == "acme"
    assert outcomes(run) == {"workflows/a.yaml": "added"}  # dwf.yaml is no workflow
    acme = dataclasses.replace(settings, tenant="acme")
    assert await state(db, acme) == {"a": ("Active", 1, "git")}
    # The default tenant's workflows are another repository's: not archived by this one.
    assert await state(db, settings) == {"other": ("Active", 1, "git")}
    async with db.connection() as conn:
        assert await triggers.webhook_owner(conn, "acme", "orders/new") == "a"
        assert await triggers.webhook_owner(conn, "default", "orders/new") is None
    assert sorted(await stored_files(db, "acme")) == ["workflows/a.yaml"]


async def test_a_runner_of_another_tenant_refuses_the_repository(db, settings, repo):
    repo.write("dwf.yaml", "# the ops team's flows\ntenant: acme\n")
    repo.write("workflows/a.yaml", flow("a"))
    repo.commit()
    ops = dataclasses.replace(settings, tenant="ops")
    run = await syncer(db, ops, repo).sync("cli")
    assert run is not None and run.status == "refused"
    assert "tenant `acme`" in str(run.error) and "tenant `ops`" in str(run.error)
    [entry] = run.files
    assert (entry["path"], entry["outcome"]) == ("dwf.yaml", "invalid")
    [problem] = entry["diagnostics"]
    assert (problem["rule"], problem["line"], problem["column"]) == ("tenant-mismatch", 2, 9)
    assert await state(db, ops) == {} and await state(db, settings) == {}
    # Named the same, it syncs.
    repo.write("dwf.yaml", "tenant: ops\n")
    repo.commit()
    run = await syncer(db, ops, repo).sync("cli")
    assert run is not None and run.status == "applied" and run.target_tenant == "ops"


@pytest.mark.parametrize(
    ("text", "rule", "line"),
    [
        ("tenant: acme\ndefaults:\n  options:\n    maxParalelActions: 3\n",
         "schema-unknown-key", 4),
        ("tenant: Not A Tenant\n", "schema-value", 1),
        ("tenant: [acme\n", "yaml-syntax", 2),
        ("- tenant: acme\n", "not-a-mapping", 1),
    ],
)  # fmt: skip
async def test_an_invalid_dwf_yaml_refuses_the_sync_and_changes_nothing(  # noqa: PLR0917
    db, settings, repo, text, rule, line
):
    repo.write("workflows/a.yaml", flow("a"))
    repo.commit()
    sync = syncer(db, settings, repo)
    await sync.sync("cli")
    repo.write("dwf.yaml", text)
    repo.delete("workflows/a.yaml")
    repo.commit()
    run = await sync.sync("cli", allow_mass_delete=True)
    assert run is not None and run.status == "refused", run
    assert "dwf.yaml cannot be used" in str(run.error) and "nothing was changed" in str(run.error)
    [entry] = run.files
    assert entry["path"] == "dwf.yaml" and entry["outcome"] == "invalid"
    assert (entry["diagnostics"][0]["rule"], entry["diagnostics"][0]["line"]) == (rule, line)
    assert await state(db, settings) == {"a": ("Active", 1, "git")}


async def test_a_dwf_yaml_that_is_a_link_refuses_the_sync(db, settings, repo, tmp_path):
    (tmp_path / "elsewhere.yaml").write_text("tenant: acme\n")
    (repo.root / "dwf.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    repo.write("workflows/a.yaml", flow("a"))
    repo.commit()
    run = await syncer(db, settings, repo).sync("cli")
    assert run is not None and run.status == "refused"
    assert run.files[0]["diagnostics"][0]["rule"] == "file-not-regular"
    assert "symbolic link" in run.files[0]["diagnostics"][0]["message"]
    assert await state(db, settings) == {}


async def test_dwf_yaml_is_read_from_the_synced_folder(db, settings, repo):
    repo.write("dwf.yaml", "tenant: root-tenant\n")
    repo.write("teams/ops/dwf.yaml", "tenant: ops\n")
    repo.write("teams/ops/a.yaml", flow("a"))  # no workflows/ folder: dwf.yaml sits beside it
    repo.commit()
    run = await syncer(db, settings, repo, folder="teams/ops").sync("cli")
    assert run is not None and run.status == "applied" and run.target_tenant == "ops"
    assert outcomes(run) == {"teams/ops/a.yaml": "added"}


async def test_defaults_fill_in_the_options_a_workflow_does_not_set(db, settings, repo):
    repo.write(
        "dwf.yaml",
        "defaults:\n  options:\n    maxParallelActions: 3\n    defaultActionTimeout: 5m\n",
    )
    repo.write("workflows/plain.yaml", flow("plain"))
    own = flow("own").replace(
        "startNode: first", "startNode: first\noptions: {maxParallelActions: 8}"
    )
    repo.write("workflows/own.yaml", own)
    repo.commit()
    sync = syncer(db, settings, repo)
    run = await sync.sync("cli")
    assert run is not None and run.status == "applied" and run.target_tenant == "default"

    async def options(workflow_id: str) -> dict:
        async with db.connection() as conn:
            stored = await workflows.get_definition(conn, settings.tenant, workflow_id)
        return stored.definition["options"]

    assert await options("plain") == {"maxParallelActions": 3, "defaultActionTimeout": "5m"}
    assert await options("own") == {"maxParallelActions": 8, "defaultActionTimeout": "5m"}
    # A resync of the same commit changes nothing; new defaults make new versions.
    run = await syncer(db, settings, repo).sync("cli")
    assert run is not None and run.status == "unchanged"
    repo.write("dwf.yaml", "defaults:\n  options:\n    defaultActionTimeout: 1m\n")
    repo.commit()
    run = await sync.sync("cli")
    assert run is not None and outcomes(run) == {
        "workflows/own.yaml": "updated", "workflows/plain.yaml": "updated",
    }  # fmt: skip
    assert await options("plain") == {"defaultActionTimeout": "1m"}
    assert await versions(db, settings, "plain") == [2, 1]


async def test_a_large_commit_records_each_workflow_from_its_own_file(db, settings, repo):
    # Enough files for the lint to run in a process pool, whose results come back reordered.
    for i in range(60):
        repo.write(f"workflows/w{i:02d}.yaml", flow(f"w{i:02d}"))
    repo.commit()
    run = await syncer(db, settings, repo).sync("cli")
    assert run is not None and run.summary == {"files": 60, "added": 60}
    async with db.connection() as conn:
        cur = await conn.execute("SELECT workflow_id, source_path FROM workflow_definitions")
        paths = {r["workflow_id"]: r["source_path"] for r in await cur.fetchall()}
    assert paths == {f"w{i:02d}": f"workflows/w{i:02d}.yaml" for i in range(60)}
    assert await stored_files(db) == {
        f"workflows/w{i:02d}.yaml": repo.git("rev-parse", f"HEAD:workflows/w{i:02d}.yaml")
        for i in range(60)
    }
    run = await syncer(db, settings, repo).sync("cli")  # from the stored results
    assert run is not None and run.status == "unchanged" and run.summary["unchanged"] == 60
