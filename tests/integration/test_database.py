"""The `Database` lifecycle against a real Postgres."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from runner.errors import DatabaseClosed, StoreError
from runner.settings import Settings
from runner.store import migrations
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
async def test_an_unreachable_server_is_a_store_error_without_the_password(url, tmp_path):
    with pytest.raises(StoreError) as caught:
        async with Database.open(Settings(database_url=url, home=tmp_path)):
            pass
    message = str(caught.value)
    assert "127.0.0.1" in message and "dwf:***@" in message
    assert "s3cret-pw" not in message
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)


@pytest.mark.anyio
async def test_a_bad_password_is_a_store_error_without_the_password(database_url, tmp_path):
    # The test server may trust every login; an unknown role fails all the same.
    url = make_conninfo(database_url, user="no_such_role", password="s3cret-pw")
    with pytest.raises(StoreError) as caught:
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
