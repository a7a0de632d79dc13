"""The worker: runs jobs to an end, retries with backoff, gives up explicitly, drains, recovers."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from bot.app.worker import Worker, WorkerOptions, backoff, is_dead_local_owner, worker_identity
from bot.jobs import RetryLater
from bot.ops.logs import forget_secrets, register_secret
from bot.store import Job, JobState, SqliteStore
from tests.apphelpers import RecordingHandler, delivery, retry, spec, wait_until

FAST = WorkerOptions(concurrency=2, lease=5, poll_interval=0.05, max_attempts=3, drain_timeout=5)


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "rg.sqlite3")
    await store.open()
    yield store
    await store.close()


async def queue(store: SqliteStore, count: int = 1) -> list[Job]:
    await store.record_delivery(delivery(), [spec(f"{n:040x}") for n in range(count)])
    return list(reversed(await store.list_jobs(count)))


async def finished(store: SqliteStore, job_id: int) -> bool:
    job = await store.get_job(job_id)
    return job is not None and job.state in (JobState.DONE, JobState.FAILED)


async def run_until_finished(
    store: SqliteStore, handler: RecordingHandler, options: WorkerOptions = FAST, jobs: int = 1
) -> list[Job]:
    queued = await queue(store, jobs)
    worker = Worker(store, handler, options)
    task = asyncio.create_task(worker.run())
    for job in queued:
        await wait_until(lambda job=job: finished(store, job.id))
    worker.stop()
    await task
    return [j for j in [await store.get_job(job.id) for job in queued] if j is not None]


async def stages(store: SqliteStore, job_id: int) -> list[str]:
    return [event.stage for event in await store.audit_trail(job_id)]


@pytest.mark.asyncio
async def test_a_job_runs_to_done_with_its_trail(store: SqliteStore) -> None:
    handler = RecordingHandler(script=["2 artifacts, no finding"], check_run=555)
    (job,) = await run_until_finished(store, handler)
    assert job.state is JobState.DONE
    assert job.result_summary == "2 artifacts, no finding"
    assert job.check_run_id == 555
    assert await stages(store, job.id) == [
        "received",
        "queued",
        "started",
        "scanning",
        "check_run",
        "done",
    ]
    assert handler.given_up == []


@pytest.mark.asyncio
async def test_retry_later_then_success(store: SqliteStore) -> None:
    handler = RecordingHandler(script=[retry(), retry(), "ok"])
    (job,) = await run_until_finished(store, handler)
    assert job.state is JobState.DONE and job.attempts == 3
    assert [attempt for _, attempt in handler.runs] == [1, 2, 3]
    assert (await stages(store, job.id)).count("retry") == 2


@pytest.mark.asyncio
async def test_retries_are_bounded_then_give_up(store: SqliteStore) -> None:
    handler = RecordingHandler(script=[retry("rate limited")] * 5)
    (job,) = await run_until_finished(store, handler)
    assert job.state is JobState.FAILED and job.attempts == FAST.max_attempts
    assert handler.given_up == [(job.id, "gave up after 3 attempts: rate limited")]
    trail = await store.audit_trail(job.id)
    assert (trail[-1].stage, trail[-1].message) == (
        "failed",
        "gave up after 3 attempts: rate limited",
    )


@pytest.mark.asyncio
async def test_an_unexpected_error_gives_up_at_once(store: SqliteStore) -> None:
    handler = RecordingHandler(script=[KeyError("artifact_id")])
    (job,) = await run_until_finished(store, handler)
    assert job.state is JobState.FAILED and job.attempts == 1
    assert handler.given_up == [(job.id, "KeyError: 'artifact_id'")]
    assert job.result_summary == "KeyError: 'artifact_id'"


@pytest.mark.asyncio
async def test_a_failing_give_up_still_fails_the_job(store: SqliteStore) -> None:
    handler = RecordingHandler(
        script=[ValueError("bad")], give_up_error=RuntimeError("GitHub down")
    )
    (job,) = await run_until_finished(store, handler)
    assert job.state is JobState.FAILED
    trail = await stages(store, job.id)
    assert trail[-2:] == ["give_up_failed", "failed"]


@pytest.mark.asyncio
async def test_secrets_never_reach_the_audit_trail(store: SqliteStore) -> None:
    register_secret("ghs_supersecrettoken")
    try:
        handler = RecordingHandler(script=[RuntimeError("401 for ghs_supersecrettoken")])
        (job,) = await run_until_finished(store, handler)
    finally:
        forget_secrets()
    assert job.result_summary == "RuntimeError: 401 for [secret]"
    assert all("ghs_" not in e.message for e in await store.audit_trail(job.id))


@pytest.mark.asyncio
async def test_context_tells_the_attempt(store: SqliteStore) -> None:
    seen: list[tuple[int, bool, int | None]] = []

    class Handler(RecordingHandler):
        async def run(self, job: Job, ctx: object) -> str | None:
            seen.append((ctx.attempt, ctx.last_attempt, ctx.check_run_id))  # type: ignore[attr-defined]
            if ctx.attempt == 1:  # type: ignore[attr-defined]
                await ctx.set_check_run(77)  # type: ignore[attr-defined]
                raise RetryLater("again", delay=0)
            return "ok"

    await run_until_finished(store, Handler(), WorkerOptions(poll_interval=0.05, max_attempts=2))
    assert seen == [(1, False, None), (2, True, 77)]


@pytest.mark.asyncio
async def test_concurrency_is_bounded(store: SqliteStore) -> None:
    active = 0
    peak = 0

    class Slow(RecordingHandler):
        async def run(self, job: Job, ctx: object) -> str | None:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.05)
            active -= 1
            return "ok"

    jobs = await run_until_finished(store, Slow(), FAST, jobs=6)
    assert all(job.state is JobState.DONE for job in jobs)
    assert peak == FAST.concurrency


@pytest.mark.asyncio
async def test_notify_wakes_an_idle_worker(store: SqliteStore) -> None:
    handler = RecordingHandler()
    worker = Worker(store, handler, WorkerOptions(poll_interval=30))
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.05)  # idle, waiting up to 30 s
    (job,) = await queue(store)
    worker.notify()
    await wait_until(lambda: finished(store, job.id), timeout=5)
    worker.stop()
    await task


@pytest.mark.asyncio
async def test_stop_lets_running_jobs_finish(store: SqliteStore) -> None:
    release = asyncio.Event()
    handler = RecordingHandler(release=release)
    (job,) = await queue(store)
    worker = Worker(store, handler, FAST)
    task = asyncio.create_task(worker.run())
    await handler.started.wait()
    worker.stop()
    await asyncio.sleep(0.1)
    assert not task.done()  # draining: the job is still running
    release.set()
    await asyncio.wait_for(task, 5)
    done = await store.get_job(job.id)
    assert done is not None and done.state is JobState.DONE


@pytest.mark.asyncio
async def test_drain_timeout_hands_the_job_back(store: SqliteStore) -> None:
    handler = RecordingHandler(release=asyncio.Event())  # never released
    (job,) = await queue(store)
    options = WorkerOptions(poll_interval=0.05, drain_timeout=0.2)
    worker = Worker(store, handler, options)
    task = asyncio.create_task(worker.run())
    await handler.started.wait()
    worker.stop()
    await asyncio.wait_for(task, 5)
    again = await store.get_job(job.id)
    assert again is not None and again.state is JobState.QUEUED and again.lease_owner is None
    trail = await store.audit_trail(job.id)
    assert trail[-1].stage == "retry" and "interrupted" in trail[-1].message


@pytest.mark.asyncio
async def test_a_live_lease_is_renewed(store: SqliteStore) -> None:
    release = asyncio.Event()
    handler = RecordingHandler(release=release)
    (job,) = await queue(store)
    worker = Worker(store, handler, WorkerOptions(lease=1.0, poll_interval=0.05))
    task = asyncio.create_task(worker.run())
    await handler.started.wait()
    await asyncio.sleep(2.2)  # past two leases: renewals keep it
    assert await store.claim("thief", 10) is None
    release.set()
    await wait_until(lambda: finished(store, job.id))
    worker.stop()
    await task
    assert (await store.get_job(job.id)).attempts == 1  # type: ignore[union-attr]


@pytest.mark.asyncio
async def test_a_lost_lease_stops_the_run(store: SqliteStore) -> None:
    handler = RecordingHandler(release=asyncio.Event())
    (job,) = await queue(store)
    worker = Worker(store, handler, WorkerOptions(lease=0.3, poll_interval=0.05))
    task = asyncio.create_task(worker.run())
    await handler.started.wait()
    await store.reclaim([worker.worker_id], "test: taken away")
    stolen = await store.claim("other", 30)
    assert stolen is not None and stolen.id == job.id
    await wait_until(lambda: worker.running == 0, timeout=5)
    worker.stop()
    await task
    still = await store.get_job(job.id)
    assert still is not None and still.lease_owner == "other"  # not handed back by the loser


@pytest.mark.asyncio
async def test_a_job_that_keeps_killing_its_process_is_failed(store: SqliteStore) -> None:
    (job,) = await queue(store)
    for n in range(FAST.max_attempts):  # three claims whose processes died
        claimed = await store.claim(f"dead-{n}", 30)
        assert claimed is not None
        await store.reclaim([f"dead-{n}"], "died")
    handler = RecordingHandler()
    (failed,) = await run_until_finished_existing(store, handler, job.id)
    assert failed.state is JobState.FAILED
    assert handler.runs == []
    assert handler.given_up == [(job.id, "gave up: started 3 times and never finished")]


async def run_until_finished_existing(
    store: SqliteStore, handler: RecordingHandler, job_id: int
) -> list[Job]:
    worker = Worker(store, handler, FAST)
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: finished(store, job_id))
    worker.stop()
    await task
    job = await store.get_job(job_id)
    assert job is not None
    return [job]


@pytest.mark.asyncio
async def test_recover_requeues_jobs_of_dead_local_processes(store: SqliteStore) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    dead_owner = f"{host}/{gone.pid}/feedbeef/worker"
    live_owner = f"{host}/{os.getppid()}/feedbeef/worker"
    remote_owner = f"another-host.example/{gone.pid}/feedbeef/worker"
    jobs = await queue(store, 3)
    for owner in (dead_owner, live_owner, remote_owner):
        assert await store.claim(owner, 300) is not None
    worker = Worker(store, RecordingHandler(), FAST)
    assert await worker.recover() == 1
    states = {job.lease_owner: job.state for job in await store.list_jobs()}
    assert states == {
        None: JobState.QUEUED,
        live_owner: JobState.RUNNING,
        remote_owner: JobState.RUNNING,
    }
    trail = await store.audit_trail(jobs[0].id)
    assert trail[-1].stage == "reclaimed" and dead_owner in trail[-1].message


def test_owner_liveness() -> None:
    me = worker_identity()
    assert not is_dead_local_owner(me)
    host, pid, _, name = me.split("/")
    assert is_dead_local_owner(f"{host}/{pid}/0000aaaa/{name}")  # an earlier process, same pid
    assert not is_dead_local_owner("not-an-owner")
    assert not is_dead_local_owner(f"{host}/{os.getppid()}/x/worker")


def test_backoff_grows_with_jitter_and_a_cap() -> None:
    options = WorkerOptions(backoff_base=10, backoff_cap=100)
    rng = random.Random(7)
    first = [backoff(1, options, rng) for _ in range(50)]
    assert all(5 <= d <= 10 for d in first) and len(set(first)) > 1
    assert all(10 <= backoff(2, options, rng) <= 20 for _ in range(50))
    assert all(50 <= backoff(12, options, rng) <= 100 for _ in range(50))


@pytest.mark.parametrize(
    "bad",
    [{"concurrency": 0}, {"max_attempts": 0}, {"lease": 0}, {"poll_interval": -1}],
)
def test_options_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WorkerOptions(**bad)  # type: ignore[arg-type]
