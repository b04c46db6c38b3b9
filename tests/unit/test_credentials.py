"""The credential provider: variables first, then the secrets folder; errors name, never reveal."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.credentials import CredentialProvider, env_name
from runner.errors import MissingCredential


def test_variable_name_upper_cases_and_replaces_separators() -> None:
    assert env_name("slack-token") == "DWF_SECRET_SLACK_TOKEN"
    assert env_name("monday.api-token") == "DWF_SECRET_MONDAY_API_TOKEN"


def test_variable_wins_over_file(tmp_path: Path) -> None:
    (tmp_path / "slack-token").write_text("from-file\n")
    provider = CredentialProvider({"DWF_SECRET_SLACK_TOKEN": "from-env"}, tmp_path)
    assert provider.get("slack-token") == "from-env"
    assert CredentialProvider({}, tmp_path).get("slack-token") == "from-file"


def test_file_is_read_fresh_so_rotation_is_seen(tmp_path: Path) -> None:
    provider = CredentialProvider({}, tmp_path)
    (tmp_path / "tok").write_text("one")
    assert provider.get("tok") == "one"
    (tmp_path / "tok").write_text("two")
    assert provider.get("tok") == "two"
    assert provider.revealed == {"one", "two"}


def test_missing_secret_names_variable_and_file_but_no_value(tmp_path: Path) -> None:
    provider = CredentialProvider({"DWF_SECRET_OTHER": "hunter2"}, tmp_path)
    with pytest.raises(MissingCredential) as caught:
        provider.get("slack-token")
    message = str(caught.value)
    assert "DWF_SECRET_SLACK_TOKEN" in message and "DWF_SECRETS_DIR" in message
    assert "hunter2" not in message and caught.value.name == "slack-token"


def test_names_cannot_leave_the_secrets_folder(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    (tmp_path / "outside").write_text("leaked")
    provider = CredentialProvider({}, folder)
    for name in ("../outside", "..", "a/b", "/etc/passwd"):
        assert provider.find(name) is None
