"""The store's semantics, on every backend: SQLite and PostgreSQL pass the same tests.

Deliveries and dedupe, the queue (claim, start, leases, retries, locks), the audit trail,
and the retention index. What only one backend has (SQLite's PRAGMAs and file, PostgreSQL's
pool and concurrent migrations) is tested in tests/test_store_sqlite.py and
tests/test_store_postgres.py. The PostgreSQL half skips without
RELEASE_GUARD_TEST_POSTGRES_URL (tests/pgtest.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from bot.events import JobKind, JobSpec
from bot.store import Job, JobState, LeaseLost, PostgresStore, SqliteStore, StoreError
from bot.store.base import (
    AmbiguousId,
    CheckCoverage,
    DeliveryLedger,
    RetainedFilter,
    RetainedRecord,
    RetainedState,
    RetentionIndex,
    ScanLedger,
    Sighting,
    StoredVerdict,
)
from bot.store.common import lock_key_sql
from tests.apphelpers import SHA_A, SHA_B, FakeClock, delivery, spec

pytestmark = pytest.mark.asyncio

AnyStore = SqliteStore | PostgresStore
StoreFactory = Callable[[], Awaitable[AnyStore]]

T0 = 1_700_000_000.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest_asyncio.fixture
async def new_store(
    postgres_url: str | None, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[StoreFactory]:
    """Open another store on the test's database (as another process would); all are closed
    at the end."""
    opened: list[AnyStore] = []

    async def open_one() -> AnyStore:
        store: AnyStore
        if postgres_url is None:
            store = SqliteStore(tmp_path / "db" / "rg.sqlite3", clock=clock)
        else:
            store = PostgresStore(postgres_url, clock=clock)
        await store.open()
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        await store.close()


@pytest_asyncio.fixture
async def store(new_store: StoreFactory) -> AnyStore:
    return await new_store()


async def claimed(store: AnyStore, worker: str = "w1", lease: float = 30) -> Job:
    job = await store.claim(worker, lease)
    assert job is not None
    return job


async def stages(store: AnyStore, job_id: int) -> list[str]:
    return [event.stage for event in await store.audit_trail(job_id)]


def no_sha(key: str, repository: str = "octo-org/octo-repo") -> JobSpec:
    """A job that does not know its commit (a comment command): its dedupe key is its lock."""
    return dataclasses.replace(
        spec(kind=JobKind.COMMENT_COMMAND, repository=repository, key=key), head_sha=None
    )


# -- deliveries and dedupe ---------------------------------------------------------------------


async def test_record_delivery_is_recorded_once(store: AnyStore) -> None:
    first = delivery("d-1")
    assert await store.record_delivery(first, [spec(SHA_A), spec(SHA_B)])
    assert not await store.record_delivery(first, [spec("c" * 40)])
    jobs = await store.list_jobs()
    assert [job.head_sha for job in jobs] == [SHA_B, SHA_A]  # newest first
    assert all(job.state is JobState.QUEUED and job.delivery_id == "d-1" for job in jobs)
    assert all(job.attempts == 0 and job.lease_owner is None for job in jobs)
    rows = await store.execute("SELECT delivery_id, event, action, outcome FROM deliveries")
    assert rows == [("d-1", "pull_request", "opened", "queued")]
    trail = await store.audit_trail(jobs[0].id)
    assert [e.stage for e in trail] == ["received", "queued"]
    assert trail[0].message == "pull_request.opened delivery d-1"
    assert trail[0].data == {"event": "pull_request", "action": "opened"}
    assert trail[1].message == "queued as a check job"
    assert trail[0].delivery_id == "d-1"


async def test_a_delivery_without_jobs_is_recorded(store: AnyStore) -> None:
    assert await store.record_delivery(delivery("d-0", event="ping"), [])
    assert not await store.record_delivery(delivery("d-0", event="ping"), [])
    assert await store.execute("SELECT outcome FROM deliveries") == [("recorded",)]
    assert await store.list_jobs() == []


async def test_concurrent_deliveries_duplicates_and_a_bad_one(store: AnyStore) -> None:
    """Many deliveries at once, a duplicate id and a value JSON cannot hold among them."""
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


async def test_same_work_is_folded_while_pending(store: AnyStore) -> None:
    assert await store.record_delivery(delivery("d-1"), [spec(SHA_A)])
    assert await store.record_delivery(delivery("d-2"), [spec(SHA_A)])
    (job,) = await store.list_jobs()
    trail = await store.audit_trail(job.id)
    assert [e.stage for e in trail] == ["received", "queued", "received"]
    assert trail[-1].message == (
        "pull_request.opened delivery d-2 asks for the same work: folded into this job"
    )
    assert trail[-1].delivery_id == "d-2"
    assert await store.execute("SELECT outcome FROM deliveries ORDER BY id") == [
        ("queued",),
        ("coalesced",),
    ]
    # Once the job is done, the same work asked again is a new job.
    await store.complete(await claimed(store), JobState.DONE, "ok")
    assert await store.record_delivery(delivery("d-3"), [spec(SHA_A)])
    assert len(await store.list_jobs()) == 2


async def test_same_work_is_folded_into_a_running_job(store: AnyStore) -> None:
    await store.record_delivery(delivery("d-1"), [spec(SHA_A)])
    running = await claimed(store)
    assert await store.record_delivery(delivery("d-2"), [spec(SHA_A), spec(SHA_B)])
    jobs = await store.list_jobs()
    assert [job.head_sha for job in jobs] == [SHA_B, SHA_A]
    assert await stages(store, running.id) == ["received", "queued", "received"]
    assert await store.execute("SELECT outcome FROM deliveries ORDER BY id") == [
        ("queued",),
        ("queued",),
    ]


async def test_the_same_work_twice_in_one_delivery_is_one_job(store: AnyStore) -> None:
    assert await store.record_delivery(delivery("d-1"), [spec(SHA_A), spec(SHA_A)])
    (job,) = await store.list_jobs()
    assert await stages(store, job.id) == ["received", "queued", "received"]


# -- the queue ---------------------------------------------------------------------------------


async def test_claim_leases_the_oldest_due_job(store: AnyStore, clock: FakeClock) -> None:
    assert await store.claim("w1", 30) is None
    await store.record_delivery(delivery(), [spec(SHA_A), spec(SHA_B)])
    job = await claimed(store)
    assert job.head_sha == SHA_A and job.state is JobState.RUNNING
    assert job.attempts == 1 and job.lease_owner == "w1"
    assert job.lease_expires == clock.now + 30
    assert job.updated_at == clock.now
    other = await claimed(store, "w2")
    assert other.head_sha == SHA_B
    assert await store.claim("w3", 30) is None


async def test_an_expired_lease_is_claimable_again(store: AnyStore, clock: FakeClock) -> None:
    await store.record_delivery(delivery(), [spec()])
    first = await claimed(store, "dead-worker", lease=10)
    clock.advance(5)
    assert await store.claim("w2", 10) is None
    clock.advance(6)
    second = await claimed(store, "w2", lease=10)
    assert second.id == first.id and second.attempts == 2
    trail = await store.audit_trail(first.id)
    assert [e.stage for e in trail] == ["received", "queued", "reclaimed"]
    assert trail[-1].message == "the lease of dead-worker expired"
    # The first worker's late writes are refused: the job completes once.
    assert not await store.renew(first, 10)
    with pytest.raises(LeaseLost):
        await store.complete(first, JobState.DONE, "late")
    with pytest.raises(LeaseLost):
        await store.retry_later(first, 5, "late")
    with pytest.raises(LeaseLost):
        await store.set_check_run(first, 1)
    await store.complete(second, JobState.DONE, "scanned")
    job = await store.get_job(first.id)
    assert job is not None and job.state is JobState.DONE and job.result_summary == "scanned"


async def test_renew_extends_the_lease(store: AnyStore, clock: FakeClock) -> None:
    await store.record_delivery(delivery(), [spec()])
    job = await claimed(store, lease=10)
    clock.advance(8)
    assert await store.renew(job, 10)
    clock.advance(8)
    assert await store.claim("w2", 10) is None
    renewed = await store.get_job(job.id)
    assert renewed is not None and renewed.lease_expires == clock.now - 8 + 10


async def test_complete_records_the_outcome(store: AnyStore) -> None:
    await store.record_delivery(delivery(), [spec(SHA_A), spec(SHA_B)])
    done, failed = await claimed(store), await claimed(store)
    await store.complete(done, JobState.DONE, "no finding")
    await store.complete(failed, JobState.FAILED, "gave up: GitHub is down")
    by_id = {job.id: job for job in await store.list_jobs()}
    assert by_id[done.id].state is JobState.DONE and by_id[done.id].lease_owner is None
    assert by_id[done.id].lease_expires is None
    assert by_id[failed.id].result_summary == "gave up: GitHub is down"
    trail = await store.audit_trail(failed.id)
    assert (trail[-1].stage, trail[-1].message) == ("failed", "gave up: GitHub is down")
    assert trail[-1].data == {"attempts": 1} and trail[-1].delivery_id == failed.delivery_id
    with pytest.raises(ValueError, match="done or failed"):
        await store.complete(done, JobState.QUEUED, "x")


async def test_retry_later_requeues_after_the_delay(store: AnyStore, clock: FakeClock) -> None:
    await store.record_delivery(delivery(), [spec()])
    job = await claimed(store)
    await store.retry_later(job, 60, "GitHub answered 502")
    again = await store.get_job(job.id)
    assert again is not None and again.state is JobState.QUEUED
    assert again.not_before == clock.now + 60 and again.lease_owner is None
    assert again.result_summary == "GitHub answered 502"
    assert await store.claim("w1", 30) is None
    clock.advance(61)
    assert (await claimed(store)).attempts == 2
    trail = await store.audit_trail(job.id)
    assert trail[-1].stage == "retry"
    assert trail[-1].message == "attempt 1 will be retried in 60s: GitHub answered 502"
    assert trail[-1].data == {"delay": 60, "attempts": 1}


async def test_a_job_queued_again_still_folds_new_deliveries(store: AnyStore) -> None:
    await store.record_delivery(delivery("d-1"), [spec()])
    await store.retry_later(await claimed(store), 60, "later")
    assert await store.record_delivery(delivery("d-2"), [spec()])
    (job,) = await store.list_jobs()
    assert (await store.audit_trail(job.id))[-1].delivery_id == "d-2"


async def test_set_check_run_is_kept_for_retries(store: AnyStore) -> None:
    await store.record_delivery(delivery(), [spec()])
    job = await claimed(store)
    await store.set_check_run(job, 4242)
    await store.retry_later(job, 0, "try again")
    again = await claimed(store)
    assert again.check_run_id == 4242
    trail = await store.audit_trail(job.id)
    event = next(e for e in trail if e.stage == "check_run")
    assert event.message == "reporting on check run 4242"
    assert event.data == {"check_run_id": 4242}


async def test_reclaim_requeues_a_dead_workers_jobs(store: AnyStore, clock: FakeClock) -> None:
    await store.record_delivery(delivery(), [spec(SHA_A), spec(SHA_B)])
    mine, theirs = await claimed(store, "dead"), await claimed(store, "alive")
    clock.advance(1)
    assert await store.reclaim(["dead", "also-dead"], "its process is gone") == 1
    assert await store.reclaim([], "nothing") == 0
    jobs = {job.id: job for job in await store.list_jobs()}
    assert {job_id: job.state for job_id, job in jobs.items()} == {
        mine.id: JobState.QUEUED,
        theirs.id: JobState.RUNNING,
    }
    assert jobs[mine.id].not_before == clock.now and jobs[mine.id].lease_owner is None
    trail = await store.audit_trail(mine.id)
    assert (trail[-1].stage, trail[-1].message) == ("reclaimed", "its process is gone")
    assert trail[-1].delivery_id == mine.delivery_id
    again = await claimed(store, "w3")
    assert again.id == mine.id and again.attempts == 2


async def test_two_stores_never_claim_a_job_twice(new_store: StoreFactory) -> None:
    """Two stores (two processes) on one database drain the queue between them."""
    one, two = await asyncio.gather(new_store(), new_store())
    await one.record_delivery(delivery(), [spec(f"{n:040x}") for n in range(40)])

    async def drain(store: AnyStore, name: str) -> list[int]:
        got = []
        while (job := await store.claim(name, 30)) is not None:
            got.append(job.id)
            await store.complete(job, JobState.DONE, "ok")
        return got

    a, b = await asyncio.gather(drain(one, "one"), drain(two, "two"))
    assert len(a) + len(b) == 40 and not set(a) & set(b)


# -- locks: one job at a time per repository and commit ----------------------------------------


async def test_claim_waits_for_the_job_running_on_the_same_commit(
    store: AnyStore, clock: FakeClock
) -> None:
    same = spec(SHA_A, kind=JobKind.WORKFLOW_RUN, repository="Octo-Org/Octo-Repo")
    await store.record_delivery(delivery(), [spec(SHA_A), same, spec(SHA_B)])
    first = await claimed(store, lease=10)
    assert first.head_sha == SHA_A and first.kind is JobKind.CHECK
    # The same commit of the same repository (whatever the case) waits; other work does not.
    other = await claimed(store, "w2")
    assert other.head_sha == SHA_B
    assert await store.claim("w3", 10) is None
    await store.complete(first, JobState.DONE, "ok")
    second = await claimed(store, "w3")
    assert second.kind is JobKind.WORKFLOW_RUN and second.lock_key == first.lock_key


async def test_an_expired_lease_does_not_hold_the_lock(store: AnyStore, clock: FakeClock) -> None:
    same = spec(SHA_A, kind=JobKind.WORKFLOW_RUN)
    await store.record_delivery(delivery(), [spec(SHA_A), same])
    first = await claimed(store, "dead", lease=10)
    clock.advance(11)
    # The dead worker's job is due again, and comes first: it is older.
    again = await claimed(store, "w2")
    assert again.id == first.id
    assert await store.claim("w3", 10) is None
    await store.retry_later(again, 0, "later")
    # Queued again, it holds nothing: the other job of the commit may run.
    assert (await claimed(store, "w3")).kind is JobKind.WORKFLOW_RUN


async def test_jobs_without_a_commit_lock_on_their_dedupe_key(store: AnyStore) -> None:
    await store.record_delivery(
        delivery(), [no_sha("command:one"), no_sha("command:two"), spec(SHA_A)]
    )
    got = [await claimed(store, f"w{n}") for n in range(3)]
    assert [job.lock_key for job in got] == [
        "command:one",
        "command:two",
        f"octo-org/octo-repo@{SHA_A}",
    ]
    assert await store.claim("w4", 30) is None


async def test_the_sql_lock_key_is_job_lock_key(store: AnyStore) -> None:
    """The claim's SQL computes `Job.lock_key` as the property does, on every backend."""
    await store.record_delivery(
        delivery(),
        [
            spec(SHA_A, repository="Octo-Org/Octo-Repo"),
            no_sha("command:one"),
            dataclasses.replace(spec(SHA_B, key="empty-sha"), head_sha=""),
            dataclasses.replace(
                no_sha("command:two", repository="Octo-Org/Octo-Repo"),
                details={"issue_number": 12},
            ),
        ],
    )
    dialect = "sqlite" if isinstance(store, SqliteStore) else "postgresql"
    rows = await store.execute(f"SELECT id, {lock_key_sql('jobs', dialect)} FROM jobs ORDER BY id")
    jobs = sorted(await store.list_jobs(), key=lambda job: job.id)
    assert rows == [(job.id, job.lock_key) for job in jobs]
    assert [job.lock_key for job in jobs] == [
        f"octo-org/octo-repo@{SHA_A}",
        "command:one",
        "empty-sha",
        "octo-org/octo-repo#12",
    ]


