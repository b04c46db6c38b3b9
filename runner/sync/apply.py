"""Apply a repository to the database: one replica at a time, every sync recorded.

    syncer = Syncer(db, settings, GitSource(url, branch, folder, cache_root=home / "git"),
                    replica=name)
    run = await syncer.sync("cli", wait=True)      # a SyncRunRow: status, commit, per-file results
    await syncer.run(stop)                          # the daemon's sync role: at start, every
                                                    # interval, and at once on a push webhook

A sync takes the runner's tenant's advisory lock before it fetches, so a replica never applies
an older commit over a newer one; a replica that finds the lock taken skips (the interval) or
waits and then finds nothing left to do (a push, `dwf sync`). The commit's dwf.yaml then says
which tenant the workflows go to (whose lock is taken too, when it is another) and the default
options they take; one that is invalid, or names a tenant this runner may not sync, refuses
the sync. The changes, the lint results kept for the next sync and the run's row commit in one
transaction: a sync that fails (fetch, git, database) leaves every workflow as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog

from runner import versions
from runner.errors import DatabaseUnavailable, DwfError, SourceError
from runner.settings import DEFAULT_TENANT, Settings
from runner.spec import repository
from runner.store import sync as store
from runner.store import workflows
from runner.store.database import Connection, Database, Notify
from runner.sync import check, diff
from runner.sync.source import GitSource, Snapshot

_log = structlog.get_logger(__name__)

#: After the listener for push notices fails, wait this long before listening again.
RELISTEN_SECONDS = 1.0


class Syncer:
    """Syncs one git source into one database (the tenant its dwf.yaml names, else the
    settings')."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        source: GitSource,
        *,
        replica: str,
        jobs: int | None = None,
        on_run: Callable[[store.SyncStatus], None] | None = None,
    ) -> None:
        self.db, self.settings, self.source = db, settings, source
        self.replica = replica
        self.on_run = on_run  # told each run's status (metrics)
        self.jobs = jobs
        self.memo = check.new_memo()  # lint results by (path, blob, stamp): resyncs lint changes

    async def sync(
        self,
        reason: store.SyncReason,
        *,
        wait: bool = False,
        since: datetime | None = None,
        allow_mass_delete: bool | None = None,
    ) -> store.SyncRunRow | None:
        """Sync once and return the recorded run. None when the lock is taken and `wait` is
        False. With `since`, a run that started at or after it (by another replica, say) is
        returned instead of syncing again."""
        tenant = self.settings.tenant
        async with self.db.connection() as lock_conn:
            if not await store.try_lock(lock_conn, tenant):
                if not wait:
                    await lock_conn.commit()
                    return None
                await store.lock(lock_conn, tenant)
            await lock_conn.commit()  # the session lock stays; no transaction stays open
            try:
                if since is not None:
                    async with self.db.connection() as conn:
                        done = await store.synced_since(conn, tenant, since)
                    if done is not None:
                        return done
                allow = self.settings.sync_allow_mass_delete
                run = await self._sync(
                    reason, allow if allow_mass_delete is None else allow_mass_delete, lock_conn
                )
                if self.on_run is not None:
                    self.on_run(run.status)
                return run
            finally:
                await store.unlock(lock_conn, tenant)
                await lock_conn.commit()

    async def run(self, stop: asyncio.Event) -> None:
        """The sync role: sync at start, every `sync_interval` seconds, and at once when a push
        webhook asks (NOTIFY), until `stop` is set. A failed sync is recorded and retried at the
        next interval; nothing stops the loop but `stop`."""
        pushed: asyncio.Queue[datetime] = asyncio.Queue()
        listening = asyncio.create_task(self._listen(pushed))
        reason: store.SyncReason = "start"
        since: datetime | None = None
        try:
            while not stop.is_set():
                try:
                    await self.sync(reason, wait=reason == "webhook", since=since)
                except DwfError as exc:  # the database went away: the run could not be recorded
                    _log.warning("sync failed", error=str(exc), reason=reason)
                except Exception:
                    _log.exception("sync failed unexpectedly", reason=reason)
                reason, since = "interval", None
                stopping = asyncio.ensure_future(stop.wait())
                push = asyncio.ensure_future(pushed.get())
                done, pending = await asyncio.wait(
                    (stopping, push), timeout=self.settings.sync_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )  # fmt: skip
                for task in pending:
                    task.cancel()
                if push in done:
                    first = push.result()
                    while not pushed.empty():
                        first = min(first, pushed.get_nowait())
                    reason, since = "webhook", first
        finally:
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening

    async def _fail_run(
        self, sync_id: int, commit: str | None, error: str, tenant: str | None
    ) -> store.SyncRunRow:
        async with self.db.transaction() as conn:
            return await store.finish_run(
                conn, sync_id, status="failed", commit=commit, error=error, target_tenant=tenant
            )

    async def _listen(self, pushed: asyncio.Queue[datetime]) -> None:
        def heard(notice: Notify) -> None:
            at = _push_time(notice.payload, self.settings.tenant)
            if at is not None:
                pushed.put_nowait(at)

        # Without it, pushes are synced on the interval only.
        await self.db.follow(
            (store.SYNC_CHANNEL,), heard, retry_seconds=RELISTEN_SECONDS, what="sync listener"
        )

    async def _sync(
        self, reason: store.SyncReason, allow_mass_delete: bool, lock_conn: Connection
    ) -> store.SyncRunRow:
        runner_tenant, source = self.settings.tenant, self.source
        async with self.db.transaction() as conn:
            sync_id = await store.start_run(
                conn, tenant=runner_tenant, repo=source.display, branch=source.branch,
                path=source.folder, reason=reason, replica=self.replica,
            )  # fmt: skip
        commit, tenant, also_locked = None, None, None
        try:
            commit = await asyncio.to_thread(source.fetch)
            snapshot = await asyncio.to_thread(source.snapshot, commit)
            found = await asyncio.to_thread(
                check.check_config, snapshot.config, source.read, runner_tenant=runner_tenant,
                pinned=runner_tenant != DEFAULT_TENANT,
            )  # fmt: skip
            if found.config is None:
                return await self._refuse(sync_id, commit, found, len(snapshot.files))
            tenant = repository.sync_tenant(found.config, runner_tenant)
            if tenant != runner_tenant:
                # Another runner may sync this tenant (as its own): one writer at a time.
                await store.lock(lock_conn, tenant)
                await lock_conn.commit()
                also_locked = tenant
            config, stamp = found.config, check.lint_stamp(found.config)
            async with self.db.connection() as conn:
                known = await stored_results(conn, tenant, stamp)
            checked = await asyncio.to_thread(
                check.check, snapshot.files, source.read, self.memo, jobs=self.jobs,
                config=config, known=known,
            )  # fmt: skip
            linted = {f.path: f for f in checked.fresh}  # to store for the next sync
            async with self.db.transaction() as conn:
                changes = await decide(conn, tenant, checked, self.settings, allow_mass_delete)
                if changes.unread:  # stored results have no document: read those files
                    checked = await asyncio.to_thread(
                        check.check, snapshot.files, source.read, self.memo, jobs=self.jobs,
                        config=config, known=known, reread=changes.unread,
                    )  # fmt: skip
                    linted |= {f.path: f for f in checked.fresh}
                    changes = await decide(conn, tenant, checked, self.settings, allow_mass_delete)
                versions: dict[str, int] = {}
                if changes.refused is None:
                    versions = await write(
                        conn, tenant, changes, repo=source.display, commit=commit
                    )
                await store.keep_lint_results(
                    conn, tenant, stamp,
                    [(f.path, f.blob, check.stored(f)) for f in linted.values()],
                    [f.path for f in snapshot.files],
                )  # fmt: skip
                status: store.SyncStatus = (
                    "refused" if changes.refused else "applied" if changes.changed else "unchanged"
                )
                run = await store.finish_run(
                    conn, sync_id, status=status, commit=commit,
                    summary=summary(changes, len(snapshot.files)),
                    files=file_results(changes, versions), error=changes.refused,
                    target_tenant=tenant,
                )  # fmt: skip
        except Exception as exc:
            message = str(exc) if isinstance(exc, DwfError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, DatabaseUnavailable):
                _log.warning("sync interrupted: the database is unavailable", error=message)
            elif not isinstance(exc, SourceError):
                _log.error("sync failed", error=message, exc_info=exc)
            # Recorded once the database is back (within the bound), so no run stays `running`.
            run = await self.db.retrying(
                functools.partial(self._fail_run, sync_id, commit, message, tenant),
                seconds=self.settings.transition_retry_seconds,
            )
        finally:
            if also_locked is not None:
                with contextlib.suppress(DwfError):
                    await store.unlock(lock_conn, also_locked)
                    await lock_conn.commit()
        _log.info(
            "sync " + run.status, reason=reason, commit=run.commit, repo=run.repo,
            tenant=run.target_tenant, error=run.error, **run.summary,
        )  # fmt: skip
        return run

    async def _refuse(
        self, sync_id: int, commit: str, found: check.ConfigResult, files: int
    ) -> store.SyncRunRow:
        """Record a sync refused for its dwf.yaml: nothing is read or written."""
        assert found.change is not None
        changes = diff.ChangeSet((found.change,), found.refusal, {"invalid": 1})
        async with self.db.transaction() as conn:
            run = await store.finish_run(
                conn, sync_id, status="refused", commit=commit, summary=summary(changes, files),
                files=file_results(changes), error=changes.refused,
            )  # fmt: skip
        _log.warning("sync refused", commit=commit, repo=run.repo, error=run.error)
        return run


