"""The credential provider: `DWF_SECRET_<NAME>` variables, then files under `$DWF_SECRETS_DIR`.

A secret's name is lower-case words joined by `-` or `.` (`slack-token`); its variable is the name
upper-cased with `-` and `.` as `_` (`DWF_SECRET_SLACK_TOKEN`); its file is `<dir>/<name>` (a
Kubernetes secret volume), read fresh each time so a rotated secret is picked up, with one
trailing newline stripped. Every value handed out is remembered (`revealed`, and the process's
masker in `runner.credentials.masking`), so it is masked wherever it would leave the process.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from runner.credentials import masking
from runner.errors import MissingCredential

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def env_name(name: str) -> str:
    """The environment variable that holds secret `name`: `slack-token` → DWF_SECRET_SLACK_TOKEN."""
    return "DWF_SECRET_" + re.sub(r"[-.]", "_", name).upper()


class CredentialProvider:
    """Looks secrets up by name; `revealed` holds every value handed out (for masking)."""

    def __init__(
        self, env: Mapping[str, str] | None = None, secrets_dir: str | Path | None = None
    ) -> None:
        self._env = os.environ if env is None else env
        folder = secrets_dir if secrets_dir is not None else self._env.get("DWF_SECRETS_DIR")
        self.secrets_dir = Path(folder) if folder else None
        self.revealed: set[str] = set()
        self._remember_configured()

    def _remember_configured(self) -> None:
        """Mask every configured value from the start, not only once revealed: a process that
        never reads a secret (an API replica) may still be sent one (in a trigger payload)."""
        for name, value in self._env.items():
            if name.startswith("DWF_SECRET_") and value:
                masking.remember(value)
        if self.secrets_dir is not None and self.secrets_dir.is_dir():
            for path in self.secrets_dir.iterdir():
                if _NAME.match(path.name) and path.is_file():
                    with contextlib.suppress(OSError, UnicodeDecodeError):
                        text = path.read_text(encoding="utf-8")
                        masking.remember(text[:-1] if text.endswith("\n") else text)

    def get(self, name: str) -> str:
        """The secret's value; MissingCredential names the variable and file that were tried."""
        value = self.find(name)
        if value is None:
            where = env_name(name) if _NAME.match(name) else "a DWF_SECRET_* variable"
            if self.secrets_dir is not None and _NAME.match(name):
                where += f" or the file {name} in DWF_SECRETS_DIR"
            raise MissingCredential(name, f"secret {name!r} is not configured: set {where}")
        return value

    def find(self, name: str) -> str | None:
        """The secret's value, or None when neither the variable nor the file exists."""
        if not _NAME.match(name) or name in (".", ".."):
            return None
        value = self._env.get(env_name(name))
        if value is None and self.secrets_dir is not None:
            path = self.secrets_dir / name
            # A name is one path segment (checked above); symlinks inside a secret volume are
            # how Kubernetes mounts them, so they are followed, but only to a regular file.
            if path.is_file():
                text = path.read_text(encoding="utf-8")
                value = text[:-1] if text.endswith("\n") else text
        if value:
            self.revealed.add(value)
            masking.remember(value)
        return value or None
