"""Commit locks: while one job works on a repository's commit, no other does.

The queue already keeps two jobs that name the same commit from running at once (their
`Job.lock_key`). A rescan asked in a comment names a pull request, not a commit: it learns
the commit only once it runs. So the worker also holds the commit's lock while it runs a job
that names one, and the rescan takes the same lock once it knows its commit; whichever comes
second waits for the first.

`LocalCommitLocks` serves one process (the embedded SQLite database); on PostgreSQL every
process shares advisory locks (`bot.store.pg_commit_locks`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Protocol


def commit_key(repository: str, sha: str) -> str:
    """The lock key of a commit: the same string as `Job.lock_key` for a job that names it."""
    return f"{repository.lower()}@{sha}"


class CommitLocks(Protocol):
    """Exclusive locks by key, held for the duration of an `async with`."""

    def hold(self, key: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Wait until no one else holds `key`, then hold it until the block ends."""


class LocalCommitLocks:
    """Commit locks within one process (asyncio locks, forgotten when nobody uses them)."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        """How many keys are held or waited for (tests check that none leak)."""
        return len(self._locks)
