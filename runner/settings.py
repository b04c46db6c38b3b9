"""Settings: one frozen object built at the edge from `DWF_*` variables (and flags), passed down."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UsageError
from runner.spec.limits import (
    DEFAULT_CONDITION_MEMORY_LIMIT_BYTES,
    DEFAULT_CONDITION_TIME_LIMIT_SECONDS,
    DEFAULT_MAX_RENDERED_BYTES,
)

DEFAULT_HOME = "~/.local/share/dwf"
DEFAULT_TENANT = "default"
DEFAULT_MAX_PARALLEL_ACTIONS = 10
DEFAULT_ACTION_TIMEOUT_SECONDS = 300.0
DEFAULT_MAX_TRIGGER_BYTES = 1024 * 1024
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MAX_TRIGGER_DEPTH = 64
DEFAULT_POOL_MAX_SIZE = 10
DEFAULT_PORT = 8080
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_HEARTBEAT_SECONDS = 10.0
DEFAULT_POLL_SECONDS = 1.0
DEFAULT_MAX_DELIVERIES = 5
DEFAULT_SHUTDOWN_GRACE_SECONDS = 30.0
#: How long a worker keeps sending a transition while the database is unavailable before it
#: hands the execution back (at least the lease: see `transition_retry_seconds`).
DEFAULT_DB_RETRY_SECONDS = 60.0
DEFAULT_WORKER_EXECUTIONS = 32
DEFAULT_WORKER_NODES = 64
DEFAULT_SCHEDULER_POLL_SECONDS = 10.0
DEFAULT_SYNC_BRANCH = "main"
DEFAULT_SYNC_INTERVAL_SECONDS = 30.0
DEFAULT_SYNC_MAX_ARCHIVE_SHARE = 0.5  # the mass-delete guard: at most half the git workflows
DEFAULT_SYNC_WEBHOOK_SECRET = "sync-webhook"
DEFAULT_HTTP_TIMEOUT_SECONDS = 30.0
DEFAULT_HTTP_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
DEFAULT_SLACK_API_URL = "https://slack.com/api/"
DEFAULT_MONDAY_API_URL = "https://api.monday.com/v2"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with defaults; build it with `Settings.from_env`."""

    database_url: str | None = None
    home: Path = dataclasses.field(default_factory=lambda: Path(DEFAULT_HOME).expanduser())
    tenant: str = DEFAULT_TENANT
    max_parallel_actions: int = DEFAULT_MAX_PARALLEL_ACTIONS
    action_timeout: float = DEFAULT_ACTION_TIMEOUT_SECONDS
    condition_time_limit: float = DEFAULT_CONDITION_TIME_LIMIT_SECONDS
    condition_memory_limit: int = DEFAULT_CONDITION_MEMORY_LIMIT_BYTES
    max_rendered_bytes: int = DEFAULT_MAX_RENDERED_BYTES
    max_trigger_bytes: int = DEFAULT_MAX_TRIGGER_BYTES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_trigger_depth: int = DEFAULT_MAX_TRIGGER_DEPTH
    pool_max_size: int = DEFAULT_POOL_MAX_SIZE
    port: int = DEFAULT_PORT
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    heartbeat_seconds: float = DEFAULT_HEARTBEAT_SECONDS
    poll_seconds: float = DEFAULT_POLL_SECONDS
    max_deliveries: int = DEFAULT_MAX_DELIVERIES
    shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_SECONDS
    db_retry_seconds: float = DEFAULT_DB_RETRY_SECONDS
    worker_executions: int = DEFAULT_WORKER_EXECUTIONS
    worker_nodes: int = DEFAULT_WORKER_NODES
    #: How often the scheduler re-reads the triggers besides their NOTIFY.
    scheduler_poll_seconds: float = DEFAULT_SCHEDULER_POLL_SECONDS
    log_format: str = "auto"  # auto (console on a terminal, JSON otherwise) | json | console
    # GitOps sync (SPEC §6): the repository (URL or path), branch, folder, interval, guard.
    sync_repo: str | None = None
    sync_branch: str = DEFAULT_SYNC_BRANCH
    sync_path: str = ""
    sync_interval: float = DEFAULT_SYNC_INTERVAL_SECONDS
    sync_max_archive_share: float = DEFAULT_SYNC_MAX_ARCHIVE_SHARE
    sync_allow_mass_delete: bool = False
    sync_webhook_secret: str = DEFAULT_SYNC_WEBHOOK_SECRET  # the secret's name, not its value
    # Connectors (SPEC §10): secrets folder, outbound HTTP limits, the APIs' base URLs.
    secrets_dir: Path | None = None
    http_allow_private: bool = False
    http_timeout: float = DEFAULT_HTTP_TIMEOUT_SECONDS
    http_max_response_bytes: int = DEFAULT_HTTP_MAX_RESPONSE_BYTES
    slack_api_url: str = DEFAULT_SLACK_API_URL
    monday_api_url: str = DEFAULT_MONDAY_API_URL

    @property
    def transition_retry_seconds(self) -> float:
        """How long a transition is sent again while the database is unavailable: the setting,
        and never less than the lease (a shorter wait would give up on executions that no other
        worker could have taken yet)."""
        return max(self.db_retry_seconds, self.lease_seconds)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from `DWF_*` variables, then explicit overrides (e.g. command-line flags)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        if env.get("DWF_DATABASE_URL"):
            values["database_url"] = env["DWF_DATABASE_URL"]
        if env.get("DWF_HOME"):
            values["home"] = Path(env["DWF_HOME"]).expanduser()
        if env.get("DWF_TENANT"):
            values["tenant"] = env["DWF_TENANT"]
        numbers = {
            "DWF_MAX_PARALLEL_ACTIONS": ("max_parallel_actions", int),
            "DWF_ACTION_TIMEOUT_SECONDS": ("action_timeout", float),
            "DWF_POOL_MAX_SIZE": ("pool_max_size", int),
            "DWF_MAX_BODY_BYTES": ("max_body_bytes", int),
            "DWF_LEASE_SECONDS": ("lease_seconds", float),
            "DWF_HEARTBEAT_SECONDS": ("heartbeat_seconds", float),
            "DWF_POLL_SECONDS": ("poll_seconds", float),
            "DWF_MAX_DELIVERIES": ("max_deliveries", int),
            "DWF_SHUTDOWN_GRACE_SECONDS": ("shutdown_grace_seconds", float),
            "DWF_DB_RETRY_SECONDS": ("db_retry_seconds", float),
            "DWF_WORKER_EXECUTIONS": ("worker_executions", int),
            "DWF_WORKER_NODES": ("worker_nodes", int),
            "DWF_SCHEDULER_POLL_SECONDS": ("scheduler_poll_seconds", float),
            "DWF_PORT": ("port", int),
            "DWF_SYNC_INTERVAL_SECONDS": ("sync_interval", float),
            "DWF_SYNC_MAX_ARCHIVE_SHARE": ("sync_max_archive_share", float),
            "DWF_HTTP_TIMEOUT_SECONDS": ("http_timeout", float),
            "DWF_HTTP_MAX_RESPONSE_BYTES": ("http_max_response_bytes", int),
        }
        for name, (field, kind) in numbers.items():
            if env.get(name):
                try:
                    values[field] = kind(env[name])
                except ValueError as exc:
                    what = "a whole number" if kind is int else "a number"
                    raise UsageError(f"{name}={env[name]!r} is not {what}") from exc
        if env.get("DWF_LOG_FORMAT"):
            values["log_format"] = env["DWF_LOG_FORMAT"]
        if env.get("DWF_SECRETS_DIR"):
            values["secrets_dir"] = Path(env["DWF_SECRETS_DIR"]).expanduser()
        if env.get("DWF_HTTP_ALLOW_PRIVATE"):
            values["http_allow_private"] = _flag("DWF_HTTP_ALLOW_PRIVATE", env)
        for name, field in (
            ("DWF_SLACK_API_URL", "slack_api_url"),
            ("DWF_MONDAY_API_URL", "monday_api_url"),
        ):
            if env.get(name):
                values[field] = env[name]
        for name, field in (
            ("DWF_SYNC_REPO", "sync_repo"),
            ("DWF_SYNC_BRANCH", "sync_branch"),
            ("DWF_SYNC_PATH", "sync_path"),
            ("DWF_SYNC_WEBHOOK_SECRET", "sync_webhook_secret"),
        ):
            if env.get(name):
                values[field] = env[name]
        if env.get("DWF_SYNC_ALLOW_MASS_DELETE"):
            values["sync_allow_mass_delete"] = _flag("DWF_SYNC_ALLOW_MASS_DELETE", env)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return dataclasses.replace(cls(), **values)  # type: ignore[arg-type]  # checked above


def _flag(name: str, env: Mapping[str, str]) -> bool:
    """A boolean variable: 1/true/yes/on or 0/false/no/off (any case)."""
    text = env[name].strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{name}={env[name]!r} is not a boolean (use true or false)")
