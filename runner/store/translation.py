"""Driver errors become `runner.errors`: the one place that decides what a psycopg error means.

`Database` calls `translate` on every psycopg error that escapes its blocks (`connection`,
`transaction`, `listener`, `open`), so nothing above the store sees psycopg:

    what psycopg raised                                       becomes
    ------------------------------------------------------    -------------------
    a StoreError of ours (LeaseLost, MigrationError, …)       itself (never seen here)
    PoolClosed                                                DatabaseClosed
    PoolTimeout (no pooled connection in time)                DatabaseUnavailable
    anything while connecting (refused, timed out, auth)      DatabaseUnavailable
    anything after which the connection is closed             DatabaseUnavailable
    SQLSTATE class 08 (connection exception)                  DatabaseUnavailable
    57P01-57P05 (shutdown, crash, starting up, db dropped,    DatabaseUnavailable
      idle session timeout)
    53000, 53100, 53300 (insufficient resources, disk full,   DatabaseUnavailable
      too many connections)
    no SQLSTATE and an OperationalError (libpq: connection    DatabaseUnavailable
      lost, "the connection is closed", ConnectionTimeout)
    DWL01 (the lease fence, should batch.commit not catch it) LeaseLost
    any other psycopg.Error                                   QueryError(sqlstate)

Decided on purpose:
- 57014 query_canceled is a QueryError. The server answered: a statement ran past
  `statement_timeout` (or an operator cancelled it), which is that statement's problem to fix
  (an index, a smaller batch) and must be seen as an error, not hidden as an outage; telling a
  timeout from a cancel would mean reading the message, which the server localises. The runner
  sets no `statement_timeout`; cancelling our own query on asyncio cancellation raises
  CancelledError, which is never translated.
- 53200 out_of_memory and 53400 configuration_limit_exceeded are QueryErrors: they usually come
  from one statement's demands (`max_locks_per_transaction`, `work_mem`) and fail again alike.
- Class 40 (serialization failure, deadlock) is a QueryError keeping its SQLSTATE, so a caller
  that retries transactions can tell it apart.
"""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

from runner.errors import DatabaseClosed, DatabaseUnavailable, LeaseLost, QueryError, StoreError

#: SQLSTATE classes (two characters) and codes that mean the server cannot serve us now.
UNAVAILABLE_CLASSES = frozenset({"08"})  # connection exception
UNAVAILABLE_CODES = frozenset(
    {
        "57P01",  # admin_shutdown: pg_terminate_backend, or a fast shutdown
        "57P02",  # crash_shutdown: another backend crashed, the server resets
        "57P03",  # cannot_connect_now: starting up, shutting down, in recovery
        "57P04",  # database_dropped
        "57P05",  # idle_session_timeout
        "53000",  # insufficient_resources
        "53100",  # disk_full
        "53300",  # too_many_connections
    }
)
LEASE_LOST_SQLSTATE = "DWL01"  # raised by dwf_hold_lease (migration 0002)


def is_unavailable(exc: psycopg.Error, *, connection_lost: bool = False) -> bool:
    """Whether `exc` says the database cannot be reached now (see the table above)."""
    if connection_lost or isinstance(exc, PoolTimeout):
        return True
    state = exc.sqlstate
    if state is None:
        # libpq's own failures (refused, lost, timed out) carry no SQLSTATE.
        return isinstance(exc, psycopg.OperationalError) and not isinstance(exc, PoolClosed)
    return state[:2] in UNAVAILABLE_CLASSES or state in UNAVAILABLE_CODES


def translate(
    exc: psycopg.Error,
    database: str,
    *,
    connecting: bool = False,
    connection_lost: bool = False,
    password: str = "",
) -> StoreError:
    """The runner error for driver error `exc` on `database` (its display URL), to raise
    `from exc`. `connecting`: it came from making a connection; `connection_lost`: the connection
    it came from is closed now; `password` is masked should the driver's message quote it."""
    reason = _one_line(exc, password)
    if isinstance(exc, PoolClosed):
        return DatabaseClosed(f"the connection pool to {database} is closed: {reason}")
    if isinstance(exc, PoolTimeout):
        return DatabaseUnavailable(
            f"no connection to Postgres at {database} became free or could be made in time: "
            f"{reason}"
        )
    if connecting:
        return DatabaseUnavailable(f"cannot connect to Postgres at {database}: {reason}")
    if exc.sqlstate == LEASE_LOST_SQLSTATE:
        return LeaseLost(f"another worker holds the lease now; nothing was written: {reason}")
    if is_unavailable(exc, connection_lost=connection_lost):
        what = "lost the connection to" if connection_lost else "cannot use"
        return DatabaseUnavailable(f"{what} Postgres at {database}: {reason}")
    code = f" (SQLSTATE {exc.sqlstate})" if exc.sqlstate else ""
    return QueryError(f"a statement failed on {database}{code}: {reason}", exc.sqlstate)


def _one_line(exc: psycopg.Error, password: str) -> str:
    """The driver's message as one line (libpq writes several), the password masked."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    # A short password would mask ordinary words; libpq never quotes it anyway.
    return message.replace(password, "***") if len(password) >= 4 else message
