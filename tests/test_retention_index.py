"""The retention index in SQLite: schema version 2, merges, lookups, filters, deletion."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.store import SqliteStore, StoreError
from bot.store.base import (
    AmbiguousId,
    RetainedFilter,
    RetainedRecord,
    RetainedState,
    RetentionIndex,
    Sighting,
)
from bot.store.sqlite import MIGRATIONS
from tests.apphelpers import SHA_A, SHA_B, FakeClock

pytestmark = pytest.mark.asyncio

T0 = 1_700_000_000.0


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "rg.sqlite3", clock=FakeClock())
    await store.open()
    yield store
    await store.close()


def record(
    rid: str = "00aa11bb22cc33dd",
    *,
    digest: str = "d" * 64,
    state: RetainedState = RetainedState.KEPT,
    repository: str = "Octo-Org/Octo-Repo",
    commit: str = SHA_A,
    at: float = T0,
    size: int = 10,
) -> RetainedRecord:
    return RetainedRecord(
        id=rid,
        digest=digest,
        size=size,
        repository=repository,
        commit=commit,
        artifact_name="dist",
        state=state,
        kept_at=at,
        expires_at=at + 100,
        last_seen_at=at,
    )


def seen(delivery_id: str | None = "d-1", at: float = T0) -> Sighting:
    return Sighting(seen_at=at, artifact_name="dist", delivery_id=delivery_id, artifact_id=5)


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
        assert await store.execute("SELECT max(version) FROM schema_version") == [(2,)]
        stored, created = await store.upsert_retained(record(), seen())
        assert created and stored.sighting_count == 1
    finally:
        await store.close()


async def test_a_merge_keeps_the_better_state_and_the_later_times(store: SqliteStore) -> None:
    pending = dataclasses.replace(
        record(state=RetainedState.PENDING), attempts=1, spool_path="/spool/x", last_error="down"
    )
    first, created = await store.upsert_retained(pending, seen("d-1"))
    assert created and first.state is RetainedState.PENDING and first.spool_path == "/spool/x"

    later = record(state=RetainedState.KEPT, at=T0 + 50)
    merged, created = await store.upsert_retained(later, seen("d-2", T0 + 50))
    assert not created
    assert merged.state is RetainedState.KEPT and merged.spool_path is None
    assert merged.kept_at == T0 and merged.expires_at == T0 + 150 and merged.last_seen_at == T0 + 50

    failed = record(state=RetainedState.FAILED, at=T0 + 10)
    merged, _ = await store.upsert_retained(failed, seen("d-2", T0 + 60))  # a retried job
    assert merged.state is RetainedState.KEPT and merged.expires_at == T0 + 150
    assert merged.sighting_count == 2


async def test_sightings_without_a_delivery_are_all_kept(store: SqliteStore) -> None:
    await store.upsert_retained(record(), seen(None))
    stored, _ = await store.upsert_retained(record(), seen(None))
    assert stored.sighting_count == 2


async def test_lookup_by_id_and_prefix(store: SqliteStore) -> None:
    await store.upsert_retained(record("abc0000000000001"), seen())
    await store.upsert_retained(record("abd0000000000002", digest="e" * 64), seen())
    found = await store.get_retained("abd0000000000002")
    assert found is not None and found.digest == "e" * 64 and len(found.sightings) == 1
    with pytest.raises(AmbiguousId):
        await store.get_retained("ab")
    assert isinstance(AmbiguousId("x"), StoreError)
    assert await store.get_retained("ffffff") is None
    one = await store.get_retained("abc000")
    assert one is not None and one.id == "abc0000000000001"


async def test_filters(store: SqliteStore) -> None:
    await store.upsert_retained(record("1" * 16, at=T0), seen())
    await store.upsert_retained(
        record("2" * 16, digest="e" * 64, commit=SHA_B, at=T0 + 1000), seen(at=T0 + 1000)
    )
    await store.upsert_retained(
        record("3" * 16, digest="f" * 64, repository="other/repo", state=RetainedState.PENDING),
        seen(),
    )

    async def ids(**query: object) -> list[str]:
        found = await store.list_retained(RetainedFilter(**query))  # type: ignore[arg-type]
        return [r.id[0] for r in found]

    assert await ids() == ["2", "1", "3"]  # most recently seen first
    assert await ids(repository="octo-org/octo-repo") == ["2", "1"]  # case-blind
    assert await ids(commit=SHA_B[:7]) == ["2"]
    assert await ids(since=T0 + 500) == ["2"]
    assert await ids(until=T0 + 500) == ["1", "3"]
    assert await ids(state=RetainedState.PENDING) == ["3"]
    assert await ids(digest="e" * 64) == ["2"]
    assert await ids(limit=1) == ["2"]


async def test_due_update_and_delete(store: SqliteStore) -> None:
    pending = dataclasses.replace(
        record("1" * 16, state=RetainedState.PENDING), next_attempt_at=T0 + 60
    )
    await store.upsert_retained(pending, seen())
    await store.upsert_retained(record("2" * 16), seen())
    await store.upsert_retained(record("3" * 16, digest="e" * 64), seen())
    assert await store.due_retained(T0) == []
    assert [r.id for r in await store.due_retained(T0 + 60)] == ["1" * 16]
    await store.update_retained(
        "1" * 16,
        state=RetainedState.KEPT,
        attempts=2,
        next_attempt_at=None,
        last_error=None,
        spool_path=None,
    )
    assert await store.due_retained(T0 + 60) == []
    assert await store.referenced_digests() == {"d" * 64, "e" * 64}
    # two records share digest d: deleting one frees nothing, deleting both frees it
    assert await store.delete_retained(["1" * 16, "3" * 16]) == {"e" * 64}
    assert await store.delete_retained(["2" * 16]) == {"d" * 64}
    assert await store.delete_retained([]) == set()
    assert await store.execute("SELECT count(*) FROM retained_sightings") == [(0,)]


async def test_audit_events_stay_append_only(store: SqliteStore) -> None:
    await store.audit(None, "retention_gc", "deleted x", {"retained_id": "x"})
    with pytest.raises(StoreError, match="append-only"):
        await store.execute("DELETE FROM audit_events")
    with pytest.raises(StoreError, match="append-only"):
        await store.execute("UPDATE audit_events SET message = 'rewritten'")
