"""One run of one job, the same whichever queue handed it over.

The embedded queue (`bot.app.worker`, leases in SQLite) and the scale-out queue (`bot.app.pgqueue`,
procrastinate on PostgreSQL) differ in how a job reaches a worker and how a retry is
scheduled; what happens once a worker holds a job is here, once: the `started` audit event,
the handler's run, `RetryLater` turned into a retry with backoff and jitter, the last attempt
or any other exception turned into `give_up` and a `failed` job, and the job's metrics.
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

from bot.commit_locks import CommitLocks
from bot.jobs import JobHandler, RetryLater
from bot.ops.logs import log_context, mask_secrets
from bot.ops.metrics import Metrics
from bot.store.base import Job, JobState, LeaseLost, Store, StoreError

log = logging.getLogger("bot.app.worker")

PROCESS_TOKEN: Final = secrets.token_hex(4)


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
    # PostgreSQL only: a worker that sent no heartbeat for this long is taken for dead, and
    # its running jobs are queued again (it sends one every third of it).
    stalled_after: float = 30.0

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_attempts < 1:
            raise ValueError("concurrency and max_attempts must be at least 1")
        if min(self.lease, self.poll_interval, self.drain_timeout) <= 0:
            raise ValueError("lease, poll_interval and drain_timeout must be positive")
        if self.stalled_after < 3:
            raise ValueError("stalled_after must be at least 3 seconds")


def worker_identity(name: str = "worker") -> str:
    """Return a lease-owner id that says which machine and process holds a job."""
    return f"{socket.gethostname()}/{os.getpid()}/{PROCESS_TOKEN}/{name}"


def backoff(attempt: int, options: WorkerOptions, rng: random.Random) -> float:
    """Return the delay before retrying after failed attempt `attempt` (equal jitter).

    Half the delay is fixed and half random, so retries of jobs that failed together (a GitHub
    outage) spread out instead of returning at the same moment.
    """
    ceiling = min(options.backoff_cap, options.backoff_base * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


class RunContext:
    """The JobContext a worker gives a handler for one run of one job."""

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


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """How one run of a job ended: `done`, `failed`, `retried` (in `retry_in` seconds),
    `lease_lost` or `store_error`."""

    ended_as: str
    retry_in: float | None = None
    summary: str | None = None


class JobRun:
    """Runs one attempt of a job its worker holds, and records how it ended.

    `run()` is what a worker calls: it holds the commit's lock, counts the run in the metrics,
    hands an interrupted job back to the queue, and says how the run ended. `attempt()` is the
    attempt itself: it returns the delay of the retry it scheduled in the store (a
    `RetryLater`), or None when the job is finished (done or failed).
    """

    def __init__(
        self,
        store: Store,
        handler: JobHandler,
        options: WorkerOptions,
        worker_id: str,
        rng: random.Random,
        *,
        metrics: Metrics | None = None,
        locks: CommitLocks | None = None,
    ) -> None:
        self.store = store
        self.handler = handler
        self.options = options
        self.worker_id = worker_id
        self.metrics = metrics
        self.locks = locks
        self._rng = rng

    async def run(self, job: Job, *, lease_lost: asyncio.Event | None = None) -> RunOutcome:
        """Run one attempt of `job` under its commit's lock; say how it ended.

        Cancelled (the worker stops), the job is handed back to the queue at once, unless
        `lease_lost` is set: then another worker has it already. A lost lease or an outcome
        the store could not record ends the run quietly (`lease_lost`, `store_error`); what
        that means for the job is the queue's to decide.
        """
        with log_context(delivery_id=job.delivery_id, job_id=job.id):
            ctx = RunContext(self.store, job, self.options.max_attempts, self.metrics)
            if self.metrics is not None:
                self.metrics.job_started()
            delay: float | None = None
            try:
                async with self._commit_lock(job):
                    delay = await self.attempt(job, ctx)
            except asyncio.CancelledError:
                taken = lease_lost is not None and lease_lost.is_set()
                ctx.end("lease_lost" if taken else "interrupted")
                if not taken:
                    with contextlib.suppress(StoreError):
                        await self.store.retry_later(
                            job, 0, "interrupted: the worker stopped before the job finished"
                        )
                raise
            except LeaseLost:
                ctx.end("lease_lost")
                log.warning("job %d: lease lost; another worker has it now", job.id)
            except StoreError:
                ctx.end("store_error")
                log.exception("job %d: cannot record its outcome", job.id)
            finally:
                ctx.report_end()
            return RunOutcome(ctx.ended_as, delay, ctx.summary)

    def _commit_lock(self, job: Job) -> contextlib.AbstractAsyncContextManager[None]:
        """The lock of the commit the job names (see `bot.commit_locks`), if it names one."""
        if self.locks is None or not job.head_sha:
            return contextlib.nullcontext()
        return self.locks.hold(job.lock_key)

    async def attempt(self, job: Job, ctx: RunContext) -> float | None:
        limit = self.options.max_attempts
        if job.attempts > limit:
            # Earlier runs never finished: the process running it died each time.
            await self._fail(
                job, ctx, f"gave up: started {job.attempts - 1} times and never finished"
            )
            return None
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
                return None
            delay = (
                exc.delay
                if exc.delay is not None
                else backoff(job.attempts, self.options, self._rng)
            )
            log.warning("job %d will be retried in %.0fs: %s", job.id, delay, reason)
            await self.store.retry_later(job, delay, reason)
            ctx.end("retried")
            return delay
        except Exception as exc:
            log.exception("job %d failed", job.id)
            await self._fail(job, ctx, mask_secrets(f"{type(exc).__name__}: {exc}"))
            return None
        summary = mask_secrets(summary) if summary else "done"
        await self.store.complete(job, JobState.DONE, summary)
        ctx.end("done", summary)
        log.info("job %d done: %s", job.id, summary)
        return None

    async def _fail(self, job: Job, ctx: RunContext, reason: str) -> None:
        try:
            await self.handler.give_up(job, ctx, reason)
        except Exception as exc:
            log.exception("job %d: give_up failed", job.id)
            with contextlib.suppress(StoreError):
                await ctx.audit("give_up_failed", mask_secrets(f"{type(exc).__name__}: {exc}"))
        await self.store.complete(job, JobState.FAILED, reason)
        ctx.end("failed", "failure")
        log.error("job %d failed: %s", job.id, reason)
