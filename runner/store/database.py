"""The database: a pool of psycopg connections with a lifecycle.

    async with Database.open(settings) as db:
        async with db.transaction() as conn:
            await conn.execute(...)

`open` resolves the URL (`settings.database_url`, else the embedded server), checks that it
answers, applies pending migrations and opens the pool; leaving the block closes the pool, and any
use outside it raises `DatabaseClosed`. Rows are dicts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from runner.errors import DatabaseClosed, StoreError
from runner.settings import Settings
from runner.store import embedded, migrations

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
        """
        pool = self._require_open()
        try:
            conn = await pool.getconn()
        except PoolTimeout as exc:
            raise StoreError(
                f"no connection to {self.url_for_display} became free or could be made within "
                f"{pool.timeout:g} s (pool of {pool.max_size}): {exc}"
            ) from exc
        try:
            if autocommit:
                await conn.set_autocommit(True)
            async with conn:  # commit or roll back; a pooled connection is not closed here
                yield conn
        finally:
            if autocommit and not conn.closed:
                with contextlib.suppress(psycopg.Error):
                    await conn.set_autocommit(False)
            await pool.putconn(conn)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection inside a transaction: committed on exit, rolled back on error."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    @contextlib.asynccontextmanager
    async def listener(self, *channels: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A dedicated connection (outside the pool) LISTENing on `channels`; read its
        `notifies()`. StoreError when it cannot connect."""
        self._require_open()
        try:
            conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
        except psycopg.Error as exc:
            raise StoreError(f"cannot listen on {self.url_for_display}: {exc}") from exc
        try:
            for channel in channels:
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            yield conn
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
        timeout = {} if "connect_timeout" in params else {"connect_timeout": _CONNECT_TIMEOUT}
        # One direct connection first: it fails fast with libpq's own reason (the pool would
        # retry until its timeout and then report only that it timed out), and it migrates.
        try:
            conn = await psycopg.AsyncConnection.connect(self._url, **timeout)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to Postgres at {self.url_for_display}: "
                f"{_scrub(' '.join(str(exc).split()), params)}"  # libpq's lines, as one line
            ) from exc
        async with conn:
            if migrate:
                await migrations.apply(conn)
        pool: AsyncConnectionPool[Connection] = AsyncConnectionPool(
            self._url,
            min_size=1,
            max_size=max(1, pool_max_size),
            kwargs={"autocommit": False, "row_factory": dict_row, **timeout},
            timeout=DEFAULT_POOL_WAIT_SECONDS,
            name=POOL_NAME,
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=DEFAULT_CONNECT_TIMEOUT_SECONDS)
        except PoolTimeout as exc:
            await pool.close()
            raise StoreError(
                f"cannot open a connection pool to {self.url_for_display} within "
                f"{DEFAULT_CONNECT_TIMEOUT_SECONDS} s: {exc}"
            ) from exc
        self._pool = pool

    async def _close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()


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


def _scrub(message: str, params: dict[str, Any]) -> str:
    """`message` without the password, should a driver message ever quote it."""
    password = str(params.get("password") or "")
    return message.replace(password, "***") if len(password) >= 4 else message
