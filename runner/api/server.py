"""The API under uvicorn, as `dwf serve` runs it: one process, stopped by SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import signal
from collections.abc import Iterator

import structlog
import uvicorn
from fastapi import FastAPI

from runner import logs
from runner.api import app as api
from runner.errors import UsageError
from runner.settings import Settings

_log = structlog.get_logger("runner.api")

#: After this long, requests still open at shutdown are cancelled.
GRACEFUL_SHUTDOWN_SECONDS = 10


class _Server(uvicorn.Server):
    """uvicorn's server, with the signals left to `serve`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing: uvicorn re-raises a caught SIGTERM once it has stopped, which would
        end the process by that signal instead of with exit 0."""
        yield


def check_bind(settings: Settings, host: str, *, warn: bool = True) -> None:
    """Loose mode trusts every caller, so it listens on loopback only: UsageError for another
    address unless `auth_insecure_bind` says so (then logged, loudly, at every start)."""
    if settings.auth_mode == "strict" or is_loopback(host):
        return
    if not settings.auth_insecure_bind:
        raise UsageError(
            f"loose auth mode serves on loopback only, not {host!r}: anyone who can reach it "
            "could run any workflow. Set DWF_AUTH_MODE=strict with a key (docs/security.md), "
            "or accept the risk with --insecure-bind (DWF_AUTH_INSECURE_BIND=true)"
        )
    if warn:
        _log.warning(
            "INSECURE: the API accepts unauthenticated requests on a non-loopback address",
            host=host, auth_mode=settings.auth_mode,
        )  # fmt: skip


def is_loopback(host: str) -> bool:
    """Whether `host` is a loopback address (or `localhost`)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


async def serve(application: FastAPI, host: str, port: int) -> bool:
    """Serve `application` until SIGTERM or SIGINT (a second one stops waiting for open
    requests). False when the server did not start (uvicorn logged why: the port is taken)."""
    logs.route_stdlib_logging()
    config = uvicorn.Config(
        application,
        host=host,
        port=port,
        log_config=None,  # keep uvicorn's hands off logging: its records reach structlog
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = _Server(config)

    def stop() -> None:
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True
        api.request_stop(application)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits this way when it cannot bind; it logged why
        return False
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return bool(server.started)
