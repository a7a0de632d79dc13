"""The scale-out job queue: procrastinate, on the PostgreSQL store's own connection pool.

With `DATABASE_URL=postgresql://…` the store (`bot.store.postgres`) keeps deliveries, jobs,
the audit trail and the retention index, and this module hands jobs to workers through
procrastinate (https://procrastinate.readthedocs.io), a PostgreSQL task queue:

- **Queueing.** `defer` is the store's `on_queued` hook: it runs inside the transaction that
  records the delivery, so the delivery, the job row and its procrastinate job commit
  together; LISTEN/NOTIFY wakes a worker at once.
- **One run per commit at a time.** Each procrastinate job carries `lock=Job.lock_key`
  (repository and commit): procrastinate never runs two jobs with the same lock at once.
  Bursts are folded before that, by the store: a delivery asking for work already queued or
  running is recorded on that job instead of queueing another.
- **Retries.** A `RetryLater` becomes procrastinate's retry, due when the handler asked (a
  rate limit's reset) or after our backoff; the job's own row says `queued` meanwhile.
- **Dead workers.** Every worker sends a heartbeat every third of `stalled_after`. A periodic
  task, run by whichever worker takes it, queues again the running jobs of workers silent for
  longer: a job whose worker was killed runs again within about `stalled_after` plus a
  heartbeat, plus the task's period. The job row's attempt count bounds how often that
  happens, and completion is recorded once (`Store.complete` is conditional on the run).
- **Retention gc** is a periodic task too, run by one worker per period.

The web process only ever calls `defer`; `PgWorker` is the worker side.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import random
import time
from typing import Any, Final

import procrastinate
import psycopg
from procrastinate import exceptions as procrastinate_errors
from procrastinate.retry import BaseRetryStrategy, RetryDecision
from procrastinate.schema import SchemaManager

from bot.app.job_run import JobRun, WorkerOptions, worker_identity
from bot.app.worker import is_dead_local_owner
from bot.commit_locks import CommitLocks
from bot.jobs import JobHandler
from bot.ops.logs import mask_secrets
from bot.ops.metrics import Metrics
from bot.retention import Retainer
from bot.retention.maintenance import collect_and_report
from bot.store.base import Job, JobState, StoreError
from bot.store.pg_schema import MIGRATION_LOCK_KEY
from bot.store.postgres import PostgresStore

log = logging.getLogger(__name__)

QUEUE: Final = "release-guard"
RUN_JOB: Final = "release_guard.run_job"
RECOVER_STALLED: Final = "release_guard.recover_stalled"
RETENTION_GC: Final = "release_guard.retention_gc"
GC_CRON: Final = "17 * * * *"  # hourly, as the embedded worker's gc
RESTART_MIN: Final = 1.0  # seconds before restarting a worker procrastinate stopped...
RESTART_MAX: Final = 60.0  # ...doubling up to this
ORPHAN_GRACE: Final = 600.0  # seconds a job waits without a queue entry before it gets one

_PERIODS: Final = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)  # cron seconds steps that divide 60


class Requeue(Exception):
    """Raised out of a task to have procrastinate run it again in `delay` seconds."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"retry in {delay:.1f} s")
        self.delay = delay


class _RetryAsAsked(BaseRetryStrategy):
    """Retry what the job run asked to retry, and what a shutdown interrupted; nothing else.

    Every other failure has already been recorded as the job's outcome (`give_up`), so
    procrastinate only has to mark its own job failed.
    """

    def get_retry_decision(
        self, *, exception: BaseException, job: procrastinate.jobs.Job
    ) -> RetryDecision | None:
        if isinstance(exception, Requeue):
            return RetryDecision(retry_at=_utcnow() + datetime.timedelta(seconds=exception.delay))
        if isinstance(exception, asyncio.CancelledError | procrastinate_errors.JobAborted):
            return RetryDecision(retry_at=_utcnow())
        return None


def recovery_cron(stalled_after: float) -> str:
    """A cron (with seconds) that looks for stalled jobs about three times per timeout.

    procrastinate reads its crons with croniter, where the seconds are the *sixth* field
    (croniter's `second_at_beginning` is False by default): a leading `*/10` would mean every
    tenth minute, and there every second, leaving a killed worker's job waiting up to ten
    minutes (issue 14).
    """
    wanted = max(1.0, stalled_after / 3)
    step = max(p for p in _PERIODS if p <= wanted)
    return f"* * * * * */{step}"


