"""GitHub rate limits shared by every process, in PostgreSQL (`bot.github.RateLimitGate`).

GitHub limits an installation, not a process: when one worker meets the limit, it records
until when the installation is blocked, and every other worker reads that before sending a
request for the installation, so ten workers do not spend ten requests learning the same
thing (and do not earn a secondary limit by insisting). One row per installation in
`rate_limit_blocks`; installation 0 stands for the App's own (JWT) requests.

Reads are cached for a short while per installation: the gate is asked before every request,
and a block is long (a minute to an hour) next to that cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import psycopg
import psycopg_pool

from bot.store.base import StoreError

APP_KEY: Final = 0
CACHE_SECONDS: Final = 1.0


class PostgresRateLimitGate:
    """The rate-limit gate on the store's connection pool."""

    def __init__(
        self,
        pool: psycopg_pool.AsyncConnectionPool,
        *,
        clock: Callable[[], float] = time.time,
        cache_seconds: float = CACHE_SECONDS,
    ) -> None:
        self._pool = pool
        self._clock = clock
        self._cache_seconds = cache_seconds
        self._cache: dict[int, tuple[float, float | None]] = {}  # key -> (read at, until)

    async def blocked_until(self, installation_id: int | None) -> float | None:
        """Epoch seconds until which the installation is blocked, or None."""
        key = APP_KEY if installation_id is None else installation_id
        now = self._clock()
        cached = self._cache.get(key)
        if cached is not None and now - cached[0] < self._cache_seconds:
            until = cached[1]
        else:
            try:
                async with self._pool.connection() as conn:
                    cursor = await conn.execute(
                        "SELECT blocked_until FROM rate_limit_blocks WHERE installation_id = %s",
                        (key,),
                    )
                    row = await cursor.fetchone()
            except psycopg.Error as exc:
                raise StoreError(f"cannot read the shared rate limits: {exc}") from exc
            until = None if row is None else float(row[0])
            self._cache[key] = (now, until)
        return until if until is not None and until > now else None

    async def block(self, installation_id: int | None, until: float, reason: str) -> None:
        """Record the block; a later block wins over an earlier one."""
        key = APP_KEY if installation_id is None else installation_id
        now = self._clock()
        try:
            async with self._pool.connection() as conn:
                await conn.execute(
                    "INSERT INTO rate_limit_blocks (installation_id, blocked_until, reason,"
                    " updated_at) VALUES (%s, %s, %s, %s) ON CONFLICT (installation_id) DO UPDATE"
                    " SET blocked_until = GREATEST(rate_limit_blocks.blocked_until,"
                    " EXCLUDED.blocked_until), reason = EXCLUDED.reason,"
                    " updated_at = EXCLUDED.updated_at",
                    (key, until, reason[:500], now),
                )
        except psycopg.Error as exc:
            raise StoreError(f"cannot record a shared rate limit: {exc}") from exc
        cached = self._cache.get(key)
        known = cached[1] if cached is not None else None
        self._cache[key] = (now, until if known is None else max(known, until))
