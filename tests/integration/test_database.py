"""The `Database` lifecycle against a real Postgres."""

from __future__ import annotations

import dataclasses
import uuid

import anyio
import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from psycopg_pool import PoolClosed, PoolTimeout

from runner.errors import (
    DatabaseClosed,
    DatabaseUnavailable,
    LeaseLost,
    QueryError,
    StoreError,
)
from runner.settings import Settings
from runner.store import batch, migrations, translation
from runner.store.database import Database, display_url

_INSERT_WORKFLOW = "INSERT INTO workflows (workflow_id) VALUES (%s)"
_COUNT_WORKFLOWS = "SELECT count(*) AS n FROM workflows"


async def _count(db: Database) -> int:
    async with db.connection() as conn:
        cursor = await conn.execute(_COUNT_WORKFLOWS)
        row = await cursor.fetchone()
    assert row is not None
    return row["n"]


@pytest.mark.anyio
async def test_rows_are_dicts_and_a_transaction_commits(db):
    async with db.transaction() as conn:
        await conn.execute(_INSERT_WORKFLOW, ("hello",))
    assert await _count(db) == 1


@pytest.mark.anyio
async def test_a_transaction_rolls_back_on_an_exception(db):
    with pytest.raises(RuntimeError, match="boom"):
        async with db.transaction() as conn:
            await conn.execute(_INSERT_WORKFLOW, ("hello",))
            raise RuntimeError("boom")
    assert await _count(db) == 0


@pytest.mark.anyio
async def test_a_connection_commits_its_implicit_transaction_on_exit(db):
    async with db.connection() as conn:
        await conn.execute(_INSERT_WORKFLOW, ("hello",))
    assert await _count(db) == 1


@pytest.mark.anyio
async def test_use_after_close_raises_database_closed(settings):
    async with Database.open(settings) as db:
        assert await _count(db) == 0
        assert "open" in repr(db)
    with pytest.raises(DatabaseClosed):
        async with db.connection():
            pass
    with pytest.raises(DatabaseClosed):
        async with db.transaction():
            pass
    assert "closed" in repr(db)


@pytest.mark.anyio
async def test_open_migrates_unless_told_not_to(empty_database_url, tmp_path):
    settings = Settings(database_url=empty_database_url, home=tmp_path)
    async with Database.open(settings, migrate=False) as db, db.connection() as conn:
        statuses = await migrations.status(conn)
        assert all(status.applied_at is None for status in statuses)
    async with Database.open(settings) as db, db.connection() as conn:
        statuses = await migrations.status(conn)
        assert all(status.applied_at is not None for status in statuses)


@pytest.mark.anyio
async def test_pool_size_follows_the_settings(settings):
    async with Database.open(dataclasses.replace(settings, pool_max_size=2)) as db:
        async with db.connection() as first, db.connection() as second:
            assert first is not second
        async with db.connection() as conn:
            cursor = await conn.execute("SELECT 1 AS one")
            assert await cursor.fetchone() == {"one": 1}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "url",
    [
        "postgresql://dwf:s3cret-pw@127.0.0.1:1/dwf",
        "host=127.0.0.1 port=1 user=dwf password=s3cret-pw dbname=dwf",
    ],
)
async def test_an_unreachable_server_is_unavailable_without_the_password(url, tmp_path):
    with pytest.raises(DatabaseUnavailable) as caught:
        async with Database.open(Settings(database_url=url, home=tmp_path)):
            pass
    message = str(caught.value)
    assert "127.0.0.1" in message and "dwf:***@" in message
    assert "s3cret-pw" not in message
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


@pytest.mark.anyio
async def test_a_bad_password_is_unavailable_without_the_password(database_url, tmp_path):
    # The test server may trust every login; an unknown role fails all the same.
    url = make_conninfo(database_url, user="no_such_role", password="s3cret-pw")
    with pytest.raises(DatabaseUnavailable) as caught:
        async with Database.open(Settings(database_url=url, home=tmp_path)):
            pass
    assert "no_such_role" in str(caught.value) and "s3cret-pw" not in str(caught.value)


