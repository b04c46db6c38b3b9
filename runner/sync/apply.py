"""Apply a repository to the database: one replica at a time, every sync recorded.

    syncer = Syncer(db, settings, GitSource(url, branch, folder, cache_root=home / "git"),
                    replica=name)
    run = await syncer.sync("cli", wait=True)      # a SyncRunRow: status, commit, per-file results
    await syncer.run(stop)                          # the daemon's sync role: at start, every
                                                    # interval, and at once on a push webhook

A sync takes the tenant's advisory lock before it fetches, so a replica never applies an older
commit over a newer one; a replica that finds the lock taken skips (the interval) or waits and
then finds nothing left to do (a push, `dwf sync`). The changes and the run's row commit in one
transaction: a sync that fails (fetch, git, database) leaves every workflow as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import structlog

from runner import versions
from runner.errors import DatabaseUnavailable, DwfError, SourceError
from runner.settings import Settings
from runner.store import sync as store
from runner.store import workflows
from runner.store.database import Connection, Database, Notify
from runner.sync import check, diff
from runner.sync.source import GitSource

_log = structlog.get_logger(__name__)

#: After the listener for push notices fails, wait this long before listening again.
RELISTEN_SECONDS = 1.0


class Syncer:
    """Syncs one git source into one database (the settings' tenant)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        source: GitSource,
        *,
        replica: str,
        jobs: int | None = None,
    ) -> None:
        self.db, self.settings, self.source = db, settings, source
        self.replica = replica
        self.jobs = jobs
        self.memo = check.new_memo()  # lint results by (path, blob): resyncs lint changes only

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
                return await self._sync(
                    reason, allow if allow_mass_delete is None else allow_mass_delete
                )
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

    async def _fail_run(self, sync_id: int, commit: str | None, error: str) -> store.SyncRunRow:
        async with self.db.transaction() as conn:
            return await store.finish_run(
                conn, sync_id, status="failed", commit=commit, error=error
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

    async def _sync(self, reason: store.SyncReason, allow_mass_delete: bool) -> store.SyncRunRow:
        tenant, source = self.settings.tenant, self.source
        async with self.db.transaction() as conn:
            sync_id = await store.start_run(
                conn, tenant=tenant, repo=source.display, branch=source.branch,
                path=source.folder, reason=reason, replica=self.replica,
            )  # fmt: skip
        commit = None
        try:
            commit = await asyncio.to_thread(source.fetch)
            listed = await asyncio.to_thread(source.list, commit)
            checked = await asyncio.to_thread(
                check.check, listed, source.read, self.memo, jobs=self.jobs
            )
            async with self.db.transaction() as conn:
                changes = await decide(conn, tenant, checked, self.settings, allow_mass_delete)
                versions: dict[str, int] = {}
                if changes.refused is None:
                    versions = await write(
                        conn, tenant, changes, repo=source.display, commit=commit
                    )
                status: store.SyncStatus = (
                    "refused" if changes.refused else "applied" if changes.changed else "unchanged"
                )
                run = await store.finish_run(
                    conn, sync_id, status=status, commit=commit,
                    summary=summary(changes, len(listed)), files=file_results(changes, versions),
                    error=changes.refused,
                )  # fmt: skip
        except Exception as exc:
            message = str(exc) if isinstance(exc, DwfError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, DatabaseUnavailable):
                _log.warning("sync interrupted: the database is unavailable", error=message)
            elif not isinstance(exc, SourceError):
                _log.error("sync failed", error=message, exc_info=exc)
            # Recorded once the database is back (within the bound), so no run stays `running`.
            run = await self.db.retrying(
                functools.partial(self._fail_run, sync_id, commit, message),
                seconds=self.settings.transition_retry_seconds,
            )
        _log.info(
            "sync " + run.status, reason=reason, commit=run.commit, repo=run.repo,
            error=run.error, **run.summary,
        )  # fmt: skip
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


async def write(
    conn: Connection, tenant: str, changes: diff.ChangeSet, *, repo: str, commit: str
) -> dict[str, int]:
    """Write a change set through the one writer of versions (`runner.versions`)."""
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
    db: Database, settings: Settings, checked: check.Checked, *, allow_mass_delete: bool
) -> tuple[diff.ChangeSet, dict[str, dict[str, Any]]]:
    """What syncing `checked` would change (`dwf plan`), and the current definition of each
    workflow it changes; writes nothing."""
    async with db.connection() as conn:
        changes = await decide(conn, settings.tenant, checked, settings, allow_mass_delete)
        ids = [str(c.workflow_id) for c in changes.files if c.writes and c.previous is not None]
        found = await workflows.current_definitions(conn, settings.tenant, ids)
    return changes, {k: v.definition for k, v in found.items()}


def syncer_for(db: Database, settings: Settings, *, replica: str) -> Syncer:
    """The syncer of the settings' repository, branch and folder (cache under the home)."""
    if not settings.sync_repo:
        raise SourceError("no repository to sync: pass --repo URL|PATH or set DWF_SYNC_REPO")
    source = GitSource(
        settings.sync_repo, settings.sync_branch, settings.sync_path,
        cache_root=settings.home / "git",
    )  # fmt: skip
    return Syncer(db, settings, source, replica=replica)


def run_document(run: store.SyncRunRow) -> dict[str, Any]:
    """A sync run as JSON (the API's and `dwf sync --output json`'s shape)."""
    return run.document(
        "sync_id", "status", "reason", "repo", "branch", "path", "commit", "replica", "summary",
        "files", "error", "started_at", "finished_at",
    )  # fmt: skip
