"""The process's Prometheus metrics (SPEC §13): a part of the Daemon with a registry of its own,
fed by the wrappers and observers the Daemon hands out, read by `GET /metrics`.

    metrics = Metrics(db, tenant=settings.tenant)
    Conductor(..., wrappers=[metrics.attempts], execution_wrappers=[metrics.executions])
    Scheduler(..., on_fire=metrics.fire)        # fired, skipped, failed, missed; the lag
    syncer_for(..., on_run=metrics.sync_run)     # each sync run's status
    metrics.webhook_response(202)                # the API's middleware, per delivery
    body, content_type = await metrics.scrape(request.headers.get("accept"))

Names start with `dwf_`, values are in base units (seconds), counters end in `_total`. Labels
are bounded: never an execution id; workflow ids, tenants and action types pass as themselves
for the first `max_*` distinct values this process sees, and as `_other` after that (a
tenant creating workflows over the API cannot grow the series without bound). The queue and
sync gauges are read from the database when scraped (cached `cache_seconds`), so every replica
reports the same; the counters are this process's (Prometheus sums them over replicas).
docs/observability.md lists every metric.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, Info, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

import runner
from runner.actions.base import ActionContext, ActionResult
from runner.actions.calls import ActionCall
from runner.engine.conductor import ExecutionCall
from runner.errors import DatabaseUnavailable, LeaseLost, StoreError
from runner.store import gauges
from runner.store.database import Database
from runner.store.executions import TERMINAL, ExecutionRow

_log = structlog.get_logger(__name__)

#: Distinct label values kept per label before new ones are counted as OTHER.
MAX_WORKFLOW_LABELS = 1_000
MAX_TENANT_LABELS = 100
MAX_ACTION_LABELS = 200
#: A workflow id, tenant or action type never starts with `_`, so this names no real one.
OTHER = "_other"
#: How long a scrape reuses the database's answer (seconds), and how long it waits for one.
CACHE_SECONDS = 1.0
READ_TIMEOUT_SECONDS = 2.0

# Seconds. Executions run from milliseconds (echo chains) to hours (waiting on children).
EXECUTION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0)
ATTEMPT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)
FIRE_LAG_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class BoundedLabel:
    """A label's values: the first `limit` distinct ones pass, later new ones become OTHER."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        """The value to record for `value`."""
        if value in self._seen:
            return value
        if len(self._seen) >= self.limit:
            return OTHER
        self._seen.add(value)
        return value