async def install_queue_schema(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Install procrastinate's schema unless it is there; return whether it was installed.

    Taken under the same advisory lock as the store's migrations, so processes starting at
    once on an empty database do not race. The schema is procrastinate's own, for the one
    minor version pyproject pins; `queue_schema` records which version installed it, so an
    upgrade that needs procrastinate's migrations is refused instead of failing later.
    """
    version = procrastinate.__version__
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS queue_schema ("
            " name text PRIMARY KEY, version text NOT NULL, installed_at timestamptz NOT NULL)"
        )
        cursor = await conn.execute(
            "SELECT to_regclass('procrastinate_jobs') IS NOT NULL,"
            " (SELECT version FROM queue_schema WHERE name = 'procrastinate')"
        )
        row = await cursor.fetchone()
        assert row is not None
        present, recorded = bool(row[0]), row[1]
        if present:
            if recorded is not None and _minor(recorded) != _minor(version):
                raise StoreError(
                    f"the database's job queue schema is procrastinate {recorded}, this "
                    f"release-guard uses {version}: apply procrastinate's migrations "
                    "(`procrastinate schema --migrate` lists them) before starting it"
                )
            return False
        await conn.execute(SchemaManager.get_schema())
        await conn.execute(
            "INSERT INTO queue_schema (name, version, installed_at) VALUES"
            " ('procrastinate', %s, now()) ON CONFLICT (name) DO UPDATE SET version ="
            " EXCLUDED.version, installed_at = EXCLUDED.installed_at",
            (version,),
        )
    log.info("installed the job queue's schema (procrastinate %s)", version)
    return True


def _minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


class PgQueue:
    """procrastinate's App for release-guard: the tasks, how jobs are deferred, the schema."""

    def __init__(self, options: WorkerOptions | None = None, *, gc_cron: str = GC_CRON) -> None:
        self.options = options or WorkerOptions()
        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector())
        self._worker: PgWorker | None = None
        self._run_job = self.app.task(name=RUN_JOB, queue=QUEUE, retry=_RetryAsAsked())(
            self._task_run_job
        )
        self.app.periodic(cron=recovery_cron(self.options.stalled_after))(
            self.app.task(name=RECOVER_STALLED, queue=QUEUE)(self._task_recover_stalled)
        )
        self.app.periodic(cron=gc_cron)(
            self.app.task(name=RETENTION_GC, queue=QUEUE)(self._task_retention_gc)
        )

    async def defer(self, conn: psycopg.AsyncConnection[Any], job: Job) -> None:
        """Queue `job` on `conn`, in the caller's transaction (the store's `on_queued`)."""
        await self._run_job.configure(lock=job.lock_key, connection=conn).defer_async(job_id=job.id)

    async def install_schema(self, store: PostgresStore) -> bool:
        """Install procrastinate's schema in the store's database unless it is there."""
        try:
            async with store.pool.connection() as conn:
                return await install_queue_schema(conn)
        except psycopg.Error as exc:
            raise StoreError(f"cannot install the job queue's schema: {exc}") from exc

    # -- the tasks (run by a PgWorker) ----------------------------------------------------------

    def attach(self, worker: PgWorker) -> None:
        """Let `worker` run this queue's tasks in this process."""
        self._worker = worker

    def _require_worker(self) -> PgWorker:
        if self._worker is None:  # pragma: no cover - only PgWorker runs procrastinate workers
            raise RuntimeError("this process runs no release-guard worker")
        return self._worker

    async def _task_run_job(self, job_id: int) -> str:
        return await self._require_worker().run_job(job_id)

    async def _task_recover_stalled(self, timestamp: int) -> int:
        return await self._require_worker().recover_stalled()

    async def _task_retention_gc(self, timestamp: int) -> str:
        return await self._require_worker().retention_gc()


