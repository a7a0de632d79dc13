"""The retention index in SQLite: its tables and schema version 2.

Merges, lookups, filters and deletion, which every backend shares, are tested in
tests/test_store_shared.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.store import SqliteStore
from bot.store.base import (
    RetainedRecord,
    RetainedState,
    RetentionIndex,
    Sighting,
)
from bot.store.sqlite import MIGRATIONS
from tests.apphelpers import SHA_A, FakeClock

pytestmark = pytest.mark.asyncio

T0 = 1_700_000_000.0


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "rg.sqlite3", clock=FakeClock())
    await store.open()
    yield store
    await store.close()


def record() -> RetainedRecord:
    return RetainedRecord(
        id="00aa11bb22cc33dd",
        digest="d" * 64,
        size=10,
        repository="Octo-Org/Octo-Repo",
        commit=SHA_A,
        artifact_name="dist",
        state=RetainedState.KEPT,
        kept_at=T0,
        expires_at=T0 + 100,
        last_seen_at=T0,
    )


def seen() -> Sighting:
    return Sighting(seen_at=T0, artifact_name="dist", delivery_id="d-1", artifact_id=5)


async def test_the_sqlite_store_is_a_retention_index(store: SqliteStore) -> None:
    assert isinstance(store, RetentionIndex)
    tables = {row[0] for row in await store.execute("SELECT name FROM sqlite_master")}
    assert {"retained", "retained_sightings"} <= tables


async def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at REAL)")
    for statement in MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES (1, 0)")
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        latest = await store.execute("SELECT max(version) FROM schema_version")
        assert latest == [(len(MIGRATIONS),)]
        stored, created = await store.upsert_retained(record(), seen())
        assert created and stored.sighting_count == 1
    finally:
        await store.close()