@pytest.mark.anyio
async def test_an_unparseable_url_is_a_store_error_without_the_url(tmp_path):
    url = "host=x password=s3cret-pw this-is-not-a-pair"
    with pytest.raises(StoreError, match="not a libpq connection string") as caught:
        async with Database.open(Settings(database_url=url, home=tmp_path)):
            pass
    assert "s3cret-pw" not in str(caught.value)
    assert caught.value.__cause__ is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@db.example:5433/app", "postgresql://u:***@db.example:5433/app"),
        ("postgresql://u@db.example/app", "postgresql://u@db.example/app"),
        ("host=/run/pg user=u password=pw dbname=app", "postgresql://u:***@/app?host=/run/pg"),
        ("postgresql://:pw@h/app?sslpassword=x", "postgresql://:***@h/app"),
        ("not a url", "<invalid database URL>"),
    ],
)
def test_display_url_masks_the_password(url, shown):
    assert display_url(url) == shown


@pytest.mark.anyio
async def test_open_without_a_url_uses_the_embedded_server(embedded_home):
    async with Database.open(Settings(home=embedded_home)) as db:
        assert "?host=" in db.url_for_display
        assert str(embedded_home.resolve() / "pgdata") in db.url_for_display
        assert await _count(db) == 0


# -- errors: psycopg's become runner.errors at the blocks' edge ----------------------------------

#: How long pg_terminate_backend waits for the backend to be gone (ms), so the test never races it.
_TERMINATE_WAIT_MS = 5000


async def _terminate(postgres_url: str, pid: int) -> None:
    """End backend `pid` from another connection, as an operator or a failover would."""
    async with await psycopg.AsyncConnection.connect(postgres_url, autocommit=True) as admin:
        cursor = await admin.execute(
            "SELECT pg_terminate_backend(%s, %s)", (pid, _TERMINATE_WAIT_MS)
        )
        assert await cursor.fetchone() == (True,)


async def _backend_pid(db: Database) -> int:
    """The pid of the backend serving a pooled connection, asked of the server (so it works)."""
    async with db.connection() as conn:
        cursor = await conn.execute("SELECT pg_backend_pid() AS pid")
        row = await cursor.fetchone()
    assert row is not None
    return row["pid"]


@pytest.mark.anyio
async def test_a_backend_terminated_mid_block_is_unavailable_and_the_next_block_works(
    db, postgres_url
):
    with pytest.raises(DatabaseUnavailable) as caught:
        async with db.transaction() as conn:
            pid = conn.info.backend_pid
            await conn.execute(_INSERT_WORKFLOW, ("hello",))
            await _terminate(postgres_url, pid)
            await conn.execute(_INSERT_WORKFLOW, ("again",))
    assert isinstance(caught.value.__cause__, psycopg.Error)
    message = str(caught.value)
    assert db.url_for_display in message and "\n" not in message
    # The broken connection went back to the pool and was dropped: the next one is alive.
    assert await _backend_pid(db) != pid
    assert await _count(db) == 0  # the terminated transaction never committed


@pytest.mark.anyio
async def test_a_connection_terminated_while_idle_in_the_pool_is_replaced(db, postgres_url):
    pid = await _backend_pid(db)
    await _terminate(postgres_url, pid)
    # The pool's check on lending finds it dead and hands out a new one instead.
    assert await _backend_pid(db) != pid
    assert await _count(db) == 0


@pytest.mark.anyio
async def test_a_statement_error_is_a_query_error_with_its_sqlstate(db):
    with pytest.raises(QueryError) as caught:
        async with db.connection() as conn:
            await conn.execute("SELECT 1 / 0")
    assert caught.value.sqlstate == "22012"
    assert isinstance(caught.value.__cause__, psycopg.errors.DivisionByZero)
    assert "division by zero" in str(caught.value) and "22012" in str(caught.value)
    assert not isinstance(caught.value, DatabaseUnavailable)

    with pytest.raises(QueryError) as caught:
        async with db.transaction() as conn:
            await conn.execute(_INSERT_WORKFLOW, ("twice",))
            await conn.execute(_INSERT_WORKFLOW, ("twice",))
    assert caught.value.sqlstate == "23505"
    assert isinstance(caught.value.__cause__, psycopg.errors.UniqueViolation)
    assert await _count(db) == 0


