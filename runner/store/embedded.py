"""The embedded default: a private Postgres from `pgserver`, its data under `<home>/pgdata`.

The server starts on first use and keeps running after the command exits, so later commands and
processes reuse it. `stop` ends it (tests; there is no need to stop it otherwise).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

from runner.errors import StoreError

PGDATA_FOLDER = "pgdata"
LOCK_FILE = "pgdata.lock"
STOP_TIMEOUT_SECONDS = 30


def embedded_url(home: Path) -> str:
    """Start the server under `home` unless it runs already; return its libpq URL."""
    pgdata = _pgdata(home)
    with _locked(home):
        url = _running_url(pgdata)
        if url is not None:
            return url
        pgserver = _pgserver()
        # A handle cached in this process may describe a server stopped since; start afresh.
        _forget(pgserver, pgdata)
        pgdata.mkdir(exist_ok=True)
        try:
            server = pgserver.get_server(pgdata, cleanup_mode=None)
        except (OSError, RuntimeError, subprocess.SubprocessError, AssertionError) as exc:
            raise StoreError(
                f"cannot start the embedded Postgres in {pgdata}: {exc} (its log is "
                f"{pgdata / 'log'}); set DWF_DATABASE_URL to use another server"
            ) from exc
        return str(server.get_uri())


def stop(home: Path) -> bool:
    """Stop the embedded server under `home`; return whether one was running."""
    pgdata = _pgdata(home)
    with _locked(home):
        if _running_url(pgdata) is None:
            return False
        pgserver = _pgserver()
        _forget(pgserver, pgdata)
        # As root, pgserver runs Postgres as its own `pgserver` user; pg_ctl must run as that one.
        user = "pgserver" if os.geteuid() == 0 else None
        pgserver.pg_ctl(
            ["-m", "fast", "-w", "stop"], pgdata=pgdata, user=user, timeout=STOP_TIMEOUT_SECONDS
        )
        return True


def _pgdata(home: Path) -> Path:
    return (home.expanduser() / PGDATA_FOLDER).resolve()


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    # pgserver has a lock of its own, but not around creating the data folder nor around our
    # check-then-start; an exclusive lock per home makes concurrent first uses start one server.
    home = home.expanduser()
    home.mkdir(parents=True, exist_ok=True)
    with (home / LOCK_FILE).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _running_url(pgdata: Path) -> str | None:
    """The URL of a ready server on `pgdata`, read from its postmaster.pid; None if none runs."""
    # Cheaper than pgserver.get_server, which (as root) re-walks permissions of its install.
    utils = _pgserver().utils

    try:
        info = utils.PostmasterInfo.read_from_pgdata(pgdata)
    except (OSError, ValueError, AssertionError):  # absent, or written half by a starting server
        return None
    if info is None or not info.is_running() or info.status != "ready":
        return None
    return str(info.get_uri())


def _pgserver() -> ModuleType:
    with warnings.catch_warnings():
        # platformdirs warns at pgserver's import when XDG_RUNTIME_DIR is unset; it falls back
        # to a folder under /tmp, which is fine for pgserver's lock file.
        warnings.filterwarnings("ignore", category=UserWarning, module="platformdirs")
        import pgserver
    # pgserver logs every command it runs at INFO; only its warnings and errors concern users.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return pgserver


def _forget(pgserver: ModuleType, pgdata: Path) -> None:
    """Drop this process's pgserver handle for `pgdata`, so its exit hook does nothing later."""
    handle = pgserver.PostgresServer._instances.pop(pgdata, None)
    if handle is not None:
        atexit.unregister(handle._cleanup)
        handle.global_process_id_list.get_and_remove(os.getpid())
