"""The SQLite store: schema, deliveries, leases, retries, dedupe and the append-only audit trail."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.events import JobKind
from bot.secrets import Secret
from bot.settings import PostgresDatabase, Settings
from bot.store import (
    Job,
    JobState,
    LeaseLost,
    SqliteStore,
    StoreError,
    StoreMissing,
    store_for,
)
from bot.store.sqlite import MIGRATIONS
from tests.apphelpers import SHA_A, SHA_B, FakeClock, delivery, spec

pytestmark = pytest.mark.asyncio


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def store(tmp_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "db" / "rg.sqlite3", clock=clock)
    await store.open()
    yield store
    await store.close()


async def claimed(store: SqliteStore, worker: str = "w1", lease: float = 30) -> Job:
    job = await store.claim(worker, lease)
    assert job is not None
    return job


async def stages(store: SqliteStore, job_id: int) -> list[str]:
    return [event.stage for event in await store.audit_trail(job_id)]


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


async def test_a_closed_store_is_not_ready(store: SqliteStore) -> None:
    await store.close()
    assert not await store.ping()
    with pytest.raises(StoreError, match="not open"):
        await store.list_jobs()


async def test_record_delivery_is_recorded_once(store: SqliteStore) -> None:
    first = delivery("d-1")
    assert await store.record_delivery(first, [spec(SHA_A), spec(SHA_B)])
    assert not await store.record_delivery(first, [spec("c" * 40)])
    jobs = await store.list_jobs()
    assert [job.head_sha for job in jobs] == [SHA_B, SHA_A]  # newest first
    assert all(job.state is JobState.QUEUED and job.delivery_id == "d-1" for job in jobs)
    rows = await store.execute("SELECT delivery_id, event, action, outcome FROM deliveries")
    assert rows == [("d-1", "pull_request", "opened", "queued")]
    trail = await store.audit_trail(jobs[0].id)
    assert [e.stage for e in trail] == ["received", "queued"]
    assert trail[0].message == "pull_request.opened delivery d-1"
    assert trail[0].delivery_id == "d-1"


async def test_concurrent_deliveries_share_a_commit(store: SqliteStore) -> None:
    """Group commit: many deliveries at once, duplicates and a bad one among them."""
    bad = spec("f" * 40)
    bad = dataclasses.replace(bad, details={"not json": object()})  # type: ignore[dict-item]
    calls = [store.record_delivery(delivery(f"d-{n}"), [spec(f"{n:040x}")]) for n in range(50)]
    calls += [store.record_delivery(delivery("d-7"), [spec("e" * 40)])]  # a duplicate id
    calls += [store.record_delivery(delivery("bad"), [bad])]
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert outcomes[:50] == [True] * 50
    assert outcomes[50] is False
    assert isinstance(outcomes[51], TypeError)
    assert len(await store.list_jobs(100)) == 50
    delivered = await store.execute("SELECT count(*) FROM deliveries WHERE delivery_id = 'bad'")
    assert delivered == [(0,)]  # the bad delivery left nothing behind


async def test_same_work_is_folded_while_pending(store: SqliteStore) -> None:
    assert await store.record_delivery(delivery("d-1"), [spec(SHA_A)])
    assert await store.record_delivery(delivery("d-2"), [spec(SHA_A)])
    (job,) = await store.list_jobs()
    trail = await store.audit_trail(job.id)
    assert [e.stage for e in trail] == ["received", "queued", "received"]
    assert "d-2" in trail[-1].message and "folded" in trail[-1].message
    assert await store.execute("SELECT outcome FROM deliveries ORDER BY id") == [
        ("queued",),
        ("coalesced",),
    ]
    # Once the job is done, the same work asked again is a new job.
    await store.complete(await claimed(store), JobState.DONE, "ok")
    assert await store.record_delivery(delivery("d-3"), [spec(SHA_A)])
    assert len(await store.list_jobs()) == 2


async def test_claim_leases_the_oldest_due_job(store: SqliteStore, clock: FakeClock) -> None:
    assert await store.claim("w1", 30) is None
    await store.record_delivery(delivery(), [spec(SHA_A), spec(SHA_B)])
    job = await claimed(store)
    assert job.head_sha == SHA_A and job.state is JobState.RUNNING
    assert job.attempts == 1 and job.lease_owner == "w1"
    assert job.lease_expires == clock.now + 30
    other = await claimed(store, "w2")
    assert other.head_sha == SHA_B
    assert await store.claim("w3", 30) is None


async def test_an_expired_lease_is_claimable_again(store: SqliteStore, clock: FakeClock) -> None:
    await store.record_delivery(delivery(), [spec()])
    first = await claimed(store, "dead-worker", lease=10)
    clock.advance(5)
    assert await store.claim("w2", 10) is None
    clock.advance(6)
    second = await claimed(store, "w2", lease=10)
    assert second.id == first.id and second.attempts == 2
    assert await stages(store, first.id) == ["received", "queued", "reclaimed"]
    # The first worker's late writes are refused: the job completes once.
    assert not await store.renew(first, 10)
    with pytest.raises(LeaseLost):
        await store.complete(first, JobState.DONE, "late")
    await store.complete(second, JobState.DONE, "scanned")
    job = await store.get_job(first.id)
    assert job is not None and job.state is JobState.DONE and job.result_summary == "scanned"


async def test_renew_extends_the_lease(store: SqliteStore, clock: FakeClock) -> None:
    await store.record_delivery(delivery(), [spec()])
    job = await claimed(store, lease=10)
    clock.advance(8)
    assert await store.renew(job, 10)
    clock.advance(8)
    assert await store.claim("w2", 10) is None


async def test_complete_records_the_outcome(store: SqliteStore) -> None:
    await store.record_delivery(delivery(), [spec(SHA_A), spec(SHA_B)])
    done, failed = await claimed(store), await claimed(store)
    await store.complete(done, JobState.DONE, "no finding")
    await store.complete(failed, JobState.FAILED, "gave up: GitHub is down")
    by_id = {job.id: job for job in await store.list_jobs()}
    assert by_id[done.id].state is JobState.DONE and by_id[done.id].lease_owner is None
    assert by_id[failed.id].result_summary == "gave up: GitHub is down"
    trail = await store.audit_trail(failed.id)
    assert (trail[-1].stage, trail[-1].message) == ("failed", "gave up: GitHub is down")
    with pytest.raises(ValueError, match="done or failed"):
        await store.complete(done, JobState.QUEUED, "x")


async def test_retry_later_requeues_after_the_delay(store: SqliteStore, clock: FakeClock) -> None:
    await store.record_delivery(delivery(), [spec()])
    job = await claimed(store)
    await store.retry_later(job, 60, "GitHub answered 502")
    again = await store.get_job(job.id)
    assert again is not None and again.state is JobState.QUEUED
    assert again.not_before == clock.now + 60 and again.lease_owner is None
    assert await store.claim("w1", 30) is None
    clock.advance(61)
    assert (await claimed(store)).attempts == 2
    trail = await store.audit_trail(job.id)
    assert trail[-1].stage == "retry" and "502" in trail[-1].message
    assert trail[-1].data == {"delay": 60, "attempts": 1}


async def test_set_check_run_is_kept_for_retries(store: SqliteStore) -> None:
    await store.record_delivery(delivery(), [spec()])
    job = await claimed(store)
    await store.set_check_run(job, 4242)
    await store.retry_later(job, 0, "try again")
    again = await claimed(store)
    assert again.check_run_id == 4242
    assert "check_run" in await stages(store, job.id)


async def test_reclaim_requeues_a_dead_workers_jobs(store: SqliteStore) -> None:
    await store.record_delivery(delivery(), [spec(SHA_A), spec(SHA_B)])
    mine, theirs = await claimed(store, "dead"), await claimed(store, "alive")
    assert await store.reclaim(["dead"], "its process is gone") == 1
    assert await store.reclaim([], "nothing") == 0
    states = {job.id: job.state for job in await store.list_jobs()}
    assert states == {mine.id: JobState.QUEUED, theirs.id: JobState.RUNNING}
    trail = await store.audit_trail(mine.id)
    assert (trail[-1].stage, trail[-1].message) == ("reclaimed", "its process is gone")


async def test_audit_events_are_append_only(store: SqliteStore) -> None:
    await store.record_delivery(delivery(), [spec()])
    (job,) = await store.list_jobs()
    await store.audit(job.id, "downloading", "fetching artifact 1", {"bytes": 10})
    with pytest.raises(StoreError, match="append-only"):
        await store.execute("UPDATE audit_events SET message = 'rewritten'")
    with pytest.raises(StoreError, match="append-only"):
        await store.execute("DELETE FROM audit_events")
    # Not only through the store: any connection to the file is refused.
    raw = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            raw.execute("UPDATE audit_events SET stage = 'x' WHERE id = 1")
    finally:
        raw.close()
    trail = await store.audit_trail(job.id)
    assert [e.stage for e in trail] == ["received", "queued", "downloading"]
    assert trail[-1].data == {"bytes": 10} and trail[-1].delivery_id == job.delivery_id


async def test_list_jobs_limit_and_state(store: SqliteStore) -> None:
    await store.record_delivery(delivery(), [spec(c * 40) for c in "abcde"])
    await claimed(store)
    assert len(await store.list_jobs(2)) == 2
    assert len(await store.list_jobs(state=JobState.RUNNING)) == 1
    assert len(await store.list_jobs(state=JobState.QUEUED)) == 4
    assert await store.get_job(999) is None


async def test_job_json_shape(store: SqliteStore) -> None:
    await store.record_delivery(delivery("d-9"), [spec(kind=JobKind.WORKFLOW_RUN)])
    (job,) = await store.list_jobs()
    data = job.to_json()
    assert data["kind"] == "workflow_run" and data["state"] == "queued"
    assert data["delivery_id"] == "d-9" and data["details"] == {"pull_number": 7}
    assert str(data["created_at"]).endswith("Z") and data["lease_expires"] is None


async def test_two_processes_share_one_file(tmp_path: Path) -> None:
    """Two stores (two connections, two threads) on one file never claim a job twice."""
    path = tmp_path / "shared.sqlite3"
    one, two = SqliteStore(path), SqliteStore(path)
    await asyncio.gather(one.open(), two.open())
    try:
        await one.record_delivery(delivery(), [spec(f"{n:040x}") for n in range(40)])

        async def drain(store: SqliteStore, name: str) -> list[int]:
            got = []
            while (job := await store.claim(name, 30)) is not None:
                got.append(job.id)
                await store.complete(job, JobState.DONE, "ok")
            return got

        a, b = await asyncio.gather(drain(one, "one"), drain(two, "two"))
        assert len(a) + len(b) == 40 and not set(a) & set(b)
    finally:
        await asyncio.gather(one.close(), two.close())


async def test_postgres_is_not_available_yet(tmp_path: Path) -> None:
    settings = Settings.for_data_dir(
        tmp_path, database=PostgresDatabase(Secret("postgresql://db/rg"))
    )
    with pytest.raises(StoreError, match=r"PostgreSQL.*cannot use yet"):
        store_for(settings)
    assert isinstance(store_for(Settings.for_data_dir(tmp_path)), SqliteStore)