# -- start: a job the queue chose ----------------------------------------------------------------


async def test_start_leases_a_queued_job(store: AnyStore, clock: FakeClock) -> None:
    await store.record_delivery(delivery(), [spec(SHA_A), spec(SHA_B)])
    queued = (await store.list_jobs())[0]  # the newest, not the one claim would pick
    job = await store.start(queued.id, "w1", 30)
    assert job is not None and job.id == queued.id and job.state is JobState.RUNNING
    assert job.attempts == 1 and job.lease_owner == "w1"
    assert job.lease_expires == clock.now + 30 and job.updated_at == clock.now
    assert await stages(store, job.id) == ["received", "queued"]
    await store.complete(job, JobState.DONE, "ok")


async def test_start_takes_over_a_running_job(store: AnyStore, clock: FakeClock) -> None:
    await store.record_delivery(delivery(), [spec()])
    first = await claimed(store, "stopped", lease=60)
    clock.advance(5)
    job = await store.start(first.id, "w2", 30)
    assert job is not None and job.attempts == 2 and job.lease_owner == "w2"
    trail = await store.audit_trail(first.id)
    assert (trail[-1].stage, trail[-1].message) == (
        "reclaimed",
        "stopped stopped before finishing it",
    )
    with pytest.raises(LeaseLost):
        await store.complete(first, JobState.DONE, "late")
    await store.complete(job, JobState.DONE, "ok")


