"""A worker: claims queued executions and conducts them, any number per machine and database.

    worker = Worker(conductor, settings, name=replica)
    await worker.run(stop)                      # `dwf worker`, `dwf serve --roles worker`
    row = await worker.execute(request)         # `dwf run`: start, conduct here, to the end

It wakes on LISTEN (`dwf_queue`) and also polls, since NOTIFY is only a hint; it holds each
claimed execution under a lease it renews every `heartbeat_seconds`; it runs at most
`worker_executions` executions and `worker_nodes` action attempts at once. An execution whose
workers keep dying is moved to dead letters after `max_deliveries` claims. On shutdown it stops
claiming, lets running nodes finish for `shutdown_grace_seconds`, then gives every execution it
still holds back to the queue, where another worker resumes it.

Running here (`execute`, `run_execution`) is the same worker with only its lease renewal
going: the execution it starts (claimed in the start's own statement) is conducted on the spot;
should it park to wait for subworkflows, the worker claims it and its children (by correlation
id) until it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import uuid

import structlog

from runner.engine.conductor import Conductor, log_context
from runner.engine.requests import StartRequest
from runner.engine.signals import PARKED, RELEASED
from runner.errors import DatabaseUnavailable, LeaseLost, NotFound, StoreError
from runner.settings import Settings
from runner.store import executions, queue
from runner.store.executions import ExecutionRow
from runner.store.queue import Claim
from runner.store.workflows import DefinitionRow

_log = structlog.get_logger(__name__)
#: How often stuck waiting executions are looked for (a safety net for a lost wake-up).
SWEEP_SECONDS = 5.0
#: How often `run_until` looks at the execution it waits for, when another worker runs it.
FOLLOW_SECONDS = 0.1
#: How often an execution run here (`dwf run`) looks for a cancel asked for elsewhere.
CANCEL_POLL_SECONDS = 0.5


class Worker:
    """Claims and conducts executions until stopped."""

    def __init__(
        self,
        conductor: Conductor,
        settings: Settings,
        *,
        name: str,
        correlation_id: str | None = None,
    ) -> None:
        self.conductor, self.settings = conductor, settings
        self.db = conductor.db
        self.owner = name
        self.correlation_id = correlation_id
        self.node_slots = asyncio.Semaphore(settings.worker_nodes)
        self.running: dict[uuid.UUID, asyncio.Task[str | None]] = {}
        self.claims: dict[uuid.UUID, Claim] = {}  # of the executions in `running`
        self.lost: set[uuid.UUID] = set()
        self.work = asyncio.Event()
        self.stopping = False
        self.log = _log.bind(worker=self.owner)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then shut down gracefully."""
        helpers = [
            asyncio.create_task(self._listen(), name="worker listen"),
            asyncio.create_task(self._heartbeat(), name="worker heartbeat"),
            asyncio.create_task(self._sweep(), name="worker sweep"),
        ]
        claiming = asyncio.create_task(self._claim_loop(), name="worker claim")
        self.log.info("worker started", executions=self.settings.worker_executions)
        try:
            await stop.wait()
        finally:
            self.stopping = True
            self.work.set()
            await asyncio.gather(claiming, return_exceptions=True)
            await self._drain()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self.log.info("worker stopped")

    async def execute(self, request: StartRequest) -> ExecutionRow:
        """Start and run to the end here (`dwf run`); a repeated request id returns the
        existing execution as it is."""
        starts = self.conductor.starts
        row, created, definition, claim = await starts.start_claimed(request, self.owner)
        if not created or claim is None:
            return row
        return await self._run_here(claim, row, (row, definition))

    async def run_execution(self, tenant: str, execution_id: uuid.UUID) -> ExecutionRow:
        """Run a queued execution here until it ends; if another worker has it, or it parks,
        claim it (and its children) as they become free until it ends."""
        async with self.db.connection() as conn:
            row = await executions.get(conn, tenant, execution_id)
            if row is None:
                raise NotFound(f"execution {execution_id} does not exist in tenant {tenant!r}")
            claims = await queue.claim(
                conn, self.owner, 1, self.settings.lease_seconds, execution_id=execution_id
            )
        if claims:
            return await self._run_here(claims[0], row)
        return await self._scoped(row).run_until(tenant, execution_id)

    async def _run_here(
        self,
        claim: Claim,
        row: ExecutionRow,
        known: tuple[ExecutionRow, DefinitionRow] | None = None,
    ) -> ExecutionRow:
        """Conduct a claimed execution on the spot, its lease renewed by this worker's
        heartbeat; if it parks, is released or taken over, a worker scoped to it carries on."""
        duties = [
            asyncio.create_task(self._heartbeat(), name="worker heartbeat"),
            # No LISTEN connection of its own (dwf run starts one execution, a benchmark
            # hundreds): a cancel from another process is found by asking, twice a second.
            asyncio.create_task(self._watch_cancels(), name="worker cancels"),
        ]
        task = self._track(claim, known)
        try:
            outcome = await task
        finally:
            for duty in duties:
                duty.cancel()
            await asyncio.gather(*duties, return_exceptions=True)
        if outcome not in (PARKED, RELEASED):
            async with self.db.connection(autocommit=True) as conn:  # one read: no BEGIN/COMMIT
                final = await executions.get(conn, row.tenant, row.execution_id)
            if final is not None and final.status in executions.TERMINAL:
                return final
        # Parked, released, or taken over by another worker: follow it to its end.
        return await self._scoped(row).run_until(row.tenant, row.execution_id)

    def _scoped(self, row: ExecutionRow) -> Worker:
        """A worker of this name that claims only this execution's tree (its correlation id)."""
        return Worker(
            self.conductor, self.settings, name=self.owner, correlation_id=row.correlation_id
        )

    async def run_until(self, tenant: str, execution_id: uuid.UUID) -> ExecutionRow:
        """Work (on this worker's scope) until one execution has ended; return its final row."""
        stop = asyncio.Event()
        worker = asyncio.create_task(self.run(stop))
        try:
            while True:
                async with self.db.connection() as conn:
                    row = await executions.get(conn, tenant, execution_id)
                if row is None:
                    raise NotFound(f"execution {execution_id} does not exist")
                if row.status in executions.TERMINAL:
                    return row
                if worker.done():
                    worker.result()  # surface why the worker stopped
                self.work.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finished_one(), FOLLOW_SECONDS)
        finally:
            stop.set()
            await worker

    async def _finished_one(self) -> None:
        if self.running:
            await asyncio.wait(list(self.running.values()))
        else:
            await asyncio.sleep(FOLLOW_SECONDS)

    # -- claiming -------------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        while not self.stopping:
            free = self.settings.worker_executions - len(self.running)
            claims: list[Claim] = []
            if free > 0:
                try:
                    # Autocommit: the claim is one statement, so one round trip.
                    async with self.db.connection(autocommit=True) as conn:
                        claims = await queue.claim(
                            conn,
                            self.owner,
                            free,
                            self.settings.lease_seconds,
                            correlation_id=self.correlation_id,
                            running=list(self.running),
                        )
                except StoreError as exc:  # the database may come back: keep polling
                    self.log.warning("claim failed", error=str(exc))
                except Exception:
                    self.log.exception("claim failed")
            for claim in claims:
                self._track(claim)
            if claims and len(claims) == free:
                continue  # there may be more: claim again once slots free
            self.work.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.work.wait(), self.settings.poll_seconds)

    def _track(
        self, claim: Claim, known: tuple[ExecutionRow, DefinitionRow] | None = None
    ) -> asyncio.Task[str | None]:
        """Conduct a claim in a task of its own, counted in `running` until it ends."""
        task = asyncio.create_task(
            self._conduct(claim, known), name=f"execution {claim.execution_id}"
        )
        self.running[claim.execution_id] = task
        self.claims[claim.execution_id] = claim
        # A task cancelled before its first step never runs _conduct's `finally`.
        task.add_done_callback(functools.partial(self._forget, claim.execution_id))
        return task

    def _forget(self, execution_id: uuid.UUID, task: asyncio.Task[str | None]) -> None:
        if self.running.get(execution_id) is task:
            del self.running[execution_id]
            self.claims.pop(execution_id, None)
            self.work.set()

    async def _conduct(
        self, claim: Claim, known: tuple[ExecutionRow, DefinitionRow] | None = None
    ) -> str | None:
        """Conduct one claim; its outcome (PARKED, RELEASED, a status), None when it stopped
        early (dead-lettered, lease lost, crashed, or cancelled by shutdown)."""
        identity = (
            log_context(claim.execution)
            if claim.execution is not None
            else {"executionId": str(claim.execution_id)}
        )
        log = self.log.bind(deliveries=claim.deliveries, **identity)
        released = False
        try:
            if claim.deliveries > self.settings.max_deliveries:
                await self._dead_letter(claim)
                return None
            result = await self.conductor.conduct(claim, node_slots=self.node_slots, known=known)
            if result == RELEASED:
                await self._release(claim)
                released = True
            return result
        except LeaseLost:
            log.warning("lease lost: another worker runs this execution now")
        except DatabaseUnavailable as exc:
            # The database stayed away past the retries: hand the execution back (or, if even
            # that fails, let its lease expire); a later claim resumes it from its rows.
            log.warning("database unavailable; execution handed back", error=str(exc))
            await self._release(claim)
        except asyncio.CancelledError:
            if claim.execution_id not in self.lost and not released:
                await self._release(claim)
        except Exception:
            log.exception("execution crashed")
        finally:
            self.running.pop(claim.execution_id, None)
            self.claims.pop(claim.execution_id, None)
            self.lost.discard(claim.execution_id)
            self.work.set()
        return None

    async def _dead_letter(self, claim: Claim) -> None:
        """Give up on an execution that keeps killing or losing its workers: it ends Failed."""
        reason = (
            f"gave up after {claim.deliveries - 1} deliveries: the workers running it "
            "kept stopping (crashed, killed or lost their lease)"
        )
        async with self.db.connection() as conn:
            await queue.dead_letter(conn, claim, reason)
        self.log.warning(
            "execution dead-lettered", executionId=str(claim.execution_id), reason=reason
        )

    async def _release(self, claim: Claim) -> None:
        with contextlib.suppress(StoreError):  # its lease expires instead
            async with self.db.connection() as conn:
                await queue.release(conn, claim)

    async def _drain(self) -> None:
        """Let running nodes finish (no new ones start), then hand the rest back."""
        if not self.running:
            return
        self.log.info("draining", executions=len(self.running))
        self.conductor.drain_all()
        _, pending = await asyncio.wait(
            list(self.running.values()), timeout=self.settings.shutdown_grace_seconds
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    # -- background duties ----------------------------------------------------------------------

    async def _listen(self) -> None:
        await self.db.follow(
            (queue.QUEUE_CHANNEL, queue.CANCEL_CHANNEL, queue.CHILD_CHANNEL),
            lambda notify: self._dispatch(notify.channel, notify.payload),
            listening=self.work.set,  # anything queued while we were not listening
            retry_seconds=self.settings.poll_seconds,
            what="worker listener",
        )

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == queue.QUEUE_CHANNEL:
            self.work.set()
            return
        try:
            execution_id = uuid.UUID(payload)
        except ValueError:
            return
        if channel == queue.CANCEL_CHANNEL:
            self.conductor.request_cancel(execution_id)
        elif channel == queue.CHILD_CHANNEL:
            self.conductor.wake(execution_id)

    async def _heartbeat(self) -> None:
        while not _stopping():
            await asyncio.sleep(self.settings.heartbeat_seconds)
            # Only executions claimed before the renewal: one claimed meanwhile is not in
            # `held` yet, and must not be taken for lost.
            running = dict(self.running)
            epochs = {i: self.claims[i].epoch for i in running if i in self.claims}
            if not epochs:
                continue
            try:
                async with self.db.connection(autocommit=True) as conn:
                    held = await queue.renew(conn, self.owner, self.settings.lease_seconds, epochs)
            except StoreError as exc:
                self.log.warning("lease renewal failed", error=str(exc))
                continue
            for execution_id, task in running.items():
                if execution_id in epochs and execution_id not in held and not task.done():
                    # A later claim took it over (we were paused or cut off past the lease):
                    # stop this conductor before anything else; the fence refuses its writes.
                    self.lost.add(execution_id)
                    self.log.warning("lease lost", executionId=str(execution_id))
                    task.cancel()

    async def _watch_cancels(self) -> None:
        while not _stopping():
            await asyncio.sleep(CANCEL_POLL_SECONDS)
            try:
                async with self.db.connection(autocommit=True) as conn:
                    requested = await executions.cancel_requested(conn, list(self.running))
            except StoreError:
                continue  # asked again shortly; the transitions retry on their own
            for execution_id in requested:
                self.conductor.request_cancel(execution_id)

    async def _sweep(self) -> None:
        while not _stopping():
            await asyncio.sleep(SWEEP_SECONDS)
            with contextlib.suppress(Exception):
                async with self.db.connection() as conn:
                    await queue.sweep_waiting(conn)


def _stopping() -> bool:
    """Whether this task was asked to stop. A duty's loop asks it each round: a cancel that a
    library swallowed (psycopg_pool's `wait_for` on Python 3.11 can, while it waits for a
    connection) still counts, so `_run_here` never waits for a duty that goes on forever."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
