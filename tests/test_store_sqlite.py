"""What only the SQLite store has: the file, its PRAGMAs, its migrations, raw connections.

The semantics every backend shares (deliveries, dedupe, leases, retries, locks, the audit
trail) are tested in tests/test_store_shared.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.settings import DATABASE_FILE, Settings
from bot.store import SqliteStore, StoreError, StoreMissing, store_for
from bot.store.sqlite import MIGRATIONS
from tests.apphelpers import FakeClock, delivery, spec

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "db" / "rg.sqlite3", clock=FakeClock())
    await store.open()
    yield store
    await store.close()


async def test_open_creates_the_schema_with_wal_and_full_sync(store: SqliteStore) -> None:
    assert store.path.exists()
    versions = await store.execute("SELECT version FROM schema_version")
    assert versions == [(version,) for version in range(1, len(MIGRATIONS) + 1)]
    assert await store.execute("PRAGMA journal_mode") == [("wal",)]
    assert await store.execute("PRAGMA synchronous") == [(2,)]  # FULL
    assert await store.ping()


async def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "rg.sqlite3"
    for _ in range(2):
        store = SqliteStore(path)
        await store.open()
        await store.close()
    store = SqliteStore(path)
    await store.open()
    assert await store.execute("SELECT count(*) FROM schema_version") == [(len(MIGRATIONS),)]
    await store.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rg.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await store.execute("INSERT INTO schema_version VALUES (99, 0)")
    await store.close()
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        await SqliteStore(path).open()


async def test_read_only_open_does_not_create(tmp_path: Path) -> None:
    path = tmp_path / "absent.sqlite3"
    with pytest.raises(StoreMissing):
        await SqliteStore(path, create=False).open()
    assert not path.exists()


async def test_audit_events_refuse_any_connection_to_the_file(store: SqliteStore) -> None:
    """Not only through the store: the triggers refuse any connection to the file."""
    await store.record_delivery(delivery(), [spec()])
    raw = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE audit_events SET stage = 'x' WHERE id = 1")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("DELETE FROM audit_events")
    finally:
        raw.close()
    assert await store.execute("SELECT count(*) FROM audit_events") == [(2,)]


async def test_store_for_picks_sqlite_by_default(tmp_path: Path) -> None:
    store = store_for(Settings.for_data_dir(tmp_path))
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path.absolute() / DATABASE_FILE