async def test_start_ignores_not_before(store: AnyStore) -> None:
    await store.record_delivery(delivery(), [spec()])
    await store.retry_later(await claimed(store), 3600, "rate limited")
    (queued,) = await store.list_jobs()
    job = await store.start(queued.id, "w2", 30)
    assert job is not None and job.attempts == 2


async def test_start_refuses_a_finished_or_unknown_job(store: AnyStore) -> None:
    await store.record_delivery(delivery(), [spec(SHA_A), spec(SHA_B)])
    done, failed = await claimed(store), await claimed(store)
    await store.complete(done, JobState.DONE, "ok")
    await store.complete(failed, JobState.FAILED, "no")
    assert await store.start(done.id, "w2", 30) is None
    assert await store.start(failed.id, "w2", 30) is None
    assert await store.start(999_999, "w2", 30) is None
    job = await store.get_job(done.id)
    assert job is not None and job.state is JobState.DONE and job.attempts == 1


# -- the audit trail and reading -----------------------------------------------------------------


async def test_audit_events_are_append_only(store: AnyStore) -> None:
    await store.record_delivery(delivery(), [spec()])
    (job,) = await store.list_jobs()
    await store.audit(job.id, "downloading", "fetching artifact 1", {"bytes": 10})
    with pytest.raises(StoreError, match="append-only"):
        await store.execute("UPDATE audit_events SET message = 'rewritten'")
    with pytest.raises(StoreError, match="append-only"):
        await store.execute("DELETE FROM audit_events")
    trail = await store.audit_trail(job.id)
    assert [e.stage for e in trail] == ["received", "queued", "downloading"]
    assert trail[-1].data == {"bytes": 10} and trail[-1].delivery_id == job.delivery_id
    assert trail[-1].message == "fetching artifact 1"