async def decide(
    conn: Connection,
    tenant: str,
    checked: check.Checked,
    settings: Settings,
    allow_mass_delete: bool,
) -> diff.ChangeSet:
    """The change set of `checked` over the database's workflows (reads only)."""
    current = {
        r.workflow_id: diff.Current(
            r.workflow_id, r.status, r.managed_by, r.current_version, r.checksum, r.source_path
        )
        for r in await store.current_state(conn, tenant)
    }
    hooks = await store.webhook_paths(conn, tenant)
    guard = diff.Guard(settings.sync_max_archive_share, allow_mass_delete)
    return diff.decide(checked.files, current, hooks, guard=guard, diagnose=checked.diagnose)


async def stored_results(conn: Connection, tenant: str, stamp: str) -> dict[str, diff.LintedFile]:
    """The lint results an earlier sync of the tenant's repository stored under `stamp`."""
    found = await store.lint_results(conn, tenant, stamp)
    results = {path: check.from_stored(path, blob, data) for path, (blob, data) in found.items()}
    return {path: result for path, result in results.items() if result is not None}


async def write(
    conn: Connection, tenant: str, changes: diff.ChangeSet, *, repo: str, commit: str
) -> dict[str, int]:
    """Write a change set through the one writer of versions (`runner.versions`)."""
    if changes.unread:
        raise RuntimeError(f"a sync would write {changes.unread} without their documents")
    archived = [c.workflow_id for c in changes.files if c.outcome == "archived" and c.workflow_id]
    items = [
        workflows.NewVersion(
            workflow_id=str(c.workflow_id),
            checksum=str(c.checksum),
            definition=c.document or {},
            status=c.status or "Draft",
            display_name=(c.document or {}).get("displayName"),
            source_path=c.path,
        )
        for c in changes.files
        if c.outcome in ("added", "updated", "status")
    ]
    return await versions.record_commit(conn, tenant, archived, items, repo=repo, commit=commit)


