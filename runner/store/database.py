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
import random
import select
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
import structlog
import tenacity
from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from runner.errors import DatabaseClosed, DatabaseUnavailable, StoreError
from runner.settings import Settings
from runner.store import embedded, migrations, translation

#: `Database.retrying`: the first wait after a failure, and the longest (jittered, doubling).
RETRY_FIRST_WAIT_SECONDS = 0.1
RETRY_MAX_WAIT_SECONDS = 2.0
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10
DEFAULT_POOL_WAIT_SECONDS = 30.0
#: How long the pool keeps trying to replace one lost connection before it gives that attempt
#: up; the next request that waits for a connection starts a new one.
RECONNECT_SECONDS = 1.0
POOL_NAME = "dwf"
_CONNECT_TIMEOUT = str(DEFAULT_CONNECT_TIMEOUT_SECONDS)  # libpq takes it as a string

_log = structlog.get_logger(__name__)
T = TypeVar("T")
Connection = AsyncConnection[dict[str, Any]]
Notify = psycopg.Notify  # a NOTIFY heard by `Database.follow`


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

    async def follow(
        self,
        channels: Sequence[str],
        handle: Callable[[Notify], None],
        *,
        listening: Callable[[], None] = lambda: None,
        retry_seconds: float,
        what: str,
    ) -> None:
        """LISTEN on `channels` until cancelled, passing each notification to `handle`, and
        `listening()` each time the LISTEN is (again) in place: anything sent while it was not
        is lost, so the caller looks for itself. A lost connection is listened again after
        `retry_seconds`, logged as a warning (an outage is not a bug: no traceback)."""
        while True:
            try:
                async with self.listener(*channels) as conn:
                    listening()
                    async for notify in conn.notifies():
                        handle(notify)
            except StoreError as exc:
                _log.warning(f"{what} lost; listening again shortly", error=str(exc))
            except Exception:
                _log.exception(f"{what} failed; listening again shortly")
            await asyncio.sleep(retry_seconds)

    async def retrying(self, call: Callable[[], Awaitable[T]], *, seconds: float) -> T:
        """`call()`, made again while the database is unavailable (a lost connection, a server
        restarting, no connection in time), with jittered backoff, for up to `seconds`; then
        its DatabaseUnavailable. Only for calls that are safe to repeat (reads, fenced and
        numbered transitions, starts by request id).

        The bound holds even for a call that hangs (a partitioned network answers nothing,
        and the pool waits for a connection): it is cancelled at the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds

        async def attempt() -> T:
            try:
                async with asyncio.timeout_at(deadline):
                    return await call()
            except TimeoutError as exc:
                raise DatabaseUnavailable(
                    f"the database did not answer within {seconds:g} s"
                ) from exc

        # The first try goes without tenacity's machinery: it is on every transition's path,
        # and nearly always the only one.
        try:
            return await attempt()
        except DatabaseUnavailable as exc:
            if loop.time() >= deadline:
                raise
            _log.warning("database unavailable; trying again", attempt=1, error=str(exc))
            await asyncio.sleep(random.uniform(0.5, 1.0) * RETRY_FIRST_WAIT_SECONDS)
        retrying = tenacity.AsyncRetrying(
            retry=tenacity.retry_if_exception_type(DatabaseUnavailable),
            # Jitter spreads the reconnects of many workers after an outage.
            wait=tenacity.wait_exponential(
                multiplier=RETRY_FIRST_WAIT_SECONDS, max=RETRY_MAX_WAIT_SECONDS
            )
            + tenacity.wait_random(0, RETRY_FIRST_WAIT_SECONDS),
            stop=tenacity.stop_after_delay(max(0.0, deadline - loop.time())),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for retry in retrying:
            with retry:
                return await attempt()
        raise AssertionError("tenacity ends with a result or the last error")  # unreachable

    def pool_stats(self) -> dict[str, int]:
        """The pool's measures now (psycopg_pool's `get_stats()`: `pool_size`, `pool_available`,
        `pool_max`, `requests_waiting`, ...); `runner.store.gauges.pool` reads them."""
        return self._require_open().get_stats()

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
            # psycopg_pool retries a lost connection after 1 s, then doubles the wait without a
            # bound for 5 minutes: after a 60 s outage the pool could sit idle for another
            # minute, its callers waiting. Each attempt is given up after a second and a new
            # one started at once (`_keep_trying`), so the pool tries about once a second for
            # as long as the outage lasts, and work resumes within about a second of its end.
            reconnect_timeout=RECONNECT_SECONDS,
            reconnect_failed=_keep_trying,
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


async def _keep_trying(pool: AsyncConnectionPool[Any]) -> None:
    """The pool gave a reconnection attempt up: start the next now (`check` grows a pool that
    lacks connections), instead of waiting for a caller's checkout to ask for one."""
    with contextlib.suppress(psycopg.Error):  # closed meanwhile
        await pool.check()


def _log_retry(state: tenacity.RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    _log.warning(
        "database unavailable; trying again", attempt=state.attempt_number + 1, error=str(error)
    )


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