class Metrics:
    """This process's metrics: its own registry (two daemons in one process never collide)."""

    def __init__(
        self,
        db: Database,
        *,
        tenant: str,
        version: str = runner.__version__,
        cache_seconds: float = CACHE_SECONDS,
        max_workflows: int = MAX_WORKFLOW_LABELS,
        max_tenants: int = MAX_TENANT_LABELS,
    ) -> None:
        # No `_created` series (process-wide in prometheus_client): one more sample for every
        # counter and histogram series, a quarter of a scrape's cost, which Prometheus ignores
        # unless told otherwise.
        disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in the library
        self.db, self.tenant, self.cache_seconds = db, tenant, cache_seconds
        self.workflows, self.tenants = BoundedLabel(max_workflows), BoundedLabel(max_tenants)
        self.actions = BoundedLabel(MAX_ACTION_LABELS)
        self.registry = registry = CollectorRegistry()
        by_workflow = ["tenant", "workflow"]
        self.executions_started = Counter(
            "dwf_executions_started_total", "Executions that began running (Pending to Running).",
            by_workflow, registry=registry,
        )  # fmt: skip
        self.executions_finished = Counter(
            "dwf_executions_finished_total", "Executions that ended, by final status.",
            [*by_workflow, "status"], registry=registry,
        )  # fmt: skip
        self.execution_seconds = Histogram(
            "dwf_execution_duration_seconds", "From an execution's start to its end.",
            by_workflow, buckets=EXECUTION_BUCKETS, registry=registry,
        )  # fmt: skip
        self.attempts_total = Counter(
            "dwf_action_attempts_total", "Action attempts that ended, by result.",
            ["action_type", "status"], registry=registry,
        )  # fmt: skip
        self.attempt_seconds = Histogram(
            "dwf_action_attempt_duration_seconds", "One action attempt, as the engine called it.",
            ["action_type"], buckets=ATTEMPT_BUCKETS, registry=registry,
        )  # fmt: skip
        self.fires = Counter(
            "dwf_schedule_fires_total", "Scheduled times decided by this replica, by outcome.",
            ["outcome"], registry=registry,
        )  # fmt: skip
        self.fire_lag = Histogram(
            "dwf_schedule_fire_lag_seconds", "From a scheduled time to its fire's commit.",
            buckets=FIRE_LAG_BUCKETS, registry=registry,
        )  # fmt: skip
        self.sync_runs = Counter(
            "dwf_sync_runs_total", "GitOps sync runs of this replica, by status.", ["status"],
            registry=registry,
        )  # fmt: skip
        self.webhook_responses = Counter(
            "dwf_webhook_responses_total", "Answers to webhook deliveries (/api/v1/hooks/...).",
            ["code"], registry=registry,
        )  # fmt: skip
        Info("dwf_build", "The runner's version.", registry=registry).info({"version": version})
        registry.register(_DatabaseCollector(self))
        self._read: gauges.Gauges | None = None
        self._read_at: float | None = None
        self._answers: dict[str, tuple[float, bytes]] = {}  # by content type: (when, body)
        self._reading = asyncio.Lock()

    # -- what feeds it ----------------------------------------------------------------------

    def executions(self, call: ExecutionCall) -> ExecutionCall:
        """The conductor's execution wrapper: counts starts and ends, times what ended."""

        async def counted(row: ExecutionRow) -> str | None:
            labels = (self.tenants(row.tenant), self.workflows(row.workflow_id))
            began = time.time()
            # Cancelled while Pending ends without starting (the conductor's first check).
            starts = row.status == "Pending" and row.cancel_requested_at is None
            if starts:
                self.executions_started.labels(*labels).inc()
            try:
                outcome = await call(row)
            except (LeaseLost, DatabaseUnavailable):
                raise  # not an end: a later claim carries on
            except Exception:
                # Our own bug: the conductor recorded the execution Failed.
                self._ended(row, labels, "Failed", began if starts else None)
                raise
            if outcome in TERMINAL:  # not parked, released or never run
                self._ended(row, labels, outcome, began if starts else None)
            return outcome

        return counted

    def _ended(
        self, row: ExecutionRow, labels: tuple[str, str], status: str, began: float | None
    ) -> None:
        self.executions_finished.labels(*labels, status).inc()
        started = row.started_at.timestamp() if row.started_at is not None else began
        if started is not None:  # a Pending execution cancelled before it started has none
            self.execution_seconds.labels(*labels).observe(max(time.time() - started, 0.0))

    def attempts(self, call: ActionCall) -> ActionCall:
        """The outermost action-call wrapper: counts attempts by result and times them."""

        async def counted(context: ActionContext, params: Any) -> ActionResult:
            action = self.actions(context.action_type or "unknown")
            status = "Failed"  # what escaped the engine's own check
            began = time.perf_counter()
            try:
                result = await call(context, params)
                status = result.status
                return result
            except asyncio.CancelledError:
                status = "Cancelled"
                raise
            finally:
                self.attempts_total.labels(action, status).inc()
                self.attempt_seconds.labels(action).observe(time.perf_counter() - began)

        return counted

    def fire(self, outcome: str, scheduled_at: datetime, count: int = 1) -> None:
        """The scheduler decided `count` scheduled times (fired, skipped, failed, missed)."""
        self.fires.labels(outcome).inc(count)
        if outcome == "fired":
            lag = (datetime.now(UTC) - scheduled_at).total_seconds()
            self.fire_lag.observe(max(lag, 0.0))

    def sync_run(self, status: str) -> None:
        """A sync run of this replica ended (applied, unchanged, failed, refused)."""
        self.sync_runs.labels(status).inc()

    def webhook_response(self, code: int) -> None:
        """A webhook delivery was answered with `code`."""
        self.webhook_responses.labels(str(code)).inc()

    # -- what reads it ----------------------------------------------------------------------

    async def scrape(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition and its content type: OpenMetrics when `accept` asks for it, else
        Prometheus text. The database's gauges are read first, and the answer is kept, for
        `cache_seconds`: scrapes within it (several Prometheus servers) cost nothing."""
        encode, content_type = choose_encoder(accept or "")
        async with self._reading:  # concurrent scrapes share one read and one rendering
            kept = self._answers.get(content_type)
            if kept is not None and time.monotonic() - kept[0] < self.cache_seconds:
                return kept[1], content_type
            await self._refresh()
            # Rendered off the event loop: with many series it takes a while, and the workers
            # of this process must not wait for it.
            body = await asyncio.to_thread(encode, self.registry)
            self._answers[content_type] = (time.monotonic(), body)
        return body, content_type

    async def _refresh(self) -> None:
        """Read the database's gauges unless the last answer is younger than `cache_seconds`.
        A database that does not answer leaves them out (`dwf_database_up` 0), logged."""
        fresh = self._read_at is not None
        if fresh and time.monotonic() - (self._read_at or 0.0) < self.cache_seconds:
            return
        try:
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                async with self.db.connection() as conn:
                    self._read = await gauges.read(conn, self.tenant)
            self._read_at = time.monotonic()
        except (TimeoutError, StoreError) as exc:
            self._read, self._read_at = None, None
            reason = str(exc) or f"no answer within {READ_TIMEOUT_SECONDS:g} s"
            _log.warning("metrics: the database does not answer", error=reason)


class _DatabaseCollector(Collector):
    """The gauges of the last database read, and the pool's use now (no round trip)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        """Nothing to describe up front: the registry then does not collect at register."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The families, from the last read."""
        read = self.metrics._read
        up = 0 if read is None else 1
        yield _gauge("dwf_database_up", "1 when the scrape's database read answered.", up)
        if read is not None:
            yield _gauge(
                "dwf_queue_depth", "Executions a worker could claim now (every tenant).",
                read.queue_depth,
            )  # fmt: skip
            yield _gauge(
                "dwf_queue_oldest_age_seconds",
                "How long the oldest claimable execution has waited (0: none waits).",
                read.queue_oldest_seconds,
            )
            if read.sync_last_success is not None:
                yield _gauge(
                    "dwf_sync_last_success_timestamp_seconds",
                    "When the runner's tenant's last applied or unchanged sync run finished.",
                    read.sync_last_success,
                )
        try:
            pool = gauges.pool(self.metrics.db)
        except StoreError:
            return  # the database is closed
        yield _gauge("dwf_db_pool_connections_in_use", "Pooled connections lent out.", pool.in_use)
        yield _gauge("dwf_db_pool_connections_idle", "Pooled connections ready.", pool.idle)
        yield _gauge("dwf_db_pool_connections_max", "The pool's bound.", pool.max_size)
        yield _gauge(
            "dwf_db_pool_requests_waiting", "Requests waiting for a pooled connection.",
            pool.waiting,
        )  # fmt: skip


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
