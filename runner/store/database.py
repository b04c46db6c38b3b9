"""The database: a pool of psycopg connections with a lifecycle.

    async with Database.open(settings) as db:
        async with db.transaction() as conn:
            await conn.execute(...)

`open` resolves the URL (`settings.database_url`, else the embedded server), checks that it
answers, applies pending migrations and opens the pool; leaving the block closes the pool, and any
use outside it raises `DatabaseClosed`. Rows are dicts.

The blocks are the boundary to the driver: a psycopg error escaping `open`, `connection`,
`transaction` or `listener` leaves it as `DatabaseUnavailable` (cannot be reached now) or
`QueryError` (the statement's own failure), raised `from` it (`runner.store.translation`).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from runner.errors import DatabaseClosed, StoreError
from runner.settings import Settings
from runner.store import embedded, migrations, translation

DEFAULT_CONNECT_TIMEOUT_SECONDS = 10
DEFAULT_POOL_WAIT_SECONDS = 30.0
POOL_NAME = "dwf"
_CONNECT_TIMEOUT = str(DEFAULT_CONNECT_TIMEOUT_SECONDS)  # libpq takes it as a string

Connection = AsyncConnection[dict[str, Any]]


class Database:
    """A connection pool; build it with `Database.open`, use it inside that block only."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: AsyncConnectionPool[Connection] | None = None
        self.url_for_display = display_url(url)
        self._password = _password(url)
        self._connect_options: dict[str, Any] = {}

    def __repr__(self) -> str:
        state = "open" if self._pool is not None else "closed"
        return f"<Database {self.url_for_display} {state}>"

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings, *, migrate: bool = True) -> AsyncIterator[Database]:
        """Connect (to the embedded server without `database_url`), migrate, pool; close on exit."""
        url = settings.database_url
        if not url:
            # Starting the embedded server can take a second (initdb); keep the loop free.
            url = await asyncio.to_thread(embedded.embedded_url, settings.home)
        database = cls(url)
        await database._open(settings.pool_max_size, migrate=migrate)
        try:
            yield database
        finally:
            await database._close()

    @contextlib.asynccontextmanager
    async def connection(self, *, autocommit: bool = False) -> AsyncIterator[Connection]:
        """A pooled connection; on exit its open transaction commits, or rolls back on error.

        With `autocommit`, each statement is its own transaction: a single-statement write
        then costs one round trip instead of three (BEGIN, the statement, COMMIT).

        A psycopg error escaping the block (or its commit) leaves it as DatabaseUnavailable
        or QueryError (`runner.store.translation`); every other exception passes untouched.
        """
        pool = self._require_open()
        try:
            conn = await pool.getconn()
        except psycopg.Error as exc:
            raise self._translate(exc) from exc
        try:
            if autocommit:
                await conn.set_autocommit(True)
            async with conn:  # commit or roll back; a pooled connection is not closed here
                yield conn
        except psycopg.Error as exc:
            # Judged before putconn: the pool may close a healthy connection it takes back.
            raise self._translate(exc, connection_lost=conn.closed) from exc
        finally:
            if autocommit and not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    await conn.set_autocommit(False)
            await pool.putconn(conn)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection inside a transaction: committed on exit, rolled back on error.
        Errors are translated as in `connection`."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    @contextlib.asynccontextmanager
    async def listener(self, *channels: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A dedicated connection (outside the pool) LISTENing on `channels`; read its
        `notifies()`. DatabaseUnavailable when it cannot connect or loses the connection."""
        self._require_open()
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, **self._connect_options
            )
        except psycopg.Error as exc:
            raise self._translate(exc, connecting=True) from exc
        try:
            for channel in channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            yield conn
        except psycopg.Error as exc:
            raise self._translate(exc, connection_lost=conn.closed) from exc
        finally:
            await conn.close()

    def _require_open(self) -> AsyncConnectionPool[Connection]:
        if self._pool is None:
            raise DatabaseClosed(
                "the database is closed: use it inside `async with Database.open(settings) as db`"
            )
        return self._pool

    async def _open(self, pool_max_size: int, *, migrate: bool) -> None:
        params = _params(self._url)
        timeout = self._connect_options = _connect_options(params)
        # One direct connection first: it fails fast with libpq's own reason (the pool would
        # retry until its timeout and then report only that it timed out), and it migrates.
        try:
            conn = await psycopg.AsyncConnection.connect(self._url, **timeout)
        except psycopg.Error as exc:
            raise self._translate(exc, connecting=True) from exc
        try:
            async with conn:
                if migrate:
                    await migrations.apply(conn)
        except psycopg.Error as exc:
            raise self._translate(exc, connection_lost=conn.closed) from exc
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=max(1, pool_max_size),
            kwargs={"autocommit": False, "row_factory": dict_row, **timeout},
            # Checked as it is lent, so a connection whose backend was terminated (or whose
            # server restarted) while it sat idle is replaced instead of failing the caller's
            # first statement; the check costs a round trip only when the idle socket has
            # something to read (see `_check_idle`).
            check=_check_idle,
            timeout=DEFAULT_POOL_WAIT_SECONDS,
            name=POOL_NAME,
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=DEFAULT_CONNECT_TIMEOUT_SECONDS)
        except psycopg.Error as exc:
            await pool.close()
            raise self._translate(exc) from exc
        self._pool = pool

    def _translate(
        self, exc: psycopg.Error, *, connecting: bool = False, connection_lost: bool = False
    ) -> StoreError:
        return translation.translate(
            exc,
            self.url_for_display,
            connecting=connecting,
            connection_lost=connection_lost,
            password=self._password,
        )

    async def _close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


async def _check_idle(conn: Connection) -> None:
    """Raise when a pooled connection is dead. An idle connection's socket is readable only
    when the server said something unasked: a termination notice (57P01) before it closed, or
    the close itself. Only then is an empty query sent, which raises for a dead connection; a
    quiet socket costs no round trip (psycopg_pool's own check sends a query every time, one
    more commit per checkout, which doubled the commits of an execution)."""
    if conn.closed:
        raise psycopg.OperationalError("the connection is closed")
    readable, _, _ = select.select([conn.fileno()], [], [], 0)
    if readable:
        await AsyncConnectionPool.check_connection(conn)


def _connect_options(params: dict[str, Any]) -> dict[str, Any]:
    """libpq's connect timeout, unless the URL sets its own: an unreachable host fails in
    seconds instead of hanging on the operating system's TCP timeout."""
    return {} if "connect_timeout" in params else {"connect_timeout": _CONNECT_TIMEOUT}


def display_url(url: str) -> str:
    """`url` as `postgresql://user:***@host:port/dbname`: safe to print and log."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<invalid database URL>"
    user = str(params.get("user") or "")
    secret = ":***" if params.get("password") else ""
    auth = f"{user}{secret}@" if user or secret else ""
    host, port = str(params.get("host") or params.get("hostaddr") or ""), params.get("port")
    query = ""
    if host.startswith("/"):  # a Unix socket folder goes in the query, as libpq expects
        host, query = "", f"?host={host}"
    where = f"{host}:{port}" if port and host else host
    return f"postgresql://{auth}{where}/{params.get('dbname') or ''}{query}"


def _params(url: str) -> dict[str, Any]:
    try:
        return conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        # libpq's parse message can quote the text around the error, password included,
        # so neither it nor the cause is kept.
        raise StoreError(
            "the database URL is not a libpq connection string: expected "
            "postgresql://user:password@host:port/dbname or key=value pairs"
        ) from None


def _password(url: str) -> str:
    """The URL's password, to mask should a driver message quote it ("" when none or invalid)."""
    try:
        return str(conninfo_to_dict(url).get("password") or "")
    except psycopg.ProgrammingError:
        return ""