@pytest.mark.anyio
async def test_an_error_caught_inside_the_block_is_not_translated(db):
    # What a store module does (triggers.follow catching a UniqueViolation in a savepoint):
    # only what escapes the block is translated.
    async with db.transaction() as conn:
        await conn.execute(_INSERT_WORKFLOW, ("taken",))
        with pytest.raises(psycopg.errors.UniqueViolation):
            async with conn.transaction():
                await conn.execute(_INSERT_WORKFLOW, ("taken",))
        await conn.execute(_INSERT_WORKFLOW, ("other",))
    assert await _count(db) == 2


@pytest.mark.anyio
async def test_a_listener_whose_backend_is_terminated_is_unavailable(db, postgres_url):
    with pytest.raises(DatabaseUnavailable) as caught:
        async with db.listener("dwf_test_channel") as conn:
            await _terminate(postgres_url, conn.info.backend_pid)
            with anyio.fail_after(10):
                async for _ in conn.notifies():
                    pass
    assert isinstance(caught.value.__cause__, psycopg.Error)
    assert db.url_for_display in str(caught.value)


@pytest.mark.anyio
async def test_lease_lost_is_raised_as_itself(db):
    stale = batch.Batch("default", uuid.uuid4(), lease=batch.Lease("nobody", 1))
    stale.event("Late")
    for block in (db.connection(autocommit=True), db.transaction()):
        with pytest.raises(LeaseLost, match="nothing was written") as caught:
            async with block as conn:
                await batch.commit(conn, stale)
        assert type(caught.value) is LeaseLost
        assert isinstance(caught.value.__cause__, psycopg.Error)
    # The fence's SQLSTATE is LeaseLost even when batch.commit is not the caller.
    with pytest.raises(LeaseLost):
        async with db.connection() as conn:
            await conn.execute("SELECT dwf_hold_lease(%s, %s, 1, 1)", (uuid.uuid4(), "nobody"))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (psycopg.OperationalError("server closed the connection unexpectedly"), "unavailable"),
        (psycopg.OperationalError("the connection is closed"), "unavailable"),
        (psycopg.errors.ConnectionTimeout("connection timeout expired"), "unavailable"),
        (PoolTimeout("couldn't get a connection after 30.00 sec"), "unavailable"),
        (psycopg.errors.lookup("08006")("connection failure"), "unavailable"),
        (psycopg.errors.lookup("57P01")("terminating connection"), "unavailable"),
        (psycopg.errors.lookup("57P03")("the database system is starting up"), "unavailable"),
        (psycopg.errors.lookup("53300")("sorry, too many clients already"), "unavailable"),
        (psycopg.errors.lookup("57014")("canceling statement due to statement timeout"), "query"),
        (psycopg.errors.lookup("40001")("could not serialize access"), "query"),
        (psycopg.errors.lookup("53200")("out of shared memory"), "query"),
        (psycopg.errors.lookup("22012")("division by zero"), "query"),
        (psycopg.ProgrammingError("the query has 1 placeholder but 2 parameters"), "query"),
        (psycopg.InterfaceError("the cursor is closed"), "query"),
        (PoolClosed("the pool 'dwf' is already closed"), "closed"),
    ],
)
def test_the_classification_of_driver_errors(error, expected):
    translated = translation.translate(error, "postgresql://u:***@db.example:5432/app")
    kinds = {"unavailable": DatabaseUnavailable, "query": QueryError, "closed": DatabaseClosed}
    assert type(translated) is kinds[expected]
    assert "postgresql://u:***@db.example:5432/app" in str(translated)
    if expected == "query":
        assert translated.sqlstate == error.sqlstate


def test_a_lost_connection_is_unavailable_whatever_the_error():
    # e.g. 25P03 idle_in_transaction_session_timeout: a FATAL that closes the session.
    error = psycopg.errors.lookup("25P03")("terminating connection due to idle-in-transaction")
    assert type(translation.translate(error, "db")) is QueryError
    lost = translation.translate(error, "db", connection_lost=True)
    assert type(lost) is DatabaseUnavailable and "lost the connection" in str(lost)


def test_a_driver_message_never_shows_the_password():
    error = psycopg.OperationalError('connection to "h" failed: password=s3cret-pw\n\tdetail')
    translated = translation.translate(error, "db", connecting=True, password="s3cret-pw")
    assert "s3cret-pw" not in str(translated) and "\n" not in str(translated)
