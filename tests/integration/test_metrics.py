"""`GET /metrics` on a real Postgres (issue 15): what runs moves the counters and histograms, the
queue's gauges are the database's (two daemons say the same), webhook answers, schedule fires
and sync runs are counted, the pool is shown, strict mode wants an admin, labels are bounded.
The exposition is read with prometheus_client's own parser, as Prometheus would."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

import runner
from runner.daemon import Daemon
from runner.engine.conductor import Conductor
from runner.engine.requests import StartRequest
from runner.engine.worker import Worker
from runner.observability.metrics import OTHER, Metrics
from runner.store.database import Database
from tests import jwt_keys
from tests.gitrepo import GitRepo
from tests.gitrepo import flow as git_flow
from tests.waiting import until

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
RETRY = {"maxAttempts": 2, "initialDelay": "10ms", "backoff": "fixed"}


def echo(node_id: str, *targets: str, **parameters: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": node_id, "actionType": "core.echo", "parameters": {"message": "hi"} | parameters,
    }  # fmt: skip
    if targets:
        node["edges"] = [{"targetNode": t} for t in targets]
    return node


def workflow(workflow_id: str, *nodes: dict[str, Any], **top: Any) -> dict[str, Any]:
    nodes = nodes or (echo("a"),)
    return {
        "apiVersion": "dataworkflows/v1", "kind": "Workflow", "id": workflow_id,
        "status": "active", "startNode": nodes[0]["id"], "nodes": list(nodes), **top,
    }  # fmt: skip


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def labels_of(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(key)[label] for sample, key in samples if sample == name}


@contextlib.asynccontextmanager
async def served(daemon: Daemon) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The daemon's API (no other role: nothing claims what is queued) and a client of it."""
    app = daemon.app()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            yield app, http


async def scrape(http: httpx.AsyncClient, **headers: str) -> Samples:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def record(daemon: Daemon, definition: dict[str, Any]) -> None:
    await daemon.versions.record(definition, tenant=daemon.settings.tenant, source_kind="api")


async def rows(db: Database, query: str, *params: Any) -> list[dict[str, Any]]:
    async with db.connection() as conn:
        cur = await conn.execute(query, params)
        return await cur.fetchall()


# -- executions and attempts ----------------------------------------------------------------


async def test_a_run_with_a_retry_and_a_failure_moves_the_counters_and_histograms(daemon):
    # `a` fails once (transiently) and succeeds on its retry; `b` then fails for good.
    await record(daemon, workflow("w", echo("a", "b", failTimes=1, failMode="transient") | {
        "retry": RETRY}, echo("b", failTimes=9, failMode="permanent")))  # fmt: skip
    await record(daemon, workflow("ok"))
    failed = await daemon.execute(StartRequest(workflow_id="w"))
    succeeded = await daemon.execute(StartRequest(workflow_id="ok"))
    assert (failed.status, succeeded.status) == ("Failed", "Succeeded")
    async with served(daemon) as (_, http):
        found = await scrape(http)

    w, ok = {"tenant": "default", "workflow": "w"}, {"tenant": "default", "workflow": "ok"}
    assert value(found, "dwf_executions_started_total", **w) == 1
    assert value(found, "dwf_executions_finished_total", **w, status="Failed") == 1
    assert value(found, "dwf_executions_finished_total", **w, status="Succeeded") is None
    assert value(found, "dwf_executions_finished_total", **ok, status="Succeeded") == 1
    assert value(found, "dwf_execution_duration_seconds_count", **w) == 1
    assert value(found, "dwf_execution_duration_seconds_bucket", **w, le="+Inf") == 1
    assert (value(found, "dwf_execution_duration_seconds_sum", **w) or 0) > 0
    # Four attempts in all: a's failure and its retry, b's failure, ok's one.
    echo_type = {"action_type": "core.echo"}
    assert value(found, "dwf_action_attempts_total", **echo_type, status="RetriableFailure") == 1
    assert value(found, "dwf_action_attempts_total", **echo_type, status="Failed") == 1
    assert value(found, "dwf_action_attempts_total", **echo_type, status="Succeeded") == 2
    assert value(found, "dwf_action_attempt_duration_seconds_count", **echo_type) == 4
    assert value(found, "dwf_build_info", version=runner.__version__) == 1
    # No label names an execution.
    for _, key in found:
        assert str(failed.execution_id) not in dict(key).values()


async def test_openmetrics_when_the_accept_header_asks_for_it(daemon):
    async with served(daemon) as (_, http):
        response = await http.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    assert "dwf_build_info" in response.text


# -- gauges read from the database ----------------------------------------------------------


