"""Database faults for the tests and `bench/chaos_bench.py`, injected for real.

- `Proxy`: a TCP proxy between the runner and Postgres, in a thread of its own (it keeps
  forwarding while the test's event loop waits). A test can `cut` every connection (a reset),
  `pause` it (a partition: bytes and new connections are held, as by a dead network), `refuse`
  new connections, and `slow` every chunk.
- Server side: `terminate_backends` (what a failover or an operator's pg_terminate_backend does)
  and `refusing` (`ALLOW_CONNECTIONS false`: the database unreachable for a while).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

#: The largest read the proxy forwards at once.
CHUNK = 65536


class Proxy:
    """A TCP proxy from 127.0.0.1:`port` to `upstream`: (host, port), or the path of a Unix
    socket (the embedded server listens only on one). Started as a context manager; its modes
    apply to live and new connections alike."""

    def __init__(self, upstream: tuple[str, int] | str) -> None:
        self.upstream = upstream
        self.port = 0
        self.connections = 0  # accepted so far
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._flowing = asyncio.Event()  # cleared while paused
        self._refusing = False
        self._delay = 0.0
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None

    def __enter__(self) -> Proxy:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def url(self, database_url: str) -> str:
        """`database_url` (pointing at the upstream) made to go through the proxy."""
        params = conninfo_to_dict(database_url)
        params.update(host="127.0.0.1", port=str(self.port))
        return make_conninfo("", **params)

    # -- faults -------------------------------------------------------------------------------

    def cut(self) -> int:
        """Reset every open connection (both sides see it closed); how many there were."""
        return self._call(self._cut())

    def pause(self) -> None:
        """Hold every byte and every new connection until `resume`."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def refuse(self) -> None:
        """Close new connections at once and cut the open ones, until `resume`."""
        self._refusing = True
        self.cut()

    def slow(self, seconds: float) -> None:
        """Delay every forwarded chunk by `seconds` (0 to stop)."""
        self._delay = seconds

    def resume(self) -> None:
        """Back to forwarding everything at once."""
        self._refusing = False
        self._delay = 0.0
        self._loop.call_soon_threadsafe(self._flowing.set)

    # -- the loop's side ------------------------------------------------------------------------

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _start(self) -> None:
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()

    async def _cut(self) -> int:
        pairs = list(self._pairs)
        for client, server in pairs:
            for writer in (client, server):
                with contextlib.suppress(Exception):
                    writer.transport.abort()  # an RST, not a polite FIN
        self._pairs.clear()
        return len(pairs)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await self._flowing.wait()
        if self._refusing:
            writer.transport.abort()
            return
        try:
            if isinstance(self.upstream, str):
                up_reader, up_writer = await asyncio.open_unix_connection(self.upstream)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._pairs.discard(pair)
            for side in pair:
                side.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while chunk := await reader.read(CHUNK):
                await self._flowing.wait()
                if self._delay:
                    await asyncio.sleep(self._delay)
                writer.write(chunk)
                await writer.drain()
        writer.transport.abort()


def upstream_of(database_url: str) -> tuple[str, int] | str:
    """Where a database URL points: (host, port), or the path of the server's Unix socket."""
    params = conninfo_to_dict(database_url)
    host, port = params.get("host") or "127.0.0.1", int(params.get("port") or 5432)
    if host.startswith("/"):
        return f"{host}/.s.PGSQL.{port}"
    return host, port


# -- server side ---------------------------------------------------------------------------------


def _admin(database_url: str) -> psycopg.Connection[Any]:
    params = conninfo_to_dict(database_url)
    params["dbname"] = "postgres"
    return psycopg.connect(make_conninfo("", **params), autocommit=True)


def terminate_backends(database_url: str) -> int:
    """Terminate every backend connected to the URL's database (ours excepted); how many."""
    dbname = conninfo_to_dict(database_url)["dbname"]
    with _admin(database_url) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (dbname,),
        ).fetchall()
    return len(rows)


@contextlib.contextmanager
def refusing(database_url: str) -> Iterator[None]:
    """The URL's database refuses every connection (its backends terminated) inside the block."""
    dbname = conninfo_to_dict(database_url)["dbname"]
    with _admin(database_url) as conn:
        ident = sql.Identifier(dbname)
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(ident))
        try:
            terminate_backends(database_url)
            yield
        finally:
            conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(ident))
