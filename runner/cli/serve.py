"""`dwf serve`: run the HTTP API (uvicorn) until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from runner.cli.definitions import EXIT_FINDINGS, EXIT_OK

if TYPE_CHECKING:
    from runner.settings import Settings

ROLES = ("api",)  # sync, scheduler and worker come later
DEFAULT_HOST = "127.0.0.1"
#: After this long, requests still open at shutdown are cancelled.
GRACEFUL_SHUTDOWN_SECONDS = 10


def _roles(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    roles = tuple(r.strip() for r in value.split(",") if r.strip())
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise click.BadParameter(
            f"unknown role {', '.join(unknown) or '(none)'}; this runner serves: {', '.join(ROLES)}"
        )
    return roles


@click.command()
@click.option("--host", default=DEFAULT_HOST, show_default=True, help="Address to listen on.")
@click.option(
    "--port", type=click.IntRange(0, 65535), default=None,
    help="Port to listen on (default: DWF_PORT, else 8080).",
)  # fmt: skip
@click.option(
    "--roles", default="api", show_default=True, callback=_roles,
    help="Comma-separated roles this process plays (only `api` for now).",
)  # fmt: skip
def serve(host: str, port: int | None, roles: tuple[str, ...]) -> None:
    """Serve the HTTP API (OpenAPI at /docs) until SIGTERM or SIGINT; exit 0 after a clean stop."""
    from runner import logs
    from runner.errors import DwfError, UsageError
    from runner.settings import Settings

    try:
        settings = Settings.from_env(port=port)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    logs.configure(settings.log_format, "info")
    _route_stdlib_logging()
    try:
        asyncio.run(_serve(settings, host))
    except DwfError as exc:  # e.g. the database cannot be reached at start
        click.echo(f"dwf serve: {exc}", err=True)
        sys.exit(EXIT_FINDINGS)
    sys.exit(EXIT_OK)


async def _serve(settings: Settings, host: str) -> None:
    import uvicorn

    from runner.api import app as api

    application = api.create_app(settings)
    config = uvicorn.Config(
        application,
        host=host,
        port=settings.port,
        log_config=None,  # uvicorn's records reach structlog through the root logger
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    server = _Server(config)

    def stop() -> None:
        if server.should_exit:  # a second signal: stop waiting for open requests
            server.force_exit = True
        server.should_exit = True
        api.request_stop(application)

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    await server.serve()
    if not server.started:  # uvicorn logged why (port in use, lifespan failed)
        raise SystemExit(EXIT_FINDINGS)


class _Server:
    """uvicorn's Server, with the signals left to `dwf serve`."""

    def __new__(cls, config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            # uvicorn re-raises a caught SIGTERM once it has stopped, which would end the
            # process by that signal instead of with exit 0; `_serve` handles signals itself.
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        return Server(config)


class _ToStructlog(logging.Handler):
    """Hands stdlib log records (uvicorn's) to structlog, so every line has one format."""

    def emit(self, record: logging.LogRecord) -> None:
        """Log the record through structlog at its level, with its traceback if any."""
        import structlog

        try:
            structlog.get_logger(record.name).log(
                record.levelno, record.getMessage(), logger=record.name, exc_info=record.exc_info
            )
        except Exception:
            self.handleError(record)


def _route_stdlib_logging() -> None:
    root = logging.getLogger()
    root.handlers = [_ToStructlog()]
    root.setLevel(logging.INFO)


COMMANDS = (serve,)