async def test_audit_without_a_job(store: AnyStore, clock: FakeClock) -> None:
    await store.audit(None, "retention_gc", "deleted x", {"retained_id": "x"})
    await store.audit(None, "webhook", "refused", delivery_id="d-9")
    rows = await store.execute(
        "SELECT job_id, delivery_id, at, stage, message FROM audit_events ORDER BY id"
    )
    assert rows == [
        (None, None, clock.now, "retention_gc", "deleted x"),
        (None, "d-9", clock.now, "webhook", "refused"),
    ]


async def test_list_jobs_limit_and_state(store: AnyStore) -> None:
    await store.record_delivery(delivery(), [spec(c * 40) for c in "abcde"])
    await claimed(store)
    assert len(await store.list_jobs(2)) == 2
    assert len(await store.list_jobs(state=JobState.RUNNING)) == 1
    assert len(await store.list_jobs(state=JobState.QUEUED)) == 4
    assert await store.get_job(999) is None


async def test_job_json_shape(store: AnyStore) -> None:
    await store.record_delivery(delivery("d-9"), [spec(kind=JobKind.WORKFLOW_RUN)])
    (job,) = await store.list_jobs()
    assert await store.get_job(job.id) == job
    data = job.to_json()
    assert data["kind"] == "workflow_run" and data["state"] == "queued"
    assert data["delivery_id"] == "d-9" and data["details"] == {"pull_number": 7}
    assert data["installation_id"] == 42 and data["repository"] == "octo-org/octo-repo"
    assert str(data["created_at"]).endswith("Z") and data["lease_expires"] is None


