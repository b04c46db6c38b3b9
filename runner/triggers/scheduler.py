"""The scheduler: every replica with the `scheduler` role fires every schedule; each scheduled
time is decided once (`runner.triggers.fire`).

    await Scheduler(db, starts, settings, replica=name).run(stop)

APScheduler 3 (AsyncIOScheduler, in-memory job store: its docs say schedulers must not share a
job store) holds one job per enabled schedule trigger of an Active workflow, rebuilt from
`workflow_triggers` when a NOTIFY on `dwf_triggers` says they changed, and every
`scheduler_poll_seconds` in case a notice was missed. Its defaults that silently drop runs are
replaced: a small executor hands each due time to `_due` with the time it was scheduled for,
never refusing a run because an earlier one is still going (`max_instances`), and `_due`
applies the trigger's own `misfireGraceTime` (default 60 s) and records a later fire as missed.
When a schedule is loaded, the times that passed since its cursor are caught up per its policy
(`runner.triggers.catchup`). A trigger whose cron or time zone does not parse is reported on its
row (status `error`) and the scheduler goes on with the others.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import structlog
from apscheduler.executors.base import BaseExecutor
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from runner.engine.starts import Starts
from runner.errors import StoreError
from runner.settings import Settings
from runner.spec.durations import format_duration
from runner.spec.model import ScheduleTrigger as ScheduleSpec
from runner.spec.model import ShapeError, trigger_from_data
from runner.store import triggers
from runner.store.database import Database
from runner.store.triggers import TriggerRow
from runner.triggers import catchup, fire
from runner.triggers.cron import FireTimes, ScheduleTrigger, fire_times

_log = structlog.get_logger(__name__)

#: How late a fire may still start when the trigger sets no `misfireGraceTime`.
DEFAULT_MISFIRE_GRACE_SECONDS = 60.0
#: Retry a fire that hit a database error this often, until its grace has passed.
FIRE_RETRY_SECONDS = 0.5
#: The most scheduled times decided in one transaction, and how many such transactions at once.
FIRE_BATCH = 100
FIRE_DRAINERS = 2
#: How long a stopping scheduler waits for fires in flight.
STOP_WAIT_SECONDS = 5.0
#: Told of each decision this replica made: (outcome, scheduled time, how many times) (metrics).
FireObserver = Callable[[str, datetime, int], None]


@dataclass(frozen=True, slots=True)
class Schedule:
    """An enabled schedule trigger as the scheduler runs it."""

    row: TriggerRow
    spec: ScheduleSpec
    times: FireTimes

    @property
    def job_id(self) -> str:
        """The APScheduler job id: tenant, workflow and trigger."""
        return job_id(self.row)

    @property
    def grace(self) -> float:
        """How late (seconds) a fire may still start."""
        if self.spec.misfire_grace_time is None:
            return DEFAULT_MISFIRE_GRACE_SECONDS
        return self.spec.misfire_grace_time

    @classmethod
    def of(cls, row: TriggerRow) -> Schedule:
        """The schedule of a trigger row; ValueError saying what is wrong with it."""
        try:
            spec = trigger_from_data(row.config)
        except (ShapeError, TypeError, ValueError) as exc:
            raise ValueError(f"its definition is malformed ({exc})") from exc
        if not isinstance(spec, ScheduleSpec):
            raise ValueError(f"it is a {spec.type} trigger, not a schedule")
        try:
            times = fire_times(spec.cron, spec.timezone)
        except ValueError as exc:
            raise ValueError(f"cron `{spec.cron}` in {spec.timezone}: {exc}") from exc
        return cls(row, spec, times)


def job_id(row: TriggerRow) -> str:
    """Ids never hold a newline, so it joins them unambiguously."""
    return f"{row.tenant}\n{row.workflow_id}\n{row.trigger_id}"


class Scheduler:
    """Fires the schedules of every Active workflow until stopped."""

    def __init__(
        self,
        db: Database,
        starts: Starts,
        settings: Settings,
        *,
        replica: str,
        on_fire: FireObserver | None = None,
    ) -> None:
        self.db, self.starts, self.settings = db, starts, settings
        self.replica, self.on_fire = replica, on_fire
        self.schedules: dict[str, Schedule] = {}
        self._aps: AsyncIOScheduler | None = None
        self._changed = asyncio.Event()
        self._dirty: set[str] = set()  # fires that failed: caught up at the next sync
        self._tasks: set[asyncio.Task[Any]] = set()
        self._due_now: collections.deque[tuple[Schedule, datetime]] = collections.deque()
        self._drainers = 0
        self._in_flight: set[str] = set()  # schedules in a batch being fired
        self.log = _log.bind(replica=self.replica)

    async def run(self, stop: asyncio.Event) -> None:
        """Load the schedules, catch up, fire until `stop` is set, then wait for fires in flight."""
        aps = AsyncIOScheduler(
            timezone=UTC,
            executors={"default": _DueExecutor(lambda key, at: self._spawn(self._due(key, at)))},
            job_defaults={"coalesce": False, "misfire_grace_time": None, "max_instances": 1},
        )
        self._aps = aps
        listening = asyncio.create_task(self._listen(), name="scheduler listen")
        started = False
        try:
            while not stop.is_set():
                self._changed.clear()
                try:
                    await self.sync()
                except StoreError as exc:
                    self.log.warning("scheduler cannot read triggers; retrying", error=str(exc))
                if not started:
                    # Started after the first load, so its jobs go in at once, not one wake-up
                    # per job.
                    aps.start()
                    started = True
                    self.log.info("scheduler started", schedules=len(self.schedules))
                waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(
                    self._changed.wait())]  # fmt: skip
                await asyncio.wait(
                    waits, timeout=self.settings.scheduler_poll_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )  # fmt: skip
                for waiting in waits:
                    waiting.cancel()
        finally:
            if started:
                aps.shutdown(wait=False)
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=STOP_WAIT_SECONDS)
            self.log.info("scheduler stopped")

    # -- loading --------------------------------------------------------------------------------

    async def sync(self) -> None:
        """Make the jobs those of the enabled schedule triggers now in the database; catch up
        schedules new to this process, changed, or whose fire failed."""
        async with self.db.connection() as conn:
            rows = await triggers.of_type(conn, "schedule")
        wanted: dict[str, Schedule] = {}
        for row in rows:
            if not row.enabled:
                continue
            try:
                schedule = Schedule.of(row)
            except ValueError as exc:
                await self._report(row, "error", f"not scheduled: {exc}")
                continue
            if row.status == "error":
                await self._report(row, "ok", None)
            wanted[schedule.job_id] = schedule
        for gone in self.schedules.keys() - wanted.keys():
            del self.schedules[gone]
            self._remove_job(gone)
        for key, schedule in wanted.items():
            old = self.schedules.get(key)
            self.schedules[key] = schedule  # overlap or payload changes apply from now on
            changed = old is not None and old.times is not schedule.times
            if old is None or changed or key in self._dirty:
                self._dirty.discard(key)
                self._start_job(schedule, datetime.now(UTC), changed=changed)

    def _start_job(self, schedule: Schedule, now: datetime, *, changed: bool) -> None:
        """(Re)add a schedule's job from `now` on, and catch up what passed before it."""
        row = schedule.row
        cursor = max(filter(None, (row.last_fired_at, row.active_since)))
        if changed:
            # A new cron or zone does not owe fires from before the change.
            cursor = max(cursor, row.updated_at)
        plan = catchup.plan(
            schedule.times, cursor, now, policy=schedule.spec.catchup,
            window=schedule.spec.catchup_window, grace=schedule.grace,
        )  # fmt: skip
        assert self._aps is not None
        self._aps.add_job(
            _never_called,
            trigger=ScheduleTrigger(schedule.times),
            id=schedule.job_id,
            name=f"{row.workflow_id}/{row.trigger_id}",
            replace_existing=True,
            # From the plan's `now`: the catch-up covers every time up to it, the job every
            # time after, however long the catch-up's writes take.
            next_run_time=schedule.times.next_after(now),
        )
        if plan.fire or plan.missed:
            self._spawn(self._catch_up(schedule, plan))

    def _remove_job(self, key: str) -> None:
        assert self._aps is not None
        with contextlib.suppress(Exception):  # JobLookupError: it was never added
            self._aps.remove_job(key)

    async def _catch_up(self, schedule: Schedule, plan: catchup.CatchUpPlan) -> None:
        for missed in plan.missed:
            if await self._guard(
                schedule,
                fire.miss(self.db, schedule.row, missed, replica=self.replica),
            ):
                self._tell("missed", missed.last, missed.count)
        started: list[uuid.UUID] = []
        for scheduled_at in plan.fire:
            decision = await self._guard(
                schedule,
                fire.fire(
                    self.db, self.starts, schedule.row, scheduled_at,
                    replica=self.replica, exclude=started,
                ),
            )  # fmt: skip
            if decision is not None:
                self._tell(decision.outcome, scheduled_at)
                if decision.execution_id is not None:
                    started.append(decision.execution_id)
        self.log.info(
            "schedule caught up", workflowId=schedule.row.workflow_id,
            triggerId=schedule.row.trigger_id, fired=len(plan.fire),
            missed=sum(m.count for m in plan.missed),
        )  # fmt: skip

    async def _report(
        self, row: TriggerRow, status: Literal["ok", "error"], message: str | None
    ) -> None:
        async with self.db.transaction() as conn:
            changed = await triggers.set_status(
                conn, row.tenant, row.workflow_id, row.trigger_id,
                status=status, message=message,
            )  # fmt: skip
        if changed and status == "error":
            self.log.error(
                "schedule not scheduled", workflowId=row.workflow_id, triggerId=row.trigger_id,
                reason=message,
            )  # fmt: skip

    # -- firing ---------------------------------------------------------------------------------

    async def _due(self, key: str, scheduled_at: datetime) -> None:
        """A scheduled time is due (APScheduler's call): fire it, or record it missed if later
        than the trigger's grace."""
        schedule = self.schedules.get(key)
        if schedule is None:
            return
        late = (datetime.now(UTC) - scheduled_at).total_seconds()
        if late > schedule.grace:
            reason = (
                f"due {late:.1f} s ago, later than misfireGraceTime "
                f"({format_duration(schedule.grace)}): the scheduler was blocked or suspended"
            )
            if await self._guard(
                schedule,
                fire.miss(
                    self.db,
                    schedule.row,
                    catchup.Missed(scheduled_at, scheduled_at, 1, reason),
                    replica=self.replica,
                ),
            ):
                self._tell("missed", scheduled_at)
            return
        self._due_now.append((schedule, scheduled_at))
        if self._drainers < FIRE_DRAINERS:
            self._drainers += 1
            self._spawn(self._drain())

    async def _drain(self) -> None:
        """Fire what is due in batches: a burst (many schedules due at the same second) costs a
        few statements per batch instead of a transaction per fire. A batch holds each schedule
        once, and no schedule is in two batches at a time, so a schedule's overlap policy sees
        its own earlier fire. Two drainers run at once: while one batch's statements run in
        Postgres, the next batch is prepared here (the machine's other core)."""
        try:
            while self._due_now:
                batch: list[tuple[Schedule, datetime]] = []
                later: list[tuple[Schedule, datetime]] = []
                while self._due_now and len(batch) < FIRE_BATCH:
                    schedule, at = self._due_now.popleft()
                    if schedule.job_id in self._in_flight:
                        later.append((schedule, at))
                    else:
                        self._in_flight.add(schedule.job_id)
                        batch.append((schedule, at))
                self._due_now.extendleft(reversed(later))
                if not batch:
                    return  # all that is left waits for the other drainer's batch
                try:
                    await self._fire_batch(batch)
                finally:
                    self._in_flight.difference_update(s.job_id for s, _ in batch)
        finally:
            self._drainers -= 1

    async def _fire_batch(self, batch: list[tuple[Schedule, datetime]]) -> None:
        if len(batch) == 1:
            await self._fire_with_retry(*batch[0])
            return
        try:
            decisions = await fire.fire_many(
                self.db, self.starts, [(s.row, at) for s, at in batch], replica=self.replica
            )
        except StoreError as exc:
            self.log.warning(
                "batched fire failed; firing one by one", fires=len(batch), error=str(exc)
            )
            for schedule, at in batch:
                self._spawn(self._fire_with_retry(schedule, at))
            return
        for (schedule, at), decision in zip(batch, decisions, strict=True):
            self._report_decision(schedule, at, decision)

    def _report_decision(
        self, schedule: Schedule, scheduled_at: datetime, decision: fire.Decision | None
    ) -> None:
        if decision is not None:
            self._tell(decision.outcome, scheduled_at)
        if decision is not None and decision.outcome != "fired":
            self.log.info(
                f"schedule {decision.outcome}", workflowId=schedule.row.workflow_id,
                triggerId=schedule.row.trigger_id, scheduledAt=scheduled_at.isoformat(),
                reason=decision.reason,
            )  # fmt: skip

    async def _fire_with_retry(self, schedule: Schedule, scheduled_at: datetime) -> None:
        deadline = scheduled_at + timedelta(seconds=schedule.grace)
        while True:
            try:
                decision = await fire.fire(
                    self.db, self.starts, schedule.row, scheduled_at, replica=self.replica
                )
            except StoreError as exc:
                if datetime.now(UTC) + timedelta(seconds=FIRE_RETRY_SECONDS) > deadline:
                    # Give it to the next sync's catch-up, which decides it by policy.
                    self._dirty.add(schedule.job_id)
                    self.log.warning(
                        "schedule fire failed", workflowId=schedule.row.workflow_id,
                        triggerId=schedule.row.trigger_id, scheduledAt=scheduled_at.isoformat(),
                        error=str(exc),
                    )  # fmt: skip
                    return
                await asyncio.sleep(FIRE_RETRY_SECONDS)
                continue
            self._report_decision(schedule, scheduled_at, decision)
            return

    def _tell(self, outcome: str, scheduled_at: datetime, count: int = 1) -> None:
        """Tell the observer (metrics) what this replica decided (not what another did)."""
        if self.on_fire is not None:
            self.on_fire(outcome, scheduled_at, count)

    async def _guard(self, schedule: Schedule, work: Awaitable[Any]) -> Any:
        """Run a catch-up or miss write; a database error marks the schedule for the next sync."""
        try:
            return await work
        except StoreError as exc:
            self._dirty.add(schedule.job_id)
            self.log.warning(
                "schedule write failed", workflowId=schedule.row.workflow_id,
                triggerId=schedule.row.trigger_id, error=str(exc),
            )  # fmt: skip
            return None

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("schedule task crashed", exc_info=task.exception())

    async def _listen(self) -> None:
        # Until it is back, trigger changes are found by polling.
        await self.db.follow(
            (triggers.TRIGGERS_CHANNEL,),
            lambda _: self._changed.set(),
            listening=self._changed.set,  # anything changed while we were not listening
            retry_seconds=self.settings.scheduler_poll_seconds,
            what="trigger listener",
        )


def _never_called() -> None:
    """The jobs' callable: `_DueExecutor` runs `Scheduler._due` instead, with the run time."""


class _DueExecutor(BaseExecutor):  # type: ignore[misc]  # APScheduler 3 ships no types
    """Hands each due run time of a job to `submit(job id, scheduled time)`.

    APScheduler's own executors call the job without its scheduled time, refuse a run while an
    earlier one of the same job is still running (`max_instances`), and drop runs later than
    the job's grace with only a log line; the scheduler decides all of that itself instead.
    """

    def __init__(self, submit: Callable[[str, datetime], None]) -> None:
        super().__init__()
        self._submit = submit

    def submit_job(self, job: Any, run_times: list[datetime]) -> None:
        """Submit every run time (called on the event loop by the scheduler)."""
        self._do_submit_job(job, run_times)

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        for run_time in run_times:
            self._submit(job.id, run_time)

    def shutdown(self, wait: bool = True) -> None:
        """Nothing to stop: the fires are the scheduler's tasks, which it waits for."""
