"""A private PostgreSQL schema per test, on the server RELEASE_GUARD_TEST_POSTGRES_URL names.

Every table, type and function the App (and procrastinate) creates lands in the first schema of
the connection's `search_path`, so a test that connects with `pg_url` (the server's URL plus
`options=-csearch_path=<schema>`) sees a database of its own and leaves nothing behind: the
schema is dropped afterwards. Without the variable the tests skip with the reason, which
`.ci/run` (RELEASE_GUARD_NO_SKIPS=1) turns into a failure.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import pytest_asyncio

from bot.store import PostgresStore, SqliteStore

ENV: str = "RELEASE_GUARD_TEST_POSTGRES_URL"


def server_url() -> str:
    """The test server's URL, or skip the test with the reason."""
    url = os.environ.get(ENV)
    if not url:
        pytest.skip(f"{ENV} is not set: no PostgreSQL server to test against")
    return url


def with_schema(url: str, schema: str) -> str:
    """Return `url` with `search_path` set to `schema` for every connection made with it."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


def _admin(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A URL whose connections live in a fresh, empty schema (dropped after the test)."""
    url = server_url()
    schema = f"rg_test_{secrets.token_hex(6)}"
    _admin(url, f'CREATE SCHEMA "{schema}"')
    try:
        yield with_schema(url, schema)
    finally:
        _admin(url, f'DROP SCHEMA "{schema}" CASCADE')


@pytest_asyncio.fixture
async def pg_url(pg_schema_url: str) -> AsyncIterator[str]:
    """The same as `pg_schema_url`, for async tests."""
    yield pg_schema_url


@pytest.fixture(params=["sqlite", "postgres"])
def postgres_url(request: pytest.FixtureRequest) -> str | None:
    """None for SQLite; for PostgreSQL, a private schema's URL (skips without a server).

    A test that takes it, or `any_store`, runs once on each backend.
    """
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest_asyncio.fixture
async def any_store(
    postgres_url: str | None, tmp_path: Path
) -> AsyncIterator[SqliteStore | PostgresStore]:
    """An open store of each backend in turn (SQLite in `tmp_path`, PostgreSQL in a schema)."""
    store: SqliteStore | PostgresStore
    if postgres_url is None:
        store = SqliteStore(tmp_path / "rg.sqlite3")
    else:
        store = PostgresStore(postgres_url)
    await store.open()
    try:
        yield store
    finally:
        await store.close()