async def test_a_closed_store_is_not_ready(store: AnyStore) -> None:
    assert await store.ping()
    await store.close()
    assert not await store.ping()
    with pytest.raises(StoreError, match="not open"):
        await store.list_jobs()


# -- the retention index -------------------------------------------------------------------------


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


async def test_the_store_is_a_retention_index(store: AnyStore) -> None:
    assert isinstance(store, RetentionIndex)
    assert await store.execute("SELECT count(*) FROM retained") == [(0,)]
    assert await store.execute("SELECT count(*) FROM retained_sightings") == [(0,)]


async def test_a_new_record_and_its_sighting(store: AnyStore) -> None:
    full = Sighting(
        seen_at=T0,
        artifact_name="dist",
        installation_id=42,
        event="pull_request",
        delivery_id="d-1",
        job_id=None,
        pull_request=7,
        release="v1.0.0",
        workflow_run_id=2**40,
        artifact_id=5,
        check_run_url="https://github.com/o/r/runs/1",
        findings=({"rule": "source-map", "path": "dist/app.js.map"},),
    )
    stored, created = await store.upsert_retained(record(size=2**33), full)
    assert created and stored.size == 2**33 and stored.sighting_count == 1
    assert stored.sightings == ()  # listings leave them out
    found = await store.get_retained(stored.id)
    assert found is not None
    assert found.sightings == (full,)
    assert dataclasses.replace(found, sightings=()) == stored
    assert found.to_json()["sightings"][0]["findings"] == [dict(full.findings[0])]


