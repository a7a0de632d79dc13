"""What only the PostgreSQL store has: migrations under an advisory lock, the pool, the
`on_queued` hook in the delivery's transaction, several processes on one database, and
error messages that never show the password. The semantics both backends share are tested
in tests/test_store_shared.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio

from bot.secrets import Secret
from bot.settings import PostgresDatabase, Settings
from bot.store import Job, JobState, PostgresStore, StoreError, store_for
from bot.store.pg_schema import MIGRATION_LOCK_KEY, MIGRATIONS, migrate
from tests.apphelpers import SHA_A, SHA_B, FakeClock, delivery, spec

pytestmark = pytest.mark.asyncio

TABLES = {
    "schema_version",
    "deliveries",
    "jobs",
    "audit_events",
    "retained",
    "retained_sightings",
    "rate_limit_blocks",
    "rescans",
    "scan_verdicts",
    "check_coverage",
    "recovery_state",
    "redeliveries",
}


@pytest_asyncio.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresStore]:
    store = PostgresStore(pg_url, clock=FakeClock())
    await store.open()
    yield store
    await store.close()


async def counts(store: PostgresStore) -> tuple[int, int, int]:
    """How many deliveries, jobs and audit events the database holds."""
    rows = await store.execute(
        "SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM jobs),"
        " (SELECT count(*) FROM audit_events)"
    )
    return rows[0]


# -- the schema ----------------------------------------------------------------------------------


async def test_open_applies_the_migrations_once(store: PostgresStore, pg_url: str) -> None:
    versions = await store.execute("SELECT version FROM schema_version ORDER BY version")
    assert versions == [(version,) for version in range(1, len(MIGRATIONS) + 1)]
    tables = await store.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    )
    assert {name for (name,) in tables} == TABLES
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        assert await migrate(conn) == ()
    again = PostgresStore(pg_url)
    await again.open()
    await again.open()  # a second open of the same store does nothing
    await again.close()
    await again.close()
    assert await store.execute("SELECT count(*) FROM schema_version") == [(len(MIGRATIONS),)]
    assert await store.ping()


async def test_migrate_reports_what_it_applied(pg_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        applied = await migrate(conn, clock=lambda: 42.0)
        assert applied == tuple(range(1, len(MIGRATIONS) + 1))
        cursor = await conn.execute("SELECT DISTINCT applied_at FROM schema_version")
        assert await cursor.fetchall() == [(42.0,)]


async def test_stores_starting_together_migrate_once(pg_url: str) -> None:
    stores = [PostgresStore(pg_url) for _ in range(4)]
    try:
        await asyncio.gather(*(store.open() for store in stores))
        versions = await stores[0].execute("SELECT version FROM schema_version")
        assert versions == [(version,) for version in range(1, len(MIGRATIONS) + 1)]
        assert all([await store.ping() for store in stores])
    finally:
        await asyncio.gather(*(store.close() for store in stores))


async def test_migrations_wait_for_the_advisory_lock(pg_url: str) -> None:
    """While another process holds the lock (installing the queue's schema, say), open waits."""
    async with await psycopg.AsyncConnection.connect(pg_url) as holder:
        await holder.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        store = PostgresStore(pg_url)
        opening = asyncio.create_task(store.open())
        await asyncio.sleep(0.3)
        assert not opening.done()
        await holder.commit()
        await asyncio.wait_for(opening, 10)
    try:
        assert await store.ping()
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(store: PostgresStore, pg_url: str) -> None:
    await store.execute("INSERT INTO schema_version VALUES (99, 0)")
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        await PostgresStore(pg_url).open()


async def test_audit_events_refuse_changes_from_any_connection(
    store: PostgresStore, pg_url: str
) -> None:
    await store.record_delivery(delivery(), [spec()])
    for statement in (
        "UPDATE audit_events SET message = 'rewritten'",
        "UPDATE audit_events SET message = 'x' WHERE id < 0",  # even when no row matches
        "DELETE FROM audit_events",
        "TRUNCATE audit_events",
    ):
        async with await psycopg.AsyncConnection.connect(pg_url) as conn:
            with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
                await conn.execute(statement)
        with pytest.raises(StoreError, match="append-only"):
            await store.execute(statement)
    assert (await counts(store))[2] == 2


# -- the pool ----------------------------------------------------------------------------------


async def test_the_pool_is_shared_and_autocommit(store: PostgresStore, pg_url: str) -> None:
    pool = store.pool
    assert pool.max_size == 10
    # procrastinate opens its LISTEN connection with the pool's arguments plus its own
    # autocommit=True: the arguments must not say autocommit again.
    assert "autocommit" not in (pool.kwargs or {})
    async with pool.connection() as conn:
        assert conn.autocommit
        cursor = await conn.execute("SELECT count(*) FROM jobs")
        assert await cursor.fetchone() == (0,)
    with pytest.raises(AttributeError):
        store.pool = pool  # type: ignore[misc]
    assert await store.execute("SELECT %s::int + %s", (1, 2)) == [(3,)]
    assert await store.execute("SET application_name = 'x'") == []
    closed = PostgresStore(pg_url)
    with pytest.raises(StoreError, match="not open"):
        closed.pool  # noqa: B018


# -- record_delivery and the on_queued hook -----------------------------------------------------


async def test_on_queued_runs_inside_the_delivery_transaction(pg_url: str) -> None:
    seen: list[tuple[Job, int, int]] = []

    async def on_queued(conn: psycopg.AsyncConnection[Any], job: Job) -> None:
        inside = await conn.execute("SELECT count(*) FROM jobs WHERE id = %s", (job.id,))
        async with await psycopg.AsyncConnection.connect(pg_url) as other:
            outside = await other.execute("SELECT count(*) FROM jobs WHERE id = %s", (job.id,))
            seen.append(
                (job, (await inside.fetchone() or (0,))[0], (await outside.fetchone() or (0,))[0])
            )

    store = PostgresStore(pg_url, clock=FakeClock(), on_queued=on_queued)
    await store.open()
    try:
        assert await store.record_delivery(delivery("d-1"), [spec(SHA_A), spec(SHA_B)])
        # visible on its own connection, not yet committed for the others
        assert [(job.head_sha, inside, outside) for job, inside, outside in seen] == [
            (SHA_A, 1, 0),
            (SHA_B, 1, 0),
        ]
        assert all(job.state is JobState.QUEUED and job.delivery_id == "d-1" for job, _, _ in seen)
        assert [job.id for job, _, _ in seen] == sorted(job.id for job in await store.list_jobs())
        # A job folded into a pending one is not queued again.
        assert await store.record_delivery(delivery("d-2"), [spec(SHA_A)])
        assert len(seen) == 2
        assert await counts(store) == (2, 2, 5)
    finally:
        await store.close()


async def test_a_failing_hook_records_nothing(pg_url: str) -> None:
    calls: list[int] = []

    async def on_queued(conn: psycopg.AsyncConnection[Any], job: Job) -> None:
        calls.append(job.id)
        if len(calls) == 2:
            raise RuntimeError("the queue refused it")

    store = PostgresStore(pg_url, on_queued=on_queued)
    await store.open()
    try:
        with pytest.raises(StoreError, match=r"cannot queue job .*the queue refused it") as info:
            await store.record_delivery(delivery("d-1"), [spec(SHA_A), spec(SHA_B)])
        assert isinstance(info.value.__cause__, RuntimeError)
        assert await counts(store) == (0, 0, 0)
        # Nothing was recorded, so GitHub's redelivery of the same id is a new delivery.
        assert await store.record_delivery(delivery("d-1"), [spec(SHA_A), spec(SHA_B)])
        assert await counts(store) == (1, 2, 4)
    finally:
        await store.close()


async def test_a_transaction_rolled_back_by_the_server_is_run_again(pg_url: str) -> None:
    calls: list[int] = []

    async def on_queued(conn: psycopg.AsyncConnection[Any], job: Job) -> None:
        calls.append(job.id)
        if len(calls) == 1:
            raise psycopg.errors.DeadlockDetected("deadlock detected")

    store = PostgresStore(pg_url, on_queued=on_queued)
    await store.open()
    try:
        assert await store.record_delivery(delivery("d-1"), [spec()])
        assert len(calls) == 2
        assert await counts(store) == (1, 1, 2)
    finally:
        await store.close()


async def test_the_same_delivery_from_several_processes_is_recorded_once(pg_url: str) -> None:
    async def slow(conn: psycopg.AsyncConnection[Any], job: Job) -> None:
        await asyncio.sleep(0.2)  # hold the transaction open while the others arrive

    stores = [PostgresStore(pg_url, on_queued=slow) for _ in range(5)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        outcomes = await asyncio.gather(
            *(store.record_delivery(delivery("same-id"), [spec()]) for store in stores)
        )
        assert sorted(outcomes) == [False] * 4 + [True]
        assert await counts(stores[0]) == (1, 1, 2)
        # Different deliveries asking for the same work at once: one job, the rest folded.
        outcomes = await asyncio.gather(
            *(
                store.record_delivery(delivery(f"d-{n}"), [spec(SHA_B), spec(SHA_A)])
                for n, store in enumerate(stores)
            )
        )
        assert outcomes == [True] * 5
        jobs = await stores[0].list_jobs()
        assert sorted(job.head_sha or "" for job in jobs) == [SHA_A, SHA_B]
        # A: queued before (2 events), folded 5 times; B: queued once (2), folded 4 times.
        assert await counts(stores[0]) == (6, 2, 2 + 5 + 2 + 4)
    finally:
        await asyncio.gather(*(store.close() for store in stores))


# -- errors ------------------------------------------------------------------------------------


async def test_an_unreachable_server_is_a_store_error_without_the_password() -> None:
    url = "postgresql://release-guard:s3cret-pw@127.0.0.1:1/rg"
    store = PostgresStore(url, timeout=2)
    assert "s3cret" not in repr(store)
    with pytest.raises(StoreError) as info:
        await store.open()
    message = str(info.value)
    assert "cannot connect to PostgreSQL" in message and "127.0.0.1:1" in message
    assert "s3cret" not in message and "s3cret" not in repr(info.value)
    assert info.value.__cause__ is None  # psycopg's error (and its conninfo) is not chained
    assert not await store.ping()
    with pytest.raises(StoreError, match="not open"):
        await store.list_jobs()


async def test_a_connection_the_server_closed_is_replaced(
    store: PostgresStore, pg_url: str
) -> None:
    """A pooled connection the server killed (a restart, an idle timeout) is not used."""
    async with store.pool.connection() as conn:
        pid = conn.info.backend_pid
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    assert await store.list_jobs() == []
    assert await store.ping()
    await store.pool.close()
    with pytest.raises(StoreError, match="closed"):
        await store.list_jobs()
    assert not await store.ping()


async def test_store_for_picks_postgres_for_a_postgresql_url(tmp_path: Path) -> None:
    url = "postgresql://release-guard:s3cret-pw@db.internal:5433/rg"
    settings = Settings.for_data_dir(tmp_path, database=PostgresDatabase(Secret(url)))
    store = store_for(settings)
    assert isinstance(store, PostgresStore)
    assert repr(store) == "PostgresStore('postgresql://db.internal:5433/rg')"
    assert isinstance(store_for(settings, create=False), PostgresStore)
