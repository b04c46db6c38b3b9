"""Settings: one frozen object built at the edge from `DWF_*` variables (and flags), passed down."""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.errors import UsageError
from runner.spec.durations import parse_duration
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
AUTH_MODES = ("loose", "strict")
LOG_FORMATS = ("auto", "json", "console")
#: A tenant's name (as dwf.yaml's `tenant` and the tenant claim of a token).
TENANT_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")

DEFAULT_JWT_ROLES_CLAIM = "roles"
DEFAULT_JWT_TENANT_CLAIM = "tenant"
DEFAULT_JWKS_CACHE_SECONDS = 300.0
#: Rate limits (SPEC §12): so many requests per window, per replica (docs/security.md).
DEFAULT_RATE_LIMIT_EXECUTE = (600, 60.0)  # per principal, on POST /workflows/{id}/execute
DEFAULT_RATE_LIMIT_WEBHOOK = (600, 60.0)  # per tenant and path, on POST /hooks/{tenant}/{path}


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
    # Identity and limits (SPEC §12, docs/security.md).
    auth_mode: str = "loose"
    #: Loose mode on an address other than loopback: refused unless this is set (and logged).
    auth_insecure_bind: bool = False
    jwt_secret: str | None = None  # HS256
    jwt_jwks_url: str | None = None  # RS256/ES256 keys, fetched and cached
    jwt_jwks_file: Path | None = None  # RS256/ES256 keys, re-read when the file changes
    jwt_jwks_cache_seconds: float = DEFAULT_JWKS_CACHE_SECONDS
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_roles_claim: str = DEFAULT_JWT_ROLES_CLAIM
    jwt_tenant_claim: str = DEFAULT_JWT_TENANT_CLAIM
    jwt_leeway: float = 0.0
    #: (requests, window seconds), or None for no limit.
    rate_limit_execute: tuple[int, float] | None = DEFAULT_RATE_LIMIT_EXECUTE
    rate_limit_webhook: tuple[int, float] | None = DEFAULT_RATE_LIMIT_WEBHOOK

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
            if not TENANT_NAME.match(env["DWF_TENANT"]):
                raise UsageError(
                    f"DWF_TENANT={env['DWF_TENANT']!r} is not a tenant name: lowercase letters, "
                    "digits, `.`, `_` and `-`, starting with a letter or digit, at most 128"
                )
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
                values[field] = _number(name, env[name], kind)
        if env.get("DWF_LOG_FORMAT"):
            if env["DWF_LOG_FORMAT"] not in LOG_FORMATS:
                raise UsageError(
                    f"DWF_LOG_FORMAT={env['DWF_LOG_FORMAT']!r} is not one of "
                    + ", ".join(LOG_FORMATS)
                )
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
        values.update(_auth(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return dataclasses.replace(cls(), **values)  # type: ignore[arg-type]  # checked above


def _number(name: str, text: str, kind: type[int] | type[float]) -> int | float:
    """A finite number within the setting's range: above 0 (a port from 0, any free one; a
    share at most 1)."""
    what = "a whole number" if kind is int else "a number"
    try:
        value = kind(text)
    except ValueError as exc:
        raise UsageError(f"{name}={text!r} is not {what}") from exc
    if name == "DWF_PORT":
        valid, where = 0 <= value <= 65535, "from 0 to 65535"
    elif name == "DWF_SYNC_MAX_ARCHIVE_SHARE":
        valid, where = 0 < value <= 1, "above 0 and at most 1"
    else:
        valid, where = math.isfinite(value) and value > 0, "above 0"
    if not valid:
        raise UsageError(f"{name}={text!r}: it must be {what} {where}")
    return value


def _auth(env: Mapping[str, str]) -> dict[str, object]:
    """The identity and rate-limit settings (SPEC §12)."""
    values: dict[str, object] = {}
    if env.get("DWF_AUTH_MODE"):
        mode = env["DWF_AUTH_MODE"].strip().lower()
        if mode not in AUTH_MODES:
            raise UsageError(f"DWF_AUTH_MODE={env['DWF_AUTH_MODE']!r} is not loose or strict")
        values["auth_mode"] = mode
    if env.get("DWF_AUTH_INSECURE_BIND"):
        values["auth_insecure_bind"] = _flag("DWF_AUTH_INSECURE_BIND", env)
    for name, field in (
        ("DWF_JWT_SECRET", "jwt_secret"),
        ("DWF_JWT_JWKS_URL", "jwt_jwks_url"),
        ("DWF_JWT_ISSUER", "jwt_issuer"),
        ("DWF_JWT_AUDIENCE", "jwt_audience"),
        ("DWF_JWT_ROLES_CLAIM", "jwt_roles_claim"),
        ("DWF_JWT_TENANT_CLAIM", "jwt_tenant_claim"),
    ):
        if env.get(name):
            values[field] = env[name]
    if env.get("DWF_JWT_JWKS_FILE"):
        values["jwt_jwks_file"] = Path(env["DWF_JWT_JWKS_FILE"]).expanduser()
    for name, field in (
        ("DWF_JWT_LEEWAY", "jwt_leeway"),
        ("DWF_JWT_JWKS_CACHE", "jwt_jwks_cache_seconds"),
    ):
        if env.get(name):
            values[field] = _duration(name, env[name])
    for name, field in (
        ("DWF_RATE_LIMIT_EXECUTE", "rate_limit_execute"),
        ("DWF_RATE_LIMIT_WEBHOOK", "rate_limit_webhook"),
    ):
        if env.get(name):
            values[field] = parse_rate(name, env[name])
    return values


def parse_rate(name: str, text: str) -> tuple[int, float] | None:
    """A rate limit `N/DURATION` (`600/1m`: 600 requests a minute); `0` or `off`: none."""
    if text.strip().lower() in ("0", "off", "none"):
        return None
    count, _, window = text.partition("/")
    try:
        requests, seconds = int(count), parse_duration(window.strip() or "?")
    except ValueError as exc:
        raise UsageError(
            f"{name}={text!r} is not a rate: write requests/duration, e.g. 600/1m, or 0 for none"
        ) from exc
    if requests < 1 or seconds <= 0:
        raise UsageError(f"{name}={text!r}: both the count and the window must be above 0")
    return requests, seconds


def _duration(name: str, text: str) -> float:
    """A duration (`30s`, `2m`) or plain seconds."""
    try:
        return (
            float(text)
            if text.strip().replace(".", "", 1).isdigit()
            else parse_duration(text.strip())
        )
    except ValueError as exc:
        raise UsageError(f"{name}={text!r} is not a duration (e.g. 30s, 2m, or seconds)") from exc


def _flag(name: str, env: Mapping[str, str]) -> bool:
    """A boolean variable: 1/true/yes/on or 0/false/no/off (any case)."""
    text = env[name].strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"{name}={env[name]!r} is not a boolean (use true or false)")