async def test_a_merge_keeps_the_better_state_and_the_later_times(store: AnyStore) -> None:
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
    assert merged.attempts == 0 and merged.last_error is None

    failed = record(state=RetainedState.FAILED, at=T0 + 10)
    merged, _ = await store.upsert_retained(failed, seen("d-2", T0 + 60))  # a retried job
    assert merged.state is RetainedState.KEPT and merged.expires_at == T0 + 150
    assert merged.last_seen_at == T0 + 50
    assert merged.sighting_count == 2


async def test_concurrent_upserts_of_one_record(store: AnyStore) -> None:
    outcomes = await asyncio.gather(
        *(store.upsert_retained(record(), seen(f"d-{n}")) for n in range(8))
    )
    assert sorted(created for _, created in outcomes) == [False] * 7 + [True]
    found = await store.get_retained(record().id)
    assert found is not None and found.sighting_count == 8


async def test_sightings_without_a_delivery_are_all_kept(store: AnyStore) -> None:
    await store.upsert_retained(record(), seen(None))
    stored, _ = await store.upsert_retained(record(), seen(None))
    assert stored.sighting_count == 2


async def test_lookup_by_id_and_prefix(store: AnyStore) -> None:
    await store.upsert_retained(record("abc0000000000001"), seen())
    await store.upsert_retained(record("abd0000000000002", digest="e" * 64), seen())
    found = await store.get_retained("abd0000000000002")
    assert found is not None and found.digest == "e" * 64 and len(found.sightings) == 1
    with pytest.raises(AmbiguousId):
        await store.get_retained("ab")
    assert isinstance(AmbiguousId("x"), StoreError)
    assert await store.get_retained("ffffff") is None
    assert await store.get_retained("") is None
    one = await store.get_retained("abc000")
    assert one is not None and one.id == "abc0000000000001"


async def test_an_exact_id_wins_over_a_longer_one_it_prefixes(store: AnyStore) -> None:
    await store.upsert_retained(record("abc"), seen())
    await store.upsert_retained(record("abcd"), seen())
    found = await store.get_retained("abc")
    assert found is not None and found.id == "abc"


async def test_filters(store: AnyStore) -> None:
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
    assert await ids(commit=SHA_B[:7].upper()) == ["2"]
    assert await ids(since=T0 + 500) == ["2"]
    assert await ids(until=T0 + 500) == ["1", "3"]
    assert await ids(state=RetainedState.PENDING) == ["3"]
    assert await ids(digest="E" * 64) == ["2"]
    assert await ids(limit=1) == ["2"]
    assert await ids(limit=None) == ["2", "1", "3"]
    listed = await store.list_retained(RetainedFilter(digest="e" * 64))
    assert listed[0].sighting_count == 1 and listed[0].sightings == ()


async def test_due_update_and_delete(store: AnyStore) -> None:
    pending = dataclasses.replace(
        record("1" * 16, state=RetainedState.PENDING), next_attempt_at=T0 + 60
    )
    await store.upsert_retained(pending, seen())
    never_tried = record("4" * 16, digest="f" * 64, state=RetainedState.PENDING)
    await store.upsert_retained(never_tried, seen())
    await store.upsert_retained(record("2" * 16), seen())
    await store.upsert_retained(record("3" * 16, digest="e" * 64), seen())
    assert [r.id for r in await store.due_retained(T0)] == ["4" * 16]
    assert [r.id for r in await store.due_retained(T0 + 60)] == ["4" * 16, "1" * 16]
    await store.update_retained(
        "1" * 16,
        state=RetainedState.KEPT,
        attempts=2,
        next_attempt_at=None,
        last_error=None,
        spool_path=None,
    )
    updated = await store.get_retained("1" * 16)
    assert updated is not None and updated.state is RetainedState.KEPT and updated.attempts == 2
    await store.update_retained(
        "4" * 16,
        state=RetainedState.FAILED,
        attempts=3,
        next_attempt_at=None,
        last_error="the spool is gone",
        spool_path=None,
    )
    assert await store.due_retained(T0 + 60) == []
    assert await store.referenced_digests() == {"d" * 64, "e" * 64, "f" * 64}
    # two records share digest d: deleting one frees nothing, deleting both frees it
    assert await store.delete_retained(["1" * 16, "3" * 16, "4" * 16]) == {"e" * 64, "f" * 64}
    assert await store.delete_retained(["2" * 16, "9" * 16]) == {"d" * 64}
    assert await store.delete_retained([]) == set()
    assert await store.execute("SELECT count(*) FROM retained_sightings") == [(0,)]
    assert await store.referenced_digests() == set()


