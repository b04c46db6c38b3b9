"""Exit codes (SPEC §9) and the one mapping from the runner's errors to them.

    0  success
    1  findings, an execution that did not succeed (Failed, or Cancelled by anything but
       `dwf run`'s own Ctrl-C), a refused change, a runner error
    2  usage or I/O: a bad flag or file, a database that cannot be reached, a git source that
       cannot be read
    130 interrupted: `dwf run` cancelled its execution on Ctrl-C (128 + SIGINT, as shells
       report a process that SIGINT ended), or was interrupted before anything started

Every command runs its work through `run` and reads its settings through `settings`, so an
error is one line on stderr (`dwf <command>: <message>`) and the same kind of error exits with
the same code everywhere, never with a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

import click

if TYPE_CHECKING:
    from runner.errors import DwfError
    from runner.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130

T = TypeVar("T")


def code_of(exc: DwfError) -> int:
    """The exit code of a runner error."""
    from runner.errors import (
        DatabaseClosed,
        DatabaseUnavailable,
        InvalidRequest,
        SourceError,
        UsageError,
    )

    usage_or_io = (UsageError, InvalidRequest, DatabaseUnavailable, DatabaseClosed, SourceError)
    return EXIT_USAGE if isinstance(exc, usage_or_io) else EXIT_FAILED


def fail(command: str, exc: DwfError) -> NoReturn:
    """Say what went wrong in one line and exit with its code."""
    from runner.spec.diagnostics import escape_undecodable

    # A file name that is not UTF-8 reaches here with lone surrogates; shown as lint shows it.
    click.echo(f"dwf {command}: {escape_undecodable(str(exc))}", err=True)
    sys.exit(code_of(exc))


def run(command: str, make: Callable[[], Awaitable[T]]) -> T:
    """Run a command's async work; a runner error ends the command (see `fail`)."""
    from runner.errors import DwfError

    async def main() -> T:
        return await make()

    try:
        return asyncio.run(main())
    except DwfError as exc:
        fail(command, exc)


def settings(log_level: str = "warning", **overrides: object) -> Settings:
    """The Settings of `DWF_*` variables and the given flags, with logging configured; a bad
    variable is a usage error (exit 2)."""
    from runner import logs
    from runner.errors import UsageError
    from runner.settings import Settings

    try:
        built = Settings.from_env(None, **overrides)
    except UsageError as exc:
        raise click.UsageError(str(exc)) from exc
    logs.configure(built.log_format, level=log_level)
    # httpx's and other libraries' lines, in the same format and with the execution's context.
    logs.route_stdlib_logging(logging.getLevelNamesMapping()[log_level.upper()])
    return built
