"""Commit locks shared by every process: PostgreSQL session advisory locks.

One pooled connection is held for as long as the lock is (a session lock belongs to its
connection), and the lock is asked for with `pg_try_advisory_lock` every `poll` seconds, so a
waiter can be cancelled like any coroutine. If the connection dies, PostgreSQL releases the
lock with it. The key is hashed to the advisory lock's 64-bit number
(`hashtextextended`); a collision could only make two unrelated commits wait for each other.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Final

import psycopg
import psycopg_pool

from bot.store.base import StoreError

POLL_SECONDS: Final = 0.25


class PostgresCommitLocks:
    """`bot.commit_locks.CommitLocks` on the store's connection pool."""

    def __init__(self, pool: psycopg_pool.AsyncConnectionPool, *, poll: float = POLL_SECONDS):
        self._pool = pool
        self._poll = poll

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        try:
            conn = await self._pool.getconn()
        except psycopg_pool.PoolTimeout as exc:
            raise StoreError(f"cannot take the lock of {key}: {exc}") from exc
        held = False
        try:
            while not held:
                try:
                    cursor = await conn.execute(
                        "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))", (key,)
                    )
                    row = await cursor.fetchone()
                except psycopg.Error as exc:
                    raise StoreError(f"cannot take the lock of {key}: {exc}") from exc
                held = bool(row and row[0])
                if not held:
                    await asyncio.sleep(self._poll)
            yield
        finally:
            await self._release(conn, key, held)

    async def _release(self, conn: psycopg.AsyncConnection[Any], key: str, held: bool) -> None:
        # Never hand a connection that may still hold the lock back to the pool: closed, the
        # pool drops it and PostgreSQL releases its locks.
        try:
            if held:
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))
        except psycopg.Error:
            await conn.close()
        except asyncio.CancelledError:
            await conn.close()
            raise
        finally:
            await self._pool.putconn(conn)
