"""A real git repository for sync tests: write files, commit, and build workflow YAML."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


class GitRepo:
    """A git repository with a working tree at `root`, on branch `main`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "--quiet", "--initial-branch=main")

    def git(self, *args: str) -> str:
        proc = subprocess.run(
            ["git", "-C", str(self.root), *args],
            capture_output=True, text=True, check=True, env={**os.environ, **GIT_ENV},
        )  # fmt: skip
        return proc.stdout.strip()

    def write(self, path: str, text: str) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")

    def delete(self, path: str) -> None:
        (self.root / path).unlink()

    def commit(self, message: str = "change") -> str:
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")


def flow(
    workflow_id: str,
    *,
    status: str = "active",
    message: str = "hello",
    cron: str | None = None,
    hook: str | None = None,
    child: str | None = None,
    delay: str | None = None,
) -> str:
    """A small workflow document as YAML: one echo node (after a delay, or starting `child`),
    with an optional schedule and webhook trigger."""
    lines = [
        "apiVersion: dataworkflows/v1",
        "kind: Workflow",
        f"id: {workflow_id}",
        f"status: {status}",
        "startNode: first",
    ]
    triggers = ["  - {id: by-hand, type: manual}"]
    if cron:
        triggers.append(f'  - {{id: timer, type: schedule, cron: "{cron}"}}')
    if hook:
        triggers.append(f"  - {{id: hook, type: webhook, path: {hook}}}")
    lines += ["triggers:", *triggers, "nodes:"]
    if delay:
        lines += [
            "  - id: first",
            "    actionType: core.delay",
            f"    parameters: {{duration: {delay}}}",
            "    edges: [{targetNode: last}]",
        ]
    elif child:
        lines += [
            "  - id: first",
            "    nodeType: subworkflow",
            f"    workflowId: {child}",
            "    edges: [{targetNode: last}]",
        ]
    else:
        lines += ["  - id: first", "    actionType: core.echo", "    parameters: {message: start}",
                  "    edges: [{targetNode: last}]"]  # fmt: skip
    lines += [
        "  - id: last",
        "    actionType: core.echo",
        f"    parameters: {{message: {message}}}",
    ]
    return "\n".join(lines) + "\n"