async def test_queue_depth_and_oldest_age_are_the_databases_for_every_replica(settings, db):
    async with Daemon(settings, database=db) as one, Daemon(settings) as other:
        await record(one, workflow("w"))
        for n in range(3):
            await one.starts.start(StartRequest(workflow_id="w", request_id=f"r{n}"))
        # The oldest has waited an hour (as if no worker had run meanwhile).
        async with db.transaction() as conn:
            await conn.execute(
                "UPDATE execution_queue SET available_at = now() - interval '1 hour' WHERE"
                " execution_id = (SELECT execution_id FROM workflow_executions"
                " WHERE request_id = 'r0')"
            )
        age = "SELECT extract(epoch FROM now() - min(available_at))::float8 AS age" \
              " FROM execution_queue"  # fmt: skip
        [before] = await rows(db, age)
        async with served(one) as (_, first), served(other) as (_, second):
            seen = [await scrape(first), await scrape(second)]
            [after] = await rows(db, age)
            for found in seen:
                assert value(found, "dwf_queue_depth") == 3
                assert before["age"] <= value(found, "dwf_queue_oldest_age_seconds") <= after["age"]
                assert value(found, "dwf_database_up") == 1
            # A new start shows once the cached answer (at most a second old) is read again.
            await one.starts.start(StartRequest(workflow_id="w", request_id="r3"))

            async def four() -> bool:
                return value(await scrape(second), "dwf_queue_depth") == 4

            await until(four, 5, "the fourth execution in the depth")


async def test_pool_gauges_show_connections_in_use_and_requests_waiting(settings):
    small = dataclasses.replace(settings, pool_max_size=2)
    async with Daemon(small) as daemon, served(daemon) as (_, http):
        daemon.metrics.cache_seconds = 0  # every scrape reads the pool and the database now

        async def idle() -> Samples | None:  # once the start-up's catalog write is done
            found = await scrape(http)
            return found if value(found, "dwf_db_pool_connections_in_use") == 0 else None

        found = await until(idle, 5, "no connection in use")
        assert value(found, "dwf_db_pool_connections_max") == 2
        assert value(found, "dwf_db_pool_requests_waiting") == 0
        async with daemon.db.connection():
            found = await scrape(http)
            assert value(found, "dwf_db_pool_connections_in_use") == 1
            async with daemon.db.connection():
                # The pool is exhausted: a third request waits. A scrape still answers once
                # its own read gives up (2 s), saying so, without the database's gauges.
                waiting = asyncio.create_task(_borrow(daemon.db))
                await until(
                    _waiting(daemon.db), 5, "a request waiting for a connection", interval=0.01
                )
                found = await scrape(http)
                assert value(found, "dwf_db_pool_connections_in_use") == 2
                assert (value(found, "dwf_db_pool_requests_waiting") or 0) >= 1
                assert value(found, "dwf_database_up") == 0
                assert value(found, "dwf_queue_depth") is None
        await waiting
        found = await scrape(http)
        assert value(found, "dwf_database_up") == 1
        assert value(found, "dwf_queue_depth") == 0
        assert value(found, "dwf_db_pool_requests_waiting") == 0


async def _borrow(db: Database) -> None:
    async with db.connection():
        pass


def _waiting(db: Database):
    async def check() -> bool:
        return db.pool_stats().get("requests_waiting", 0) > 0

    return check


# -- webhooks, schedules, sync --------------------------------------------------------------


async def test_webhook_answers_are_counted_by_status_code(daemon):
    hook = {"id": "open", "type": "webhook", "path": "open", "requestIdHeader": "X-Id"}
    await record(daemon, workflow("hooked", triggers=[hook]))
    async with served(daemon) as (_, http):
        sent = [
            await http.post("/api/v1/hooks/default/open", json={}, headers={"X-Id": "1"}),
            await http.post("/api/v1/hooks/default/open", json={}, headers={"X-Id": "1"}),
            await http.post("/api/v1/hooks/default/nowhere", json={}),
            await http.post("/api/v1/hooks/default/open", content=b"x" * (2 << 20)),
            await http.post("/api/v1/workflows/hooked/execute", json={}),  # not a webhook
        ]
        assert [r.status_code for r in sent] == [202, 200, 404, 413, 202]
        found = await scrape(http)
    codes = {c: value(found, "dwf_webhook_responses_total", code=c) for c in ("200", "202")}
    assert codes == {"200": 1, "202": 1}
    assert value(found, "dwf_webhook_responses_total", code="404") == 1
    assert value(found, "dwf_webhook_responses_total", code="413") == 1


