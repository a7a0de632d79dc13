"""The JobHandler seam: RetryLater, and HandlerByKind's dispatch and explicit refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.events import JobKind
from bot.jobs import HandlerByKind, NoHandler, RetryLater
from bot.store import Job, SqliteStore
from tests.apphelpers import RecordingHandler, delivery, spec

pytestmark = pytest.mark.asyncio


async def a_job(tmp_path: Path, kind: JobKind) -> Job:
    store = SqliteStore(tmp_path / "rg.sqlite3")
    await store.open()
    try:
        await store.record_delivery(delivery(), [spec(kind=kind)])
        job = await store.claim("w", 30)
        assert job is not None
        return job
    finally:
        await store.close()


class NullContext:
    attempt = 1
    last_attempt = False
    check_run_id = None

    async def audit(self, stage: str, message: str, **data: object) -> None:
        pass

    async def set_check_run(self, check_run_id: int) -> None:
        pass


async def test_retry_later_carries_reason_and_delay() -> None:
    error = RetryLater("rate limited", delay=30)
    assert (error.reason, error.delay, str(error)) == ("rate limited", 30, "rate limited")
    assert RetryLater("x").delay is None


async def test_jobs_go_to_the_handler_of_their_kind(tmp_path: Path) -> None:
    checks = RecordingHandler(script=["checked"])
    handler = HandlerByKind({JobKind.CHECK: checks})
    job = await a_job(tmp_path, JobKind.CHECK)
    assert await handler.run(job, NullContext()) == "checked"
    await handler.give_up(job, NullContext(), "why")
    assert checks.given_up == [(job.id, "why")]


async def test_a_kind_without_handler_is_refused(tmp_path: Path) -> None:
    handler = HandlerByKind({})
    job = await a_job(tmp_path, JobKind.RELEASE)
    with pytest.raises(NoHandler, match="cannot run release jobs yet"):
        await handler.run(job, NullContext())
    await handler.give_up(job, NullContext(), "nothing to report on")  # no handler: no-op
