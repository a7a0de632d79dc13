"""Commit locks: one job per commit at a time, in one process and across processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from bot.commit_locks import CommitLocks, LocalCommitLocks, commit_key
from bot.store.pg_commit_locks import PostgresCommitLocks
from bot.store.postgres import PostgresStore

pytestmark = pytest.mark.asyncio

KEY = commit_key("Octo-Org/Octo-Repo", "a" * 40)


async def exclusive(first: CommitLocks, second: CommitLocks) -> list[str]:
    """Two holders of KEY, the second asking while the first holds it: the order they ran."""
    order: list[str] = []
    first_holds = asyncio.Event()
    release = asyncio.Event()

    async def one() -> None:
        async with first.hold(KEY):
            order.append("first in")
            first_holds.set()
            await release.wait()
            order.append("first out")

    async def two() -> None:
        await first_holds.wait()
        async with second.hold(KEY):
            order.append("second in")

    tasks = [asyncio.create_task(one()), asyncio.create_task(two())]
    await first_holds.wait()
    await asyncio.sleep(0.3)  # the second is waiting now, if the lock works
    release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 10)
    return order


async def test_the_key_is_the_jobs_lock_key() -> None:
    assert KEY == "octo-org/octo-repo@" + "a" * 40


async def test_local_locks_exclude_and_forget() -> None:
    locks = LocalCommitLocks()
    assert await exclusive(locks, locks) == ["first in", "first out", "second in"]
    assert len(locks) == 0
    async with locks.hold("other"), locks.hold(KEY):  # other keys are independent
        assert len(locks) == 2
    assert len(locks) == 0


@pytest_asyncio.fixture
async def two_stores(pg_url: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    stores = (PostgresStore(pg_url), PostgresStore(pg_url))
    for store in stores:
        await store.open()
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


async def test_advisory_locks_exclude_across_processes(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    a, b = (PostgresCommitLocks(store.pool, poll=0.05) for store in two_stores)
    assert await exclusive(a, b) == ["first in", "first out", "second in"]
    # Released: taken again at once, from either side.
    async with b.hold(KEY), a.hold("another commit"):
        pass


async def test_a_cancelled_waiter_leaves_no_lock_and_no_connection_behind(
    two_stores: tuple[PostgresStore, PostgresStore],
) -> None:
    first, second = two_stores
    a = PostgresCommitLocks(first.pool, poll=0.05)
    b = PostgresCommitLocks(second.pool, poll=0.05)
    async with a.hold(KEY):
        waiter = asyncio.create_task(b.hold(KEY).__aenter__())
        await asyncio.sleep(0.2)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    # Nobody holds it now: the cancelled waiter never got it, the holder let it go.
    # This database's locks only: other databases on the server (other test runs) have theirs.
    rows = await second.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database ="
        " (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    assert rows == [(0,)]
    stats = second.pool.get_stats()
    assert stats.get("pool_size", 0) - stats.get("pool_available", 0) == 0