async def test_fire_outcomes_match_the_fire_log_of_this_replica(settings, db):
    fast = dataclasses.replace(settings, scheduler_poll_seconds=0.5)
    tick = {"id": "tick", "type": "schedule", "cron": "* * * * * *", "overlap": "skip"}
    late = {"id": "late", "type": "schedule", "cron": "* * * * * *", "catchup": "none",
            "misfireGraceTime": "1s",
            "overlap": "allow"}  # fmt: skip
    async with Daemon(fast, database=db) as daemon:
        await record(daemon, workflow("w", triggers=[tick, late]))
        # As if every replica had been down for ten seconds: `late` owes missed times.
        since = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=10)
        async with db.transaction() as conn:
            await conn.execute(
                "UPDATE workflow_triggers SET last_fired_at = %s, active_since = %s",
                (since, since - timedelta(hours=1)),
            )
        log = "SELECT outcome, sum(fires)::integer AS n FROM trigger_fires" \
              " WHERE replica = %s GROUP BY outcome"  # fmt: skip

        async def decided() -> dict[str, int]:
            return {r["outcome"]: r["n"] for r in await rows(db, log, daemon.replica)}

        stop = asyncio.Event()
        task = asyncio.create_task(daemon.scheduler().run(stop))
        try:
            # No worker runs: `tick`'s first execution stays Pending, so later times skip.
            await until(lambda: _has(decided, {"fired", "skipped", "missed"}), 15, "every outcome")
        finally:
            stop.set()
            await task
        expected = await decided()
        async with served(daemon) as (_, http):
            found = await scrape(http)
    shown = {o: value(found, "dwf_schedule_fires_total", outcome=o) for o in expected}
    assert shown == expected
    assert value(found, "dwf_schedule_fire_lag_seconds_count") == expected["fired"]


async def _has(decided: Any, outcomes: set[str]) -> bool:
    return outcomes <= set(await decided())


async def test_sync_runs_are_counted_and_the_last_good_one_read_from_the_database(
    settings, db, tmp_path
):
    repo = GitRepo(tmp_path / "repo")
    repo.write("workflows/a.yaml", git_flow("a"))
    repo.commit()
    syncing = dataclasses.replace(settings, sync_repo=str(repo.root))
    async with Daemon(syncing, database=db) as daemon:
        applied = await daemon.syncer().sync("cli")
        unchanged = await daemon.syncer().sync("cli")
        assert applied and unchanged and (applied.status, unchanged.status) == (
            "applied", "unchanged")  # fmt: skip
        assert unchanged.finished_at is not None
        async with served(daemon) as (_, http):
            found = await scrape(http)
        assert value(found, "dwf_sync_runs_total", status="applied") == 1
        assert value(found, "dwf_sync_runs_total", status="unchanged") == 1
        last = value(found, "dwf_sync_last_success_timestamp_seconds")
        assert last == pytest.approx(unchanged.finished_at.timestamp(), abs=1e-3)
    # Another replica, whose syncs fail (no such branch), counts its failure and reports the
    # same last good sync: it is the database's.
    broken = dataclasses.replace(syncing, sync_branch="release")
    async with Daemon(broken, database=db) as other:
        failed = await other.syncer().sync("cli")
        assert failed is not None and failed.status == "failed"
        async with served(other) as (_, http):
            found = await scrape(http)
    assert value(found, "dwf_sync_runs_total", status="failed") == 1
    assert value(found, "dwf_sync_runs_total", status="applied") is None
    assert value(found, "dwf_sync_last_success_timestamp_seconds") == last


# -- who may read, and how many series ------------------------------------------------------


async def test_strict_mode_asks_for_an_admin_token(settings, db):
    async with jwt_keys.serving(jwt_keys.strict(settings), db) as served_api:
        http = served_api.http
        anonymous = await http.get("/metrics")
        viewer = await http.get("/metrics", headers=jwt_keys.bearer(jwt_keys.token(
            roles=["viewer"])))  # fmt: skip
        operator = await http.get("/metrics", headers=jwt_keys.bearer(jwt_keys.token(
            roles=["operator"])))  # fmt: skip
        admin = await http.get("/metrics", headers=jwt_keys.bearer(jwt_keys.token()))
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert (viewer.status_code, operator.status_code) == (403, 403)
    assert admin.status_code == 200
    assert value(parse(admin.text), "dwf_build_info", version=runner.__version__) == 1


async def test_workflow_labels_past_the_cap_are_counted_as_other(daemon, settings):
    metrics = Metrics(daemon.db, tenant=settings.tenant, max_workflows=2)
    conductor = Conductor(
        daemon.db, settings, starts=daemon.starts, services=daemon.services,
        wrappers=[metrics.attempts], execution_wrappers=[metrics.executions],
    )  # fmt: skip
    worker = Worker(conductor, settings, name="capped")
    for workflow_id in ("w1", "w2", "w3", "w4", "w1"):
        await record(daemon, workflow(workflow_id))
        row = await worker.execute(StartRequest(workflow_id=workflow_id))
        assert row.status == "Succeeded"
    found = parse(generate_latest(metrics.registry).decode())
    started = "dwf_executions_started_total"
    assert labels_of(found, started, "workflow") == {"w1", "w2", OTHER}
    assert value(found, started, tenant="default", workflow="w1") == 2
    assert value(found, started, tenant="default", workflow=OTHER) == 2
    assert labels_of(found, "dwf_execution_duration_seconds_count", "workflow") == {
        "w1", "w2", OTHER}  # fmt: skip
