"""The PostgreSQL job queue (procrastinate), in one process: deferral, runs, retries, locks,
failures, stalled workers, shutdown. Runs against RELEASE_GUARD_TEST_POSTGRES_URL, each test
in a schema of its own (tests/pgtest.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import croniter
import procrastinate
import pytest
import pytest_asyncio

from bot.app.job_run import WorkerOptions
from bot.app.pgqueue import (
    QUEUE,
    RETENTION_GC,
    RUN_JOB,
    PgQueue,
    PgWorker,
    Requeue,
    install_queue_schema,
    recovery_cron,
)
from bot.commit_locks import CommitLocks, commit_key
from bot.events import JobKind
from bot.jobs import JobContext
from bot.ops.metrics import Metrics
from bot.retention import build_retainer
from bot.settings import Settings
from bot.store.base import Job, JobState, StoreError
from bot.store.pg_commit_locks import PostgresCommitLocks
from bot.store.postgres import PostgresStore
from tests.apphelpers import SHA_A, SHA_B, RecordingHandler, delivery, retry, spec

pytestmark = pytest.mark.asyncio

FAST = WorkerOptions(
    concurrency=2,
    poll_interval=0.05,
    max_attempts=3,
    backoff_base=0.01,
    backoff_cap=0.01,
    drain_timeout=0.5,
    stalled_after=3,
)


@dataclass
class Queue:
    queue: PgQueue
    store: PostgresStore


@pytest_asyncio.fixture
async def pg(pg_url: str) -> AsyncIterator[Queue]:
    queue = PgQueue(FAST)
    store = PostgresStore(pg_url, on_queued=queue.defer)
    await store.open()
    await queue.install_schema(store)
    try:
        yield Queue(queue, store)
    finally:
        await store.close()


async def until(predicate: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    """Poll `predicate` until it holds (a bound on waiting, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


async def procrastinate_jobs(store: PostgresStore) -> list[tuple[int, str, str | None, int]]:
    rows = await store.execute(
        "SELECT id, status::text, lock, (args->>'job_id')::int FROM procrastinate_jobs"
        " WHERE task_name = %s ORDER BY id",
        (RUN_JOB,),
    )
    return [(int(r[0]), str(r[1]), r[2], int(r[3])) for r in rows]


async def stages(store: PostgresStore, job_id: int) -> list[str]:
    return [event.stage for event in await store.audit_trail(job_id)]


async def test_a_delivery_defers_one_locked_procrastinate_job_in_its_transaction(
    pg: Queue,
) -> None:
    assert await pg.store.record_delivery(delivery(), [spec(sha=SHA_A)])
    [job] = await pg.store.list_jobs()
    [(_, status, lock, job_id)] = await procrastinate_jobs(pg.store)
    assert (status, job_id) == ("todo", job.id)
    assert lock == job.lock_key == f"{job.repository.lower()}@{SHA_A}"
    # The same work asked again folds into the job: no second procrastinate job.
    assert await pg.store.record_delivery(delivery(), [spec(sha=SHA_A)])
    assert len(await procrastinate_jobs(pg.store)) == 1


async def test_the_schema_installs_once_even_when_asked_concurrently(pg: Queue) -> None:
    async def install() -> bool:
        async with pg.store.pool.connection() as conn:
            return await install_queue_schema(conn)

    assert await asyncio.gather(install(), install(), install()) == [False, False, False]


async def test_a_worker_runs_the_job_to_done_once(pg: Queue) -> None:
    handler = RecordingHandler()
    await pg.store.record_delivery(delivery(), [spec(sha=SHA_A)])
    await PgWorker(pg.queue, pg.store, handler).run(wait=False)
    [job] = await pg.store.list_jobs()
    assert (job.state, job.attempts, job.result_summary) == (
        JobState.DONE,
        1,
        "scanned: no finding",
    )
    assert handler.runs == [(job.id, 1)]
    assert await stages(pg.store, job.id) == ["received", "queued", "started", "scanning", "done"]
    # procrastinate forgets its successful jobs; the job's row and trail stay.
    assert await procrastinate_jobs(pg.store) == []


async def test_retry_later_is_procrastinates_retry_then_the_job_completes(pg: Queue) -> None:
    handler = RecordingHandler(script=[retry("GitHub answered 502", delay=0.0)])
    await pg.store.record_delivery(delivery(), [spec(sha=SHA_A)])
    worker = PgWorker(pg.queue, pg.store, handler)
    await worker.run(wait=False)
    [job] = await pg.store.list_jobs()
    if job.state is not JobState.DONE:  # the retry became due after the first pass
        await worker.run(wait=False)
        [job] = await pg.store.list_jobs()
    assert job.state is JobState.DONE
    assert [attempt for _, attempt in handler.runs] == [1, 2]
    trail = await stages(pg.store, job.id)
    assert trail.count("started") == 2 and "retry" in " ".join(trail)


async def test_the_last_attempt_gives_up_and_fails_the_job(pg: Queue) -> None:
    handler = RecordingHandler(script=[retry(delay=0.0)] * 3)
    await pg.store.record_delivery(delivery(), [spec(sha=SHA_A)])
    worker = PgWorker(pg.queue, pg.store, handler)
    for _ in range(5):
        await worker.run(wait=False)
        [job] = await pg.store.list_jobs()
        if job.state is JobState.FAILED:
            break
    assert job.state is JobState.FAILED
    assert job.attempts == 3
    assert handler.given_up and "gave up after 3 attempts" in handler.given_up[0][1]


async def test_an_exception_fails_the_job_explicitly(pg: Queue) -> None:
    handler = RecordingHandler(script=[ValueError("the artifact is not a zip")])
    await pg.store.record_delivery(delivery(), [spec(sha=SHA_A)])
    await PgWorker(pg.queue, pg.store, handler).run(wait=False)
    [job] = await pg.store.list_jobs()
    assert job.state is JobState.FAILED
    assert job.result_summary == "ValueError: the artifact is not a zip"


class Overlap:
    """A handler that records how many of its runs overlap, and blocks until released."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self.done = 0
        self.release = asyncio.Event()

    async def run(self, job: Job, ctx: JobContext) -> str | None:
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.release.wait()
        finally:
            self.running -= 1
        self.done += 1
        return "ok"

    async def give_up(self, job: Job, ctx: JobContext, reason: str) -> None:
        raise AssertionError(reason)


async def test_two_jobs_for_one_commit_never_run_at_once(pg: Queue) -> None:
    # Different work (a check and a workflow run) for the same repository and commit.
    await pg.store.record_delivery(delivery(), [spec(sha=SHA_A, key="check:one")])
    await pg.store.record_delivery(delivery(), [spec(sha=SHA_A, key="workflow_run:two")])
    await pg.store.record_delivery(delivery(), [spec(sha="b" * 40, key="check:other")])
    handler = Overlap()
    worker = PgWorker(pg.queue, pg.store, handler)  # concurrency 2
    task = asyncio.create_task(worker.run())
    try:
        # Two run at once: one of the commit's jobs, and the other commit's.
        await until(lambda: _value(handler.running == 2))
        statuses = [status for _, status, _, _ in await procrastinate_jobs(pg.store)]
        assert sorted(statuses) == ["doing", "doing", "todo"]
        handler.release.set()
        await until(lambda: _value(handler.done == 3))
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)
    assert handler.most == 2  # never the commit's two jobs together


async def _value(value: bool) -> bool:
    return value


async def test_a_stalled_workers_job_is_queued_again_and_audited(pg: Queue) -> None:
    await pg.store.record_delivery(delivery(), [spec(sha=SHA_A)])
    [job] = await pg.store.list_jobs()
    app = pg.queue.app
    await app.open_async(pool=pg.store.pool)
    try:
        manager = app.job_manager
        # A worker that took the job, then went silent (its heartbeat is an hour old).
        dead = await manager.register_worker()
        assert await manager.fetch_job(queues=[QUEUE], worker_id=dead) is not None
        await pg.store.start(job.id, "host/1/dead/worker", 60)
        await pg.store.execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour'"
            " WHERE id = %s",
            (dead,),
        )
        handler = RecordingHandler()
        worker = PgWorker(pg.queue, pg.store, handler)
        assert await worker.recover_stalled() == 1
        assert await worker.recover_stalled() == 0  # nothing stalled any more
    finally:
        await app.close_async()
    assert [status for _, status, _, _ in await procrastinate_jobs(pg.store)] == ["todo"]
    assert "requeued" in await stages(pg.store, job.id)
    await worker.run(wait=False)
    [finished] = await pg.store.list_jobs()
    assert (finished.state, finished.attempts) == (JobState.DONE, 2)
    assert handler.runs == [(job.id, 2)]


async def test_stopping_mid_job_hands_it_back_to_the_queue(pg: Queue) -> None:
    handler = RecordingHandler(release=asyncio.Event())  # never released: the run blocks
    await pg.store.record_delivery(delivery(), [spec(sha=SHA_A)])
    worker = PgWorker(pg.queue, pg.store, handler)  # drain_timeout 0.5 s
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(handler.started.wait(), 20)
    worker.stop()
    await asyncio.wait_for(task, 20)
    [job] = await pg.store.list_jobs()
    assert job.state is JobState.QUEUED
    assert [status for _, status, _, _ in await procrastinate_jobs(pg.store)] == ["todo"]
    # The next worker finishes it.
    handler2 = RecordingHandler()
    await PgWorker(pg.queue, pg.store, handler2).run(wait=False)
    [job] = await pg.store.list_jobs()
    assert (job.state, handler2.runs) == (JobState.DONE, [(job.id, 2)])


async def test_a_finished_job_is_not_run_again(pg: Queue) -> None:
    handler = RecordingHandler()
    await pg.store.record_delivery(delivery(), [spec(sha=SHA_A)])
    worker = PgWorker(pg.queue, pg.store, handler)
    await worker.run(wait=False)
    [job] = await pg.store.list_jobs()
    # A duplicate queue entry for the finished job (as after a crash between the job's end
    # and procrastinate's): it runs nothing.
    assert await worker.run_job(job.id) == f"job {job.id} is finished already"
    assert len(handler.runs) == 1


async def test_a_dead_local_workers_job_is_taken_back_at_once_a_remote_ones_is_not(
    pg: Queue,
) -> None:
    """A worker on this machine whose process is gone is provably dead: no stall timeout.
    One on another machine (or alive) is left to the heartbeat (issue 14)."""
    await pg.store.record_delivery(delivery(), [spec(sha=SHA_A)])
    await pg.store.record_delivery(delivery(), [spec(sha=SHA_B)])
    local, remote = sorted(await pg.store.list_jobs(), key=lambda j: j.id)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a pid that no longer runs
    app = pg.queue.app
    await app.open_async(pool=pg.store.pool)
    try:
        manager = app.job_manager
        dead = await manager.register_worker()  # its heartbeat is fresh: not stalled yet
        for _ in range(2):
            assert await manager.fetch_job(queues=[QUEUE], worker_id=dead) is not None
        await pg.store.start(local.id, f"{socket.gethostname()}/{gone.pid}/tok/worker", 60)
        await pg.store.start(remote.id, f"elsewhere.example/{gone.pid}/tok/worker", 60)
        worker = PgWorker(pg.queue, pg.store, RecordingHandler())
        assert await worker.recover_dead_local() == 1
        assert await worker.recover_dead_local() == 0
        assert await worker.recover_stalled() == 0  # the remote one waits for the timeout
    finally:
        await app.close_async()
    by_job = {job_id: status for _, status, _, job_id in await procrastinate_jobs(pg.store)}
    assert by_job == {local.id: "todo", remote.id: "doing"}
    assert "requeued" in await stages(pg.store, local.id)
    assert "requeued" not in await stages(pg.store, remote.id)


@pytest.mark.parametrize(("stalled_after", "period"), [(3, 1), (30, 10), (300, 30)])
async def test_stalled_jobs_are_looked_for_about_three_times_per_timeout(
    stalled_after: float, period: int
) -> None:
    """The schedule procrastinate reads (croniter: seconds are the sixth field) fires every
    `period` seconds, all day: not every second of one minute in ten (issue 14)."""
    cron = croniter.croniter(recovery_cron(stalled_after), 1_700_000_000 - 1_700_000_000 % 3600)
    fires = [cron.get_next(float) for _ in range(3 * 3600 // period)]
    gaps = {round(later - earlier) for earlier, later in itertools.pairwise(fires)}
    assert gaps == {period}


async def test_the_queue_registers_its_tasks() -> None:
    queue = PgQueue(FAST)
    assert {"release_guard.run_job", "release_guard.recover_stalled"} <= set(queue.app.tasks)
    assert isinstance(queue.app, procrastinate.App)


async def test_a_job_the_queue_lost_is_queued_again(pg: Queue) -> None:
    await pg.store.record_delivery(delivery(), [spec(sha=SHA_A)])
    [job] = await pg.store.list_jobs()
    handler = RecordingHandler()
    worker = PgWorker(pg.queue, pg.store, handler)
    assert await worker.resubmit_orphans() == 0  # queued and in the queue: nothing to do
    await pg.store.execute("DELETE FROM procrastinate_jobs")  # an operator's mistake
    assert await worker.resubmit_orphans() == 0  # too recent to be called lost
    assert await worker.resubmit_orphans(older_than=-1) == 1
    [(_, status, lock, job_id)] = await procrastinate_jobs(pg.store)
    assert (status, lock, job_id) == ("todo", job.lock_key, job.id)
    assert "requeued" in await stages(pg.store, job.id)
    await worker.run(wait=False)
    assert (await pg.store.list_jobs())[0].state is JobState.DONE


async def test_a_database_error_at_start_is_retried_not_lost(
    pg: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = PgWorker(pg.queue, pg.store, RecordingHandler())

    async def unreachable(*args: object) -> None:
        raise StoreError("the database went away")

    monkeypatch.setattr(pg.store, "start", unreachable)
    with pytest.raises(Requeue):
        await worker.run_job(1)


async def test_retention_gc_is_a_task_any_worker_runs(pg: Queue, tmp_path: Path) -> None:
    assert RETENTION_GC in pg.queue.app.tasks
    worker = PgWorker(pg.queue, pg.store, RecordingHandler())
    assert await worker.retention_gc() == "no artifact store on this worker"
    settings = Settings.for_data_dir(tmp_path)
    metrics = Metrics()
    worker = PgWorker(
        pg.queue,
        pg.store,
        RecordingHandler(),
        retainer=build_retainer(settings, pg.store, environ={}),
        metrics=metrics,
    )
    assert await worker.retention_gc() == "0 item(s) deleted"


async def test_a_queue_worker_stopped_by_a_database_outage_is_restarted(
    pg: Queue, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    manager = pg.queue.app.job_manager
    original = manager.update_heartbeat
    failures = []

    async def heartbeat_fails_once(worker_id: int) -> None:
        if not failures:
            failures.append(worker_id)
            raise procrastinate.exceptions.ConnectorException("server closed the connection")
        await original(worker_id)

    monkeypatch.setattr(manager, "update_heartbeat", heartbeat_fails_once)
    handler = RecordingHandler()
    worker = PgWorker(pg.queue, pg.store, handler)
    task = asyncio.create_task(worker.run())
    try:
        await until(lambda: _value(bool(failures)))
        # procrastinate stopped its worker on the failed heartbeat; ours starts it again.
        await pg.store.record_delivery(delivery(), [spec(sha=SHA_A)])
        await until(lambda: _value(len(handler.runs) == 1))
        assert not task.done()
    finally:
        worker.stop()
        await asyncio.wait_for(task, 20)
    [job] = await pg.store.list_jobs()
    assert job.state is JobState.DONE
    assert any("restarting it in 1 s" in r.getMessage() for r in caplog.records)


class CommitWork:
    """A handler: a check blocks until released; a command (no commit in the job) takes the
    commit's lock itself, as a rescan does once it knows the pull request's head."""

    def __init__(self, locks: CommitLocks) -> None:
        self.locks = locks
        self.order: list[str] = []
        self.check_started = asyncio.Event()
        self.release = asyncio.Event()

    async def run(self, job: Job, ctx: JobContext) -> str | None:
        if job.head_sha:
            self.order.append("check in")
            self.check_started.set()
            await self.release.wait()
            self.order.append("check out")
        else:
            async with self.locks.hold(commit_key(job.repository, SHA_A)):
                self.order.append("command in")
        return "ok"

    async def give_up(self, job: Job, ctx: JobContext, reason: str) -> None:
        raise AssertionError(reason)


async def test_a_command_that_learns_its_commit_waits_for_the_check_running_on_it(
    pg: Queue,
) -> None:
    locks = PostgresCommitLocks(pg.store.pool, poll=0.05)
    handler = CommitWork(locks)
    await pg.store.record_delivery(delivery(), [spec(sha=SHA_A)])
    command = dataclasses.replace(
        spec(sha=SHA_A, kind=JobKind.COMMENT_COMMAND, key="comment:1"),
        head_sha=None,
        details={"issue_number": 7},
    )
    worker = PgWorker(pg.queue, pg.store, handler, locks=locks)  # concurrency 2
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(handler.check_started.wait(), 20)
        await pg.store.record_delivery(delivery(), [command])

        # The command runs (its queue lock is its pull request's) but waits for the commit.
        async def command_running() -> bool:
            jobs = await pg.store.list_jobs(state=JobState.RUNNING)
            return any(job.kind is JobKind.COMMENT_COMMAND for job in jobs)

        await until(command_running)
        await asyncio.sleep(0.5)
        assert handler.order == ["check in"]
        handler.release.set()
        await until(lambda: _value(len(handler.order) == 3))
    finally:
        worker.stop()
        await asyncio.wait_for(task, 20)
    assert handler.order == ["check in", "check out", "command in"]
    assert all(job.state is JobState.DONE for job in await pg.store.list_jobs())
