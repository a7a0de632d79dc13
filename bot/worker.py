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
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from bot.jobs import JobHandler, RetryLater
from bot.logging_setup import log_context, mask_secrets
from bot.metrics import Metrics
from bot.store.base import Job, JobState, LeaseLost, Store, StoreError

log = logging.getLogger(__name__)

_PROCESS_TOKEN: Final = secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class WorkerOptions:
    """How many jobs run at once, how long leases last, and how failures are retried."""

    concurrency: int = 3
    lease: float = 60.0  # renewed every third of it while the job runs
    poll_interval: float = 1.0  # how often to look for due jobs when nobody notifies
    max_attempts: int = 5
    backoff_base: float = 10.0  # first retry after 5-10 s, then doubling...
    backoff_cap: float = 900.0  # ...up to 7.5-15 min
    drain_timeout: float = 30.0  # on shutdown, how long running jobs may take to finish

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_attempts < 1:
            raise ValueError("concurrency and max_attempts must be at least 1")
        if min(self.lease, self.poll_interval, self.drain_timeout) <= 0:
            raise ValueError("lease, poll_interval and drain_timeout must be positive")


def worker_identity(name: str = "worker") -> str:
    """Return a lease-owner id that says which machine and process holds a job."""
    return f"{socket.gethostname()}/{os.getpid()}/{_PROCESS_TOKEN}/{name}"


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
        return token != _PROCESS_TOKEN  # an earlier process that had our pid
    return not _pid_alive(pid)


def backoff(attempt: int, options: WorkerOptions, rng: random.Random) -> float:
    """Return the delay before retrying after failed attempt `attempt` (equal jitter).

    Half the delay is fixed and half random, so retries of jobs that failed together (a GitHub
    outage) spread out instead of returning at the same moment.
    """
    ceiling = min(options.backoff_cap, options.backoff_base * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class _Context:
    """The JobContext the worker gives a handler for one run of one job."""

    def __init__(
        self, store: Store, job: Job, max_attempts: int, metrics: Metrics | None = None
    ) -> None:
        self._store = store
        self._job = job
        self._max_attempts = max_attempts
        self._check_run_id = job.check_run_id
        self._metrics = metrics
        # For metrics: the stage being timed, and how this run ended.
        self.started_at = time.monotonic()
        self._stage = "started"
        self._stage_at = self.started_at
        self.ended_as = "interrupted"
        self.summary: str | None = None

    def enter_stage(self, stage: str, data: Mapping[str, Any]) -> None:
        """Time the stage that ends here and count the one that starts (metrics only)."""
        if self._metrics is None:
            return
        kind = self._job.kind.value
        now = time.monotonic()
        if stage != self._stage:
            self._metrics.stage_ended(kind, self._stage, now - self._stage_at)
            self._stage, self._stage_at = stage, now
        self._metrics.stage_entered(kind, stage, data)

    def end(self, state: str, summary: str | None = None) -> None:
        """Say how this run of the job ended (counted once the run is over)."""
        self.ended_as, self.summary = state, summary

    def report_end(self) -> None:
        """Count the run and its last stage's time (metrics only)."""
        if self._metrics is None:
            return
        kind = self._job.kind.value
        now = time.monotonic()
        self._metrics.stage_ended(kind, self._stage, now - self._stage_at)
        self._metrics.job_ended(kind, self.ended_as, self.summary, now - self.started_at)

    @property
    def attempt(self) -> int:
        return self._job.attempts

    @property
    def last_attempt(self) -> bool:
        return self._job.attempts >= self._max_attempts

    @property
    def check_run_id(self) -> int | None:
        return self._check_run_id

    async def audit(self, stage: str, message: str, **data: Any) -> None:
        message = mask_secrets(message)
        log.info("%s: %s", stage, message, extra={"stage": stage})
        self.enter_stage(stage, data)
        await self._store.audit(
            self._job.id, stage, message, data, delivery_id=self._job.delivery_id
        )

    async def set_check_run(self, check_run_id: int) -> None:
        await self._store.set_check_run(self._job, check_run_id)
        self._check_run_id = check_run_id


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
        with log_context(delivery_id=job.delivery_id, job_id=job.id):
            ctx = _Context(self.store, job, self.options.max_attempts, self.metrics)
            current = asyncio.current_task()
            assert current is not None
            lost = asyncio.Event()
            keeper = asyncio.create_task(self._keep_lease(job, current, lost))
            if self.metrics is not None:
                self.metrics.job_started()
            try:
                await self._attempt(job, ctx)
            except asyncio.CancelledError:
                ctx.end("lease_lost" if lost.is_set() else "interrupted")
                if not lost.is_set():
                    await self._hand_back(job)
                raise
            except LeaseLost:
                ctx.end("lease_lost")
                log.warning("job %d: lease lost; another worker has it now", job.id)
            except StoreError:
                # The outcome could not be written: the lease will lapse and the job run again.
                ctx.end("store_error")
                log.exception("job %d: cannot record its outcome", job.id)
            finally:
                keeper.cancel()
                ctx.report_end()

    async def _hand_back(self, job: Job) -> None:
        with contextlib.suppress(StoreError):
            await self.store.retry_later(
                job, 0, "interrupted: the worker stopped before the job finished"
            )

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

    async def _attempt(self, job: Job, ctx: _Context) -> None:
        limit = self.options.max_attempts
        if job.attempts > limit:
            # Earlier claims never finished: the process running it died each time.
            await self._fail(
                job, ctx, f"gave up: started {job.attempts - 1} times and never finished"
            )
            return
        log.info(
            "job %d started: %s %s (attempt %d of %d)",
            job.id,
            job.kind.value,
            job.repository,
            job.attempts,
            limit,
            extra={"kind": job.kind.value, "repository": job.repository},
        )
        await self.store.audit(
            job.id,
            "started",
            f"attempt {job.attempts} of {limit} by {self.worker_id}",
            {"attempt": job.attempts, "worker": self.worker_id},
            delivery_id=job.delivery_id,
        )
        ctx.enter_stage("started", {})
        try:
            summary = await self.handler.run(job, ctx)
        except RetryLater as exc:
            reason = mask_secrets(exc.reason)
            if job.attempts >= limit:
                await self._fail(job, ctx, f"gave up after {job.attempts} attempts: {reason}")
                return
            delay = (
                exc.delay
                if exc.delay is not None
                else backoff(job.attempts, self.options, self._rng)
            )
            log.warning("job %d will be retried in %.0fs: %s", job.id, delay, reason)
            await self.store.retry_later(job, delay, reason)
            ctx.end("retried")
            return
        except Exception as exc:
            log.exception("job %d failed", job.id)
            await self._fail(job, ctx, mask_secrets(f"{type(exc).__name__}: {exc}"))
            return
        summary = mask_secrets(summary) if summary else "done"
        await self.store.complete(job, JobState.DONE, summary)
        ctx.end("done", summary)
        log.info("job %d done: %s", job.id, summary)

    async def _fail(self, job: Job, ctx: _Context, reason: str) -> None:
        try:
            await self.handler.give_up(job, ctx, reason)
        except Exception as exc:
            log.exception("job %d: give_up failed", job.id)
            with contextlib.suppress(StoreError):
                await ctx.audit("give_up_failed", mask_secrets(f"{type(exc).__name__}: {exc}"))
        await self.store.complete(job, JobState.FAILED, reason)
        ctx.end("failed", "failure")
        log.error("job %d failed: %s", job.id, reason)