class PgWorker:
    """Runs release-guard's procrastinate tasks in this process until `stop()`.

    The same interface as the embedded `bot.app.worker.Worker` (`run`, `stop`, `notify`), so
    `serve` and `worker` run either.
    """

    def __init__(
        self,
        queue: PgQueue,
        store: PostgresStore,
        handler: JobHandler,
        *,
        worker_id: str | None = None,
        metrics: Metrics | None = None,
        retainer: Retainer | None = None,
        rng: random.Random | None = None,
        locks: CommitLocks | None = None,
    ) -> None:
        self.queue = queue
        self.store = store
        self.options = queue.options
        self.metrics = metrics
        self.retainer = retainer
        self.worker_id = worker_id or worker_identity()
        self._run = JobRun(
            store,
            handler,
            self.options,
            self.worker_id,
            rng or random.Random(),
            metrics=metrics,
            locks=locks,
        )
        self._stop = asyncio.Event()
        queue.attach(self)

    def notify(self) -> None:
        """Nothing to do: procrastinate's LISTEN/NOTIFY wakes the workers."""

    def stop(self) -> None:
        """Take no more jobs; `run()` returns once running jobs are drained."""
        self._stop.set()

    async def run(self, *, wait: bool = True) -> None:
        """Work until `stop()` (with `wait` False: until no job is due, for tests).

        procrastinate's worker stops when one of its side tasks fails (the heartbeat, the
        listener), which is what a database outage looks like; it is restarted, with a backoff,
        until `stop()`, instead of taking the process down.
        """
        app = self.queue.app
        await app.open_async(pool=self.store.pool)
        log.info(
            "worker %s started on PostgreSQL (procrastinate)",
            self.worker_id,
            extra={"concurrency": self.options.concurrency},
        )
        with contextlib.suppress(StoreError):  # logged; the stall timeout is the fallback
            await self.recover_dead_local()
        delay = RESTART_MIN
        try:
            while True:
                started = time.monotonic()
                trouble = await self._run_procrastinate(wait)
                if self._stop.is_set() or not wait:
                    return
                if time.monotonic() - started > RESTART_MAX:
                    delay = RESTART_MIN  # it ran well for a while: this is a new outage
                log.error(
                    "the job queue's worker stopped (%s); restarting it in %.0f s",
                    trouble or "it ended by itself",
                    delay,
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                    return
                delay = min(delay * 2, RESTART_MAX)
        finally:
            await app.close_async()
            log.info("worker %s stopped", self.worker_id)

    async def _run_procrastinate(self, wait: bool) -> str | None:
        """Run procrastinate's worker until it ends or `stop()`; say why it ended, if it failed."""
        worker = asyncio.create_task(
            self.queue.app.run_worker_async(
                queues=[QUEUE],
                name=self.worker_id,
                concurrency=self.options.concurrency,
                wait=wait,
                install_signal_handlers=False,
                update_heartbeat_interval=self.options.stalled_after / 3,
                stalled_worker_timeout=self.options.stalled_after,
                shutdown_graceful_timeout=self.options.drain_timeout,
                delete_jobs="successful",
                # LISTEN/NOTIFY wakes the worker; polling is the fallback.
                fetch_job_polling_interval=self.options.poll_interval * 5,
            ),
            name="procrastinate worker",
        )
        stopping = asyncio.create_task(self._stop.wait())
        try:
            await asyncio.wait({worker, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not worker.done():
            worker.cancel()  # procrastinate stops fetching and drains
        try:
            await worker
        except asyncio.CancelledError:
            if not self._stop.is_set():
                raise  # this task itself was cancelled
        except Exception as exc:
            return mask_secrets(f"{type(exc).__name__}: {exc}")
        return None

    # -- tasks --------------------------------------------------------------------------------

    async def run_job(self, job_id: int) -> str:
        try:
            job = await self.store.start(job_id, self.worker_id, self.options.lease)
        except StoreError:
            log.exception("job %d: cannot start it; trying again later", job_id)
            raise Requeue(self.options.backoff_base) from None
        if job is None:
            return f"job {job_id} is finished already"
        outcome = await self._run.run(job)
        if outcome.ended_as == "store_error":
            # The outcome could not be written: run it again once the database answers.
            raise Requeue(self.options.backoff_base)
        if outcome.retry_in is not None:
            raise Requeue(outcome.retry_in)
        return outcome.summary or outcome.ended_as

    async def recover_dead_local(self) -> int:
        """Queue again, at once, the running jobs of dead workers on this machine.

        A process restarted after a `kill -9` can prove its predecessor dead (the same host,
        its pid gone: `is_dead_local_owner`, as the SQLite worker does) and need not wait for
        the stall timeout; owners on other machines, or alive, are left to the heartbeat.
        Return how many jobs were queued again.
        """
        try:
            running = await self.store.list_jobs(10_000, state=JobState.RUNNING)
        except StoreError:
            log.exception("cannot list running jobs to recover")
            raise
        dead = {
            job.id: job.lease_owner
            for job in running
            if job.lease_owner and is_dead_local_owner(job.lease_owner)
        }
        if not dead:
            return 0
        manager = self.queue.app.job_manager
        try:
            doing = await manager.list_jobs_async(queue=QUEUE, task=RUN_JOB, status="doing")
        except procrastinate_errors.ConnectorException as exc:
            raise StoreError(f"cannot list the queue's running jobs: {exc}") from exc
        count = 0
        for queued in doing:
            job_id = queued.task_kwargs.get("job_id")
            if not isinstance(job_id, int) or job_id not in dead:
                continue
            try:
                await manager.retry_job(queued, retry_at=_utcnow())
            except procrastinate_errors.ConnectorException:
                continue  # another process's recovery, or the job's end, got there first
            count += 1
            reason = f"the worker that held it ({dead[job_id]}) is no longer running"
            log.warning("job %d: %s; queued again", job_id, reason, extra={"job_id": job_id})
            with contextlib.suppress(StoreError):
                await self.store.audit(
                    job_id, "requeued", f"{reason}: queued again", {"procrastinate_job": queued.id}
                )
        if count:
            log.warning("re-queued %d job(s) left running by a stopped process", count)
        return count

    async def recover_stalled(self) -> int:
        """Queue again the jobs of dead workers, and any job the queue lost; return how many."""
        return await self._retry_stalled() + await self.resubmit_orphans()

    async def resubmit_orphans(self, *, older_than: float = ORPHAN_GRACE) -> int:
        """Queue again the unfinished jobs that have no procrastinate job any more.

        A safety net, not a path taken in normal operation: a procrastinate job that ended
        without finishing ours (a bug, a failed status written by hand, a row deleted by an
        operator) would otherwise leave its job `queued` for ever. Jobs untouched for
        `older_than` seconds only, so a job between its two commits is never taken.
        """
        try:
            async with self.store.pool.connection() as conn:
                cursor = await conn.execute(
                    "SELECT j.id FROM jobs AS j WHERE j.state IN ('queued', 'running')"
                    " AND j.updated_at < %s AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs"
                    " AS p WHERE p.task_name = %s AND p.status IN ('todo', 'doing')"
                    " AND p.args ->> 'job_id' = j.id::text) ORDER BY j.id LIMIT 100",
                    (time.time() - older_than, RUN_JOB),
                )
                orphans = [int(row[0]) for row in await cursor.fetchall()]
                for job_id in orphans:
                    job = await self.store.get_job(job_id)
                    if job is None:
                        continue
                    async with conn.transaction():
                        await self.queue.defer(conn, job)
                    log.warning("job %d had no queue entry: queued again", job_id)
                    await self.store.audit(
                        job_id, "requeued", "the job queue had lost it: queued again", {}
                    )
        except psycopg.Error as exc:
            raise StoreError(f"cannot look for lost jobs: {exc}") from exc
        return len(orphans)

    async def _retry_stalled(self) -> int:
        """Queue again the running jobs of workers that stopped sending heartbeats."""
        manager = self.queue.app.job_manager
        # Every task of the queue: a periodic task (this one, gc) that a dead worker held runs
        # again too, instead of staying `doing` for ever; each is safe to run twice.
        stalled = await manager.get_stalled_jobs(
            queue=QUEUE, seconds_since_heartbeat=self.options.stalled_after
        )
        count = 0
        for stalled_job in stalled:
            job_id = stalled_job.task_kwargs.get("job_id")
            try:
                await manager.retry_job(stalled_job, retry_at=_utcnow())
            except procrastinate_errors.ConnectorException:
                # Another worker's recovery (or the job's own end) got there first.
                continue
            if stalled_job.task_name != RUN_JOB:
                log.warning(
                    "periodic task %s: its worker sent no heartbeat for %.0f s; run again",
                    stalled_job.task_name,
                    self.options.stalled_after,
                )
                continue
            count += 1
            log.warning(
                "job %s: its worker sent no heartbeat for %.0f s; queued again",
                job_id,
                self.options.stalled_after,
            )
            if isinstance(job_id, int):
                with contextlib.suppress(StoreError):
                    await self.store.audit(
                        job_id,
                        "requeued",
                        f"the worker running it sent no heartbeat for "
                        f"{self.options.stalled_after:.0f} s: queued again",
                        {"procrastinate_job": stalled_job.id},
                    )
        return count

    async def retention_gc(self) -> str:
        """Run one retention gc (the periodic task; one worker takes each period)."""
        if self.retainer is None:
            return "no artifact store on this worker"
        metrics = self.metrics
        report = await collect_and_report(
            self.retainer,
            on_gc=(lambda gc: metrics.set_retained_bytes(gc.remaining_bytes)) if metrics else None,
        )
        return "gc failed" if report is None else f"{len(report.deleted)} item(s) deleted"


def _utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