async def test_retention_audit_events_stay_append_only(store: AnyStore) -> None:
    await store.audit(None, "retention_gc", "deleted x", {"retained_id": "x"})
    with pytest.raises(StoreError, match="append-only"):
        await store.execute("DELETE FROM audit_events")
    with pytest.raises(StoreError, match="append-only"):
        await store.execute("UPDATE audit_events SET message = 'rewritten'")


# -- rescans shared by every worker -----------------------------------------------------------


async def test_a_rescan_recorded_is_shared_then_replaced(store: AnyStore) -> None:
    assert await store.recent_rescan("42:octo-org/octo-repo:" + SHA_A) is None
    first = {"head_sha": SHA_A, "summary": "1 error", "started_at": 1.5, "job_id": 3}
    await store.record_rescan("42:octo-org/octo-repo:" + SHA_A, first)
    assert await store.recent_rescan("42:octo-org/octo-repo:" + SHA_A) == first
    second = {**first, "summary": "no finding", "job_id": 4}
    await store.record_rescan("42:octo-org/octo-repo:" + SHA_A, second)
    assert await store.recent_rescan("42:octo-org/octo-repo:" + SHA_A) == second


async def test_rescans_older_than_a_day_are_forgotten(store: AnyStore, clock: FakeClock) -> None:
    await store.record_rescan("old", {"summary": "then"})
    clock.advance(86_400 + 1)
    await store.record_rescan("new", {"summary": "now"})
    assert await store.recent_rescan("old") is None
    assert await store.recent_rescan("new") == {"summary": "now"}


async def test_pending_jobs_counts_the_queue(store: AnyStore) -> None:
    assert await store.pending_jobs() == {JobState.QUEUED: 0, JobState.RUNNING: 0}
    await store.record_delivery(delivery(), [spec(SHA_A), spec(SHA_B), spec("c" * 40)])
    job = await claimed(store)
    await store.complete(job, JobState.DONE, "done")
    await claimed(store)
    assert await store.pending_jobs() == {JobState.QUEUED: 1, JobState.RUNNING: 1}


# -- scanned once: verdicts and check-run coverage (issue 15) ----------------------------------


def _verdict(key: str, at: float, *, retained_id: str | None = None) -> StoredVerdict:
    report = {
        "name": "npm-package",
        "path": "workflow run 1, artifact 2",
        "sha256": "ab" * 32,
        "size": 10,
        "files": 2,
        "findings": [
            {
                "rule": "sourcemap/embedded-sources",
                "severity": "error",
                "path": "npm-package!/cli.js.map",
                "line": None,
                "message": "sources",
            }
        ],
        "scanned": True,
    }
    return StoredVerdict(key=key, report=report, retained_id=retained_id, recorded_at=at)


async def test_a_verdict_is_shared_by_every_store_and_replaced(
    store: AnyStore, new_store: StoreFactory, clock: FakeClock
) -> None:
    assert isinstance(store, ScanLedger)
    assert await store.get_verdict("k1") is None
    first = _verdict("k1", clock(), retained_id="0123456789abcdef")
    await store.put_verdict(first)
    other = await new_store()
    assert await other.get_verdict("k1") == first
    second = _verdict("k1", clock() + 1)
    await other.put_verdict(second)
    assert await store.get_verdict("k1") == second
    assert await store.get_verdict("k2") is None


async def test_verdicts_unused_for_ninety_days_are_forgotten(
    store: AnyStore, clock: FakeClock
) -> None:
    await store.put_verdict(_verdict("old", clock()))
    clock.advance(91 * 86_400)
    await store.put_verdict(_verdict("new", clock()))
    assert await store.get_verdict("old") is None
    assert await store.get_verdict("new") is not None


