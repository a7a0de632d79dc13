"""Run queued jobs: claim them from the store, a few at a time, and see each one to an end.

Every job ends `done` or `failed`, with the reason in its audit trail: a transient failure
(`RetryLater`) is retried with exponential backoff and jitter up to `max_attempts`; after that,
or after any other exception, the handler's `give_up` completes its check run with a failure.

A job survives the process: the worker holds a renewable lease on it. If the process is killed,
the lease lapses and any worker takes the job again; a worker starting on the same machine
takes back at once the jobs of local workers whose process is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket

from bot.app.job_run import PROCESS_TOKEN, JobRun, WorkerOptions, backoff, worker_identity
from bot.commit_locks import CommitLocks
from bot.jobs import JobHandler
from bot.ops.metrics import Metrics
from bot.store.base import Job, JobState, Store, StoreError

__all__ = ["Worker", "WorkerOptions", "backoff", "is_dead_local_owner", "worker_identity"]

log = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def is_dead_local_owner(owner: str) -> bool:
    """Tell whether `owner` was a worker on this machine whose process no longer runs.

    Owners on other machines, or in a process that still runs (or whose pid was reused), are
    never called dead: their jobs come back only when the lease expires.
    """
    parts = owner.split("/")
    if len(parts) < 3 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return False
    pid, token = int(parts[1]), parts[2]
    if pid == os.getpid():
        return token != PROCESS_TOKEN  # an earlier process that had our pid
    return not _pid_alive(pid)


class Worker:
    """Claims due jobs and runs up to `options.concurrency` of them at once.

    `run()` works until `stop()`; it then claims nothing more, gives running jobs
    `drain_timeout` seconds, and hands back (re-queues) those still running after that.
    """

    def __init__(
        self,
        store: Store,
        handler: JobHandler,
        options: WorkerOptions | None = None,
        *,
        worker_id: str | None = None,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        locks: CommitLocks | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.handler = handler
        self.options = options or WorkerOptions()
        self.worker_id = worker_id or worker_identity()
        self._rng = rng or random.Random()
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._run = JobRun(
            store, handler, self.options, self.worker_id, self._rng, metrics=metrics, locks=locks
        )

    def notify(self) -> None:
        """Look for due jobs now (a delivery was just recorded)."""
        self._wake.set()

    def stop(self) -> None:
        """Claim nothing more; `run()` returns once running jobs are drained."""
        self._stopping = True
        self._wake.set()

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def run(self) -> None:
        log.info(
            "worker %s started",
            self.worker_id,
            extra={"concurrency": self.options.concurrency},
        )
        try:
            await self.recover()
            while not self._stopping:
                self._wake.clear()
                if len(self._tasks) < self.options.concurrency and await self._claim_one():
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.options.poll_interval)
        finally:
            await self._drain()
            log.info("worker %s stopped", self.worker_id)

    async def recover(self) -> int:
        """Re-queue at once the running jobs of dead workers on this machine."""
        try:
            running = await self.store.list_jobs(10_000, state=JobState.RUNNING)
        except StoreError:
            log.exception("cannot list running jobs to recover")
            return 0
        dead = {job.lease_owner for job in running if job.lease_owner}
        count = 0
        for owner in sorted(o for o in dead if is_dead_local_owner(o)):
            try:
                count += await self.store.reclaim(
                    [owner], f"the worker that held it ({owner}) is no longer running"
                )
            except StoreError:  # its lease will expire instead
                log.exception("cannot re-queue the jobs of %s", owner)
        if count:
            log.warning("re-queued %d job(s) left running by a stopped process", count)
        return count

    async def _claim_one(self) -> bool:
        try:
            job = await self.store.claim(self.worker_id, self.options.lease)
        except StoreError:
            log.exception("cannot claim a job; trying again in %ss", self.options.poll_interval)
            return False
        if job is None:
            return False
        task = asyncio.create_task(self._execute(job), name=f"job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return True

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:  # pragma: no cover
            log.error("job task crashed", exc_info=task.exception())

    async def _drain(self) -> None:
        if not self._tasks:
            return
        log.info(
            "draining %d running job(s), for up to %ss",
            len(self._tasks),
            self.options.drain_timeout,
        )
        _, pending = await asyncio.wait(set(self._tasks), timeout=self.options.drain_timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)

    # -- one job -------------------------------------------------------------------------------

    async def _execute(self, job: Job) -> None:
        current = asyncio.current_task()
        assert current is not None
        lost = asyncio.Event()
        keeper = asyncio.create_task(self._keep_lease(job, current, lost))
        try:
            # A store error leaves the job to its lease, which lapses: it runs again then.
            await self._run.run(job, lease_lost=lost)
        finally:
            keeper.cancel()

    async def _keep_lease(self, job: Job, runner: asyncio.Task[None], lost: asyncio.Event) -> None:
        while True:
            await asyncio.sleep(self.options.lease / 3)
            try:
                held = await self.store.renew(job, self.options.lease)
            except StoreError:
                log.exception("job %d: cannot renew its lease", job.id)
                continue
            if not held:
                log.warning("job %d: lease lost; stopping this run of it", job.id)
                lost.set()
                runner.cancel()
                return
