"""Log lines: JSON off a terminal, with the bound identity of the execution."""

from __future__ import annotations

import json

import structlog

from runner import logs


def test_json_lines_to_stderr_with_bound_context(capsys):
    try:
        logs.configure("json", "info")
        log = structlog.get_logger("t").bind(executionId="e-1", workflowId="w", version=2)
        log.info("node finished", nodeId="a", attempt=1, correlationId="c")
        log.debug("not shown at info")
    finally:
        structlog.reset_defaults()
    captured = capsys.readouterr()
    assert captured.out == ""
    [line] = captured.err.splitlines()
    entry = json.loads(line)
    assert entry["event"] == "node finished" and entry["level"] == "info"
    assert {k: entry[k] for k in ("executionId", "workflowId", "version", "nodeId", "attempt")} == {
        "executionId": "e-1",
        "workflowId": "w",
        "version": 2,
        "nodeId": "a",
        "attempt": 1,
    }
    assert entry["timestamp"].endswith("Z")