async def test_coverage_is_per_commit_case_blind_and_replaced(
    store: AnyStore, new_store: StoreFactory, clock: FakeClock
) -> None:
    assert await store.get_coverage("Octo-Org/Octo-Repo", SHA_A) is None
    await store.put_coverage(CheckCoverage("Octo-Org/Octo-Repo", SHA_A, 11, "in-1", 7, clock()))
    other = await new_store()
    covered = await other.get_coverage("octo-org/octo-repo", SHA_A.upper())
    assert covered is not None
    assert (covered.check_run_id, covered.inputs, covered.job_id) == (11, "in-1", 7)
    assert await other.get_coverage("octo-org/octo-repo", SHA_B) is None
    await other.put_coverage(CheckCoverage("octo-org/octo-repo", SHA_A, 12, "in-2", 8, clock()))
    covered = await store.get_coverage("octo-org/octo-repo", SHA_A)
    assert covered is not None and (covered.check_run_id, covered.inputs) == (12, "in-2")
    clock.advance(91 * 86_400)
    await store.put_coverage(CheckCoverage("octo-org/octo-repo", SHA_B, 13, "in-3", 9, clock()))
    assert await store.get_coverage("octo-org/octo-repo", SHA_A) is None


# -- the recovery sweep's ledger (issue 14) -----------------------------------------------------


async def test_recorded_deliveries_names_only_those_recorded(store: AnyStore) -> None:
    assert isinstance(store, DeliveryLedger)
    await store.record_delivery(delivery("guid-a"), [spec()])
    await store.record_delivery(delivery("guid-b"), [])  # recorded, without a job
    assert await store.recorded_deliveries(["guid-a", "guid-b", "guid-c"]) == {
        "guid-a",
        "guid-b",
    }
    assert await store.recorded_deliveries([]) == set()
    many = [f"guid-{n}" for n in range(1200)]  # more than one statement's worth on SQLite
    assert await store.recorded_deliveries([*many, "guid-a"]) == {"guid-a"}


async def test_the_high_water_mark_survives_a_reopen_and_never_moves_back(
    new_store: StoreFactory,
) -> None:
    first = await new_store()
    assert await first.recovery_mark() is None
    await first.set_recovery_mark(T0 + 100)
    await first.set_recovery_mark(T0 + 50)  # an older sweep finishing late
    await first.close()
    second = await new_store()
    assert await second.recovery_mark() == T0 + 100
    await second.set_recovery_mark(T0 + 200)
    assert await second.recovery_mark() == T0 + 200


async def test_redelivery_requests_are_counted_and_forgotten_after_four_days(
    store: AnyStore, clock: FakeClock
) -> None:
    assert await store.redeliveries(["g1"]) == {}
    first = await store.note_redeliveries(["g1", "g2", "g1"])  # each GUID counted once
    clock.advance(60)
    second = await store.note_redeliveries(["g1"])
    assert (first["g1"].requests, first["g2"].requests, second["g1"].requests) == (1, 1, 2)
    assert second["g1"].last_requested_at == first["g1"].last_requested_at + 60
    assert await store.note_redeliveries([]) == {}
    found = await store.redeliveries(["g1", "g2", "g3"])
    assert {guid: r.requests for guid, r in found.items()} == {"g1": 2, "g2": 1}
    clock.advance(4 * 86_400 + 1)
    await store.note_redeliveries(["g3"])  # writing prunes what is older than 4 days
    assert set(await store.redeliveries(["g1", "g2", "g3"])) == {"g3"}


async def test_one_sweeper_at_a_time(new_store: StoreFactory, clock: FakeClock) -> None:
    one, other = await new_store(), await new_store()
    async with one.sweep_lock("one", 600) as held:
        assert held
        async with other.sweep_lock("other", 600) as also:
            assert not also
    async with other.sweep_lock("other", 600) as held_after:
        assert held_after  # released at the end of the first sweep


async def test_a_sweep_lock_left_by_a_dead_process_is_not_held_for_ever(
    new_store: StoreFactory, postgres_url: str | None, clock: FakeClock
) -> None:
    """PostgreSQL releases the advisory lock with the connection; SQLite's lease expires."""
    one, other = await new_store(), await new_store()
    lock = one.sweep_lock("one", 600)
    assert await lock.__aenter__()
    if postgres_url is not None:
        # The server ends the holder's session, as when its process is killed (and waits
        # up to 10 s for it to be gone).
        await other.execute(
            "SELECT pg_terminate_backend(pid, 10000) FROM pg_locks WHERE locktype = 'advisory'"
            " AND pid <> pg_backend_pid() AND database = (SELECT oid FROM pg_database"
            " WHERE datname = current_database())"
        )
    else:
        clock.advance(601)
    async with other.sweep_lock("other", 600) as held:
        assert held
    await lock.__aexit__(None, None, None)  # the dead session's connection is dropped
