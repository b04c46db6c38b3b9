"""`Settings.from_env`: the `DWF_*` variables, their defaults, and flags that override them."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import settings
from runner.errors import UsageError
from runner.settings import Settings


def test_defaults_without_any_variable():
    s = Settings.from_env({})
    assert s.database_url is None
    assert s.home == Path("~/.local/share/dwf").expanduser()
    assert s.tenant == "default"
    assert s.max_parallel_actions == 10
    assert s.action_timeout == 300.0
    assert s.port == 8080
    assert s.lease_seconds == 30.0
    assert (s.sync_repo, s.sync_branch, s.sync_path) == (None, "main", "")
    assert s.sync_max_archive_share == 0.5
    assert s.sync_allow_mass_delete is False
    assert s.http_allow_private is False
    assert s.secrets_dir is None
    assert s.slack_api_url == "https://slack.com/api/"


def test_the_process_environment_is_read_when_no_mapping_is_given(monkeypatch):
    monkeypatch.setenv("DWF_TENANT", "acme")
    monkeypatch.setenv("DWF_PORT", "9001")
    s = Settings.from_env()
    assert (s.tenant, s.port) == ("acme", 9001)


def test_text_variables():
    s = Settings.from_env(
        {
            "DWF_DATABASE_URL": "postgresql://db/dwf",
            "DWF_TENANT": "acme",
            "DWF_LOG_FORMAT": "json",
            "DWF_SYNC_REPO": "https://git.example/flows.git",
            "DWF_SYNC_BRANCH": "release",
            "DWF_SYNC_PATH": "flows",
            "DWF_SYNC_WEBHOOK_SECRET": "hook-secret",
            "DWF_SLACK_API_URL": "http://127.0.0.1:9/slack/",
            "DWF_MONDAY_API_URL": "http://127.0.0.1:9/monday",
        }
    )
    assert s.database_url == "postgresql://db/dwf"
    assert (s.tenant, s.log_format) == ("acme", "json")
    assert (s.sync_repo, s.sync_branch, s.sync_path) == (
        "https://git.example/flows.git",
        "release",
        "flows",
    )
    assert s.sync_webhook_secret == "hook-secret"
    assert s.slack_api_url == "http://127.0.0.1:9/slack/"
    assert s.monday_api_url == "http://127.0.0.1:9/monday"


def test_path_variables_expand_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    s = Settings.from_env({"DWF_HOME": "~/dwf", "DWF_SECRETS_DIR": "~/secrets"})
    assert s.home == tmp_path / "dwf"
    assert s.secrets_dir == tmp_path / "secrets"


@pytest.mark.parametrize(
    ("name", "field", "text", "value"),
    [
        ("DWF_MAX_PARALLEL_ACTIONS", "max_parallel_actions", "4", 4),
        ("DWF_ACTION_TIMEOUT_SECONDS", "action_timeout", "2.5", 2.5),
        ("DWF_POOL_MAX_SIZE", "pool_max_size", "20", 20),
        ("DWF_MAX_BODY_BYTES", "max_body_bytes", "2048", 2048),
        ("DWF_LEASE_SECONDS", "lease_seconds", "12", 12.0),
        ("DWF_HEARTBEAT_SECONDS", "heartbeat_seconds", "4", 4.0),
        ("DWF_POLL_SECONDS", "poll_seconds", "0.25", 0.25),
        ("DWF_MAX_DELIVERIES", "max_deliveries", "3", 3),
        ("DWF_SHUTDOWN_GRACE_SECONDS", "shutdown_grace_seconds", "5", 5.0),
        ("DWF_WORKER_EXECUTIONS", "worker_executions", "8", 8),
        ("DWF_WORKER_NODES", "worker_nodes", "16", 16),
        ("DWF_SCHEDULER_POLL_SECONDS", "scheduler_poll_seconds", "2", 2.0),
        ("DWF_PORT", "port", "9000", 9000),
        ("DWF_SYNC_INTERVAL_SECONDS", "sync_interval", "60", 60.0),
        ("DWF_SYNC_MAX_ARCHIVE_SHARE", "sync_max_archive_share", "0.9", 0.9),
        ("DWF_HTTP_TIMEOUT_SECONDS", "http_timeout", "7.5", 7.5),
        ("DWF_HTTP_MAX_RESPONSE_BYTES", "http_max_response_bytes", "1000", 1000),
    ],
)
def test_number_variables(name, field, text, value):
    s = Settings.from_env({name: text})
    assert getattr(s, field) == value
    assert type(getattr(s, field)) is type(value)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("DWF_PORT", "eighty"),
        ("DWF_PORT", "80.5"),  # an integer setting refuses a fraction instead of rounding it
        ("DWF_MAX_PARALLEL_ACTIONS", "10x"),
        ("DWF_LEASE_SECONDS", "30s"),  # seconds are plain numbers, not durations
    ],
)
def test_a_bad_number_names_the_variable_and_its_value(name, text):
    with pytest.raises(UsageError) as info:
        Settings.from_env({name: text})
    message = str(info.value)
    kind = "a number" if name == "DWF_LEASE_SECONDS" else "a whole number"
    assert f"{name}={text!r} is not {kind}" in message


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[("1", True), ("true", True), ("YES", True), (" on ", True)],
        *[("0", False), ("False", False), ("no", False), ("off", False)],
    ],
)
@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("DWF_SYNC_ALLOW_MASS_DELETE", "sync_allow_mass_delete"),
        ("DWF_HTTP_ALLOW_PRIVATE", "http_allow_private"),
    ],
)
def test_boolean_variables(name, field, text, value):
    assert getattr(Settings.from_env({name: text}), field) is value


@pytest.mark.parametrize("name", ["DWF_SYNC_ALLOW_MASS_DELETE", "DWF_HTTP_ALLOW_PRIVATE"])
def test_a_bad_boolean_names_the_variable_and_says_what_is_valid(name):
    with pytest.raises(UsageError) as info:
        Settings.from_env({name: "maybe"})
    message = str(info.value)
    assert name in message and "'maybe'" in message and "true or false" in message


def test_an_empty_variable_means_the_default():
    s = Settings.from_env({"DWF_PORT": "", "DWF_TENANT": "", "DWF_SYNC_ALLOW_MASS_DELETE": ""})
    assert (s.port, s.tenant, s.sync_allow_mass_delete) == (
        settings.DEFAULT_PORT,
        settings.DEFAULT_TENANT,
        False,
    )


def test_overrides_win_over_variables():
    env = {"DWF_PORT": "9000", "DWF_TENANT": "from-env", "DWF_SYNC_BRANCH": "env-branch"}
    s = Settings.from_env(env, port=7000, tenant="from-flag")
    assert (s.port, s.tenant) == (7000, "from-flag")
    assert s.sync_branch == "env-branch"  # not overridden: the variable stands


def test_an_override_of_none_is_a_flag_not_given():
    s = Settings.from_env({"DWF_PORT": "9000"}, port=None, sync_repo=None)
    assert s.port == 9000 and s.sync_repo is None


def test_a_flag_may_set_what_no_variable_sets():
    s = Settings.from_env({}, condition_time_limit=0.2)
    assert s.condition_time_limit == 0.2