def summary(changes: diff.ChangeSet, files: int) -> dict[str, int]:
    """Counts by outcome, and the number of workflow files looked at."""
    return {"files": files, **changes.counts}


def file_results(
    changes: diff.ChangeSet, versions: Mapping[str, int] | None = None
) -> list[dict[str, Any]]:
    """One entry per file that changed or has diagnostics (unchanged clean files are counted
    in the summary only, so a resync every 30 s stays a small row)."""
    versions = versions or {}
    out = []
    for c in changes.files:
        if c.outcome == "unchanged" and not c.diagnostics:
            continue
        entry: dict[str, Any] = {"path": c.path, "workflowId": c.workflow_id, "outcome": c.outcome}
        if c.workflow_id is not None and c.workflow_id in versions:
            entry["version"] = versions[c.workflow_id]
        if c.status is not None and c.outcome != "invalid":
            entry["status"] = c.status
        entry["diagnostics"] = [
            {
                "line": d.line,
                "column": d.column,
                "severity": d.severity,
                "rule": d.rule,
                "message": d.message,
            }
            for d in c.diagnostics
        ]
        out.append(entry)
    return out


def _push_time(payload: str, tenant: str) -> datetime | None:
    try:
        data = json.loads(payload)
        if data.get("tenant") != tenant:
            return None
        return datetime.fromisoformat(data["at"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


async def preview(
    db: Database,
    settings: Settings,
    snapshot: Snapshot,
    raw: Mapping[str, bytes],
    *,
    allow_mass_delete: bool,
) -> tuple[diff.ChangeSet, dict[str, dict[str, Any]]]:
    """What syncing a checkout's files would change (`dwf plan`): its dwf.yaml read as a sync
    reads it, and the current definition of each workflow it changes; writes nothing."""

    def read(blobs: Sequence[str]) -> dict[str, bytes]:
        return {b: raw[b] for b in blobs}

    found = await asyncio.to_thread(
        check.check_config, snapshot.config, read, runner_tenant=settings.tenant,
        pinned=settings.tenant != DEFAULT_TENANT,
    )  # fmt: skip
    if found.config is None:
        assert found.change is not None
        return diff.ChangeSet((found.change,), found.refusal, {"invalid": 1}), {}
    tenant = repository.sync_tenant(found.config, settings.tenant)
    checked = await asyncio.to_thread(check.check, snapshot.files, read, config=found.config)
    async with db.connection() as conn:
        changes = await decide(conn, tenant, checked, settings, allow_mass_delete)
        ids = [str(c.workflow_id) for c in changes.files if c.writes and c.previous is not None]
        current = await workflows.current_definitions(conn, tenant, ids)
    return changes, {k: v.definition for k, v in current.items()}


def syncer_for(
    db: Database,
    settings: Settings,
    *,
    replica: str,
    on_run: Callable[[store.SyncStatus], None] | None = None,
) -> Syncer:
    """The syncer of the settings' repository, branch and folder (cache under the home);
    `on_run` is told each run's status."""
    if not settings.sync_repo:
        raise SourceError("no repository to sync: pass --repo URL|PATH or set DWF_SYNC_REPO")
    source = GitSource(
        settings.sync_repo, settings.sync_branch, settings.sync_path,
        cache_root=settings.home / "git",
    )  # fmt: skip
    return Syncer(db, settings, source, replica=replica, on_run=on_run)


def run_document(run: store.SyncRunRow) -> dict[str, Any]:
    """A sync run as JSON (the API's and `dwf sync --output json`'s shape)."""
    return run.document(
        "sync_id", "status", "reason", "repo", "branch", "path", "commit", "target_tenant",
        "replica", "summary", "files", "error", "started_at", "finished_at",
    )  # fmt: skip
