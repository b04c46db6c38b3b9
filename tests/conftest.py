"""Shared fixtures. Tests that need a database get a real Postgres, never a mock.

The server is `DWF_TEST_DATABASE_URL` when set (CI: the machine's Postgres), else an embedded
pgserver started once per session. A template database is migrated once per session, and each
test that asks for a database gets its own clone of it, dropped afterwards: tests run in any
order, and several sessions can share one server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from runner.daemon import Daemon
from runner.settings import Settings
from runner.store import embedded, migrations
from runner.store.database import Database


@pytest.fixture
def anyio_backend() -> str:
    """Async tests (`@pytest.mark.anyio`) run on asyncio: psycopg's pool needs it."""
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The test server's URL (its `postgres` database, for administration)."""
    url = os.environ.get("DWF_TEST_DATABASE_URL")
    if url:
        yield url
        return
    with _embedded_home() as home:
        yield embedded.embedded_url(home)


@pytest.fixture
def embedded_home() -> Iterator[Path]:
    """A home for an embedded server of this test's own, stopped and removed afterwards."""
    with _embedded_home() as home:
        yield home


@pytest.fixture(scope="session")
def template_database(postgres_url: str) -> Iterator[str]:
    """A database migrated once per session, named uniquely, to clone for each test."""
    name = f"dwf_template_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    _admin(postgres_url, "CREATE DATABASE {}", name)
    try:
        asyncio.run(_migrate(with_database(postgres_url, name)))
        yield name
    finally:
        _admin(postgres_url, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name)


@pytest.fixture
def database_url(postgres_url: str, template_database: str) -> Iterator[str]:
    """The URL of a fresh, migrated database of this test's own."""
    yield from _scratch_database(postgres_url, template_database)


@pytest.fixture
def empty_database_url(postgres_url: str) -> Iterator[str]:
    """The URL of a fresh database with no migrations applied."""
    yield from _scratch_database(postgres_url, "template0")


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for this test's database, with a home of its own."""
    return Settings(database_url=database_url, home=tmp_path / "home")


@pytest.fixture
async def db(settings: Settings, anyio_backend: str) -> AsyncIterator[Database]:
    """An opened `Database` on this test's database."""
    async with Database.open(settings) as opened:
        yield opened


@pytest.fixture
async def daemon(settings: Settings, db: Database) -> AsyncIterator[Daemon]:
    """A `Daemon` (the process's parts: starts, conductor, versions, workers) on `db`."""
    async with Daemon(settings, database=db) as opened:
        yield opened


def with_database(url: str, name: str) -> str:
    """`url` pointing at database `name` on the same server."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        return urlunsplit(parts._replace(path=f"/{name}"))
    return make_conninfo(url, dbname=name)


@contextlib.contextmanager
def _embedded_home() -> Iterator[Path]:
    # Not under pytest's basetemp: as root, pgserver runs Postgres as its own user and opens the
    # data folder's parents to it, and every pytest session that starts closes basetemp's root
    # again, which cuts a parallel session's server off. A short path keeps the socket's short.
    home = Path(tempfile.mkdtemp(prefix="dwf-test-pg-"))
    try:
        yield home
    finally:
        embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)


def _scratch_database(server_url: str, template: str) -> Iterator[str]:
    name = f"test_{uuid.uuid4().hex}"
    _admin(server_url, "CREATE DATABASE {} TEMPLATE {}", name, template)
    try:
        yield with_database(server_url, name)
    finally:
        # FORCE ends any connection a failed test left open.
        _admin(server_url, "DROP DATABASE IF EXISTS {} WITH (FORCE)", name)


def _admin(server_url: str, statement: str, *names: str) -> None:
    query = sql.SQL(statement).format(*map(sql.Identifier, names))
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(query)


async def _migrate(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await migrations.apply(conn)
