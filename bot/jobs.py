"""What the worker asks of the code that does a job, and what it offers that code.

A `JobHandler` runs one claimed job. It reports progress through its `JobContext` (audit stages
such as downloading, scanning, reporting) and records the check run it reports on, so that a
retried job updates the same check run instead of opening a second one.

Failure is explicit: raise `RetryLater` for something transient (a 5xx, a rate limit, an
artifact not uploaded yet); any other exception, or the last failed attempt, makes the worker
call `give_up`, where the handler completes its check run with a failure that says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from bot.errors import ReleaseGuardError
from bot.events import JobKind
from bot.store.base import Job


class RetryLater(ReleaseGuardError):
    """A transient failure: run the job again later (after `delay` seconds, or a backoff)."""

    def __init__(self, reason: str, *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class JobContext(Protocol):
    """The worker's side of one job run."""

    @property
    def attempt(self) -> int:
        """The attempt being run, from 1."""

    @property
    def last_attempt(self) -> bool:
        """Whether a RetryLater now would end the job instead of retrying it."""

    @property
    def check_run_id(self) -> int | None:
        """The check run this job reports on, if an earlier step or attempt created one."""

    async def audit(self, stage: str, message: str, **data: Any) -> None:
        """Append a stage to the job's audit trail (and log it)."""

    async def set_check_run(self, check_run_id: int) -> None:
        """Remember the check run this job reports on."""


class JobHandler(Protocol):
    """Runs jobs; `run` returns a one-line result summary (stored with the job) or None."""

    async def run(self, job: Job, ctx: JobContext) -> str | None: ...

    async def give_up(self, job: Job, ctx: JobContext, reason: str) -> None: ...


class NoHandler(ReleaseGuardError):
    """No handler is installed for a job's kind in this build."""


class HandlerByKind:
    """A JobHandler that hands each job to the handler registered for its kind.

    A kind with no handler fails explicitly (NoHandler, then `failed` with the reason in the
    audit trail) instead of waiting in the queue forever.
    """

    def __init__(self, handlers: Mapping[JobKind, JobHandler]) -> None:
        self._handlers = dict(handlers)

    def handler_for(self, kind: JobKind) -> JobHandler | None:
        """Return the handler registered for `kind`, if any."""
        return self._handlers.get(kind)

    def _for(self, job: Job) -> JobHandler:
        handler = self._handlers.get(job.kind)
        if handler is None:
            raise NoHandler(f"this release-guard cannot run {job.kind.value} jobs yet")
        return handler

    async def run(self, job: Job, ctx: JobContext) -> str | None:
        return await self._for(job).run(job, ctx)

    async def give_up(self, job: Job, ctx: JobContext, reason: str) -> None:
        if job.kind in self._handlers:
            await self._handlers[job.kind].give_up(job, ctx, reason)
