"""Ctrl-C during `dwf run`: the first cancels the execution, the second leaves at once.

    interrupts = Interrupts()
    async with interrupts.watching(daemon, request, view):   # from the start being sent on
        row = await daemon.execute(request)
    interrupts.cancelled                                     # did a Ctrl-C cancel it?

The first SIGINT asks for the cancel as `dwf executions cancel` does (the conductor here ends
the execution Cancelled, its running attempts Cancelled, and `execute` returns). The second
exits 130 at once, leaving the execution Running under this process's lease: a worker resumes
it once the lease expires (and, if the cancel was recorded, ends it Cancelled).

The execution is found by its request id, so a Ctrl-C while the start is still being sent
cancels the execution as soon as it exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import click

from runner.cli import exits

if TYPE_CHECKING:
    from runner.daemon import Daemon
    from runner.engine.requests import StartRequest

#: How often a Ctrl-C that came before the start committed looks for the execution again.
LOOKUP_SECONDS = 0.05


class Interrupts:
    """What Ctrl-C does while `dwf run` waits for its execution."""

    def __init__(self) -> None:
        self.execution_id: uuid.UUID | None = None
        self.recorded = False  # the cancel is committed: whoever resumes the execution ends it
        self.watched = False  # the start was sent with SIGINT handled here
        self._cancelling: asyncio.Task[None] | None = None

    @property
    def cancelled(self) -> bool:
        """Whether a Ctrl-C asked for the execution's cancel."""
        return self._cancelling is not None

    @contextlib.asynccontextmanager
    async def watching(
        self, daemon: Daemon, request: StartRequest, view: Any = None
    ) -> AsyncIterator[None]:
        """Handle SIGINT for the execution `request` starts (it must carry a request id)."""
        assert request.request_id is not None, "the execution is found by its request id"
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            # Started with SIGINT ignored (`cmd &` in a script, nohup): a Ctrl-C on the
            # terminal is not meant for it, so it stays ignored.
            yield
            return
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self._interrupted, daemon, request, view)
        self.watched = True
        try:
            yield
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            if self._cancelling is not None:
                # Still looking for an execution that never started, or it ended on its own.
                self._cancelling.cancel()
                await asyncio.gather(self._cancelling, return_exceptions=True)

    def _interrupted(self, daemon: Daemon, request: StartRequest, view: Any) -> None:
        if self._cancelling is None:
            self._cancelling = asyncio.create_task(self._cancel(daemon, request))
        else:
            self._leave(view)

    async def _cancel(self, daemon: Daemon, request: StartRequest) -> None:
        from runner.errors import Conflict, DwfError

        try:
            execution_id = await self._find(daemon, request)
            click.echo(
                f"dwf run: cancelling execution {execution_id} "
                "(Ctrl-C again to leave it to a worker)",
                err=True,
            )
            await daemon.conductor.cancel(request.tenant, execution_id)
            self.recorded = True
        except Conflict:
            pass  # it ended on its own before the cancel: its own outcome stands
        except DwfError as exc:
            # The execution goes on; a second Ctrl-C still leaves.
            click.echo(f"dwf run: could not cancel: {exc}", err=True)

    async def _find(self, daemon: Daemon, request: StartRequest) -> uuid.UUID:
        """The id of the execution the request started, once its start has committed."""
        from runner.store import executions

        assert request.request_id is not None
        key = (request.tenant, request.workflow_id, request.request_id)
        while True:
            async with daemon.db.connection(autocommit=True) as conn:
                found = (await executions.by_requests(conn, [key])).get(key)
            if found is not None:
                self.execution_id = found.execution_id
                return found.execution_id
            await asyncio.sleep(LOOKUP_SECONDS)

    def _leave(self, view: Any) -> None:
        """Exit now: unwinding could wait on the database, which may be why the cancel is slow."""
        if view is not None:
            view.close()  # give the terminal back its cursor
        if self.execution_id is None:
            what = "dwf run: left; an execution it started is resumed by a worker"
        elif self.recorded:
            what = (
                f"dwf run: left execution {self.execution_id} Running; its cancel is recorded, "
                "so the worker that resumes it ends it Cancelled"
            )
        else:
            what = f"dwf run: left execution {self.execution_id} Running; a worker resumes it"
        click.echo(f"{what} once its lease expires", err=True)
        os._exit(exits.EXIT_INTERRUPTED)
