"""The database and the job queue that DATABASE_URL selects, opened and closed together.

- SQLite (the embedded default): the store is also the queue; `bot.app.worker.Worker` claims jobs
  with leases, and gc runs beside each worker.
- PostgreSQL (scale-out): the store keeps the data and procrastinate is the queue
  (`bot.app.pgqueue`); jobs are deferred in the transaction that records their delivery, and gc
  is a periodic task that one worker takes.

`serve`, `worker` and `migrate` see only this; the PostgreSQL modules are imported only when
DATABASE_URL names PostgreSQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from bot.app.worker import Worker, WorkerOptions
from bot.commit_locks import CommitLocks, LocalCommitLocks
from bot.github import RateLimitGate
from bot.jobs import JobHandler
from bot.ops.metrics import Metrics
from bot.retention import Retainer
from bot.retention.maintenance import GC_INTERVAL
from bot.settings import PostgresDatabase, Settings
from bot.store import Store, store_for

if TYPE_CHECKING:
    from bot.app.pgqueue import PgQueue
    from bot.store.postgres import PostgresStore


class JobWorker(Protocol):
    """What `serve` and `worker` run: either queue's worker."""

    def notify(self) -> None:
        """A delivery was just recorded in this process: look for due jobs now."""

    def stop(self) -> None:
        """Take no more jobs; `run()` returns once running jobs are drained."""

    async def run(self) -> None:
        """Work until `stop()`."""


class Backend:
    """The store and, on PostgreSQL, the procrastinate queue beside it."""

    def __init__(self, settings: Settings, options: WorkerOptions | None = None) -> None:
        self.options = options or WorkerOptions()
        self._queue: PgQueue | None = None
        self._pg_store: PostgresStore | None = None
        self._commit_locks: CommitLocks | None = None
        if isinstance(settings.database, PostgresDatabase):
            from bot.app.pgqueue import PgQueue
            from bot.store.postgres import PostgresStore

            self._queue = PgQueue(self.options)
            self._pg_store = PostgresStore(
                settings.database.url.reveal(),
                on_queued=self._queue.defer,
                # A running job that names a commit holds a connection (its commit lock).
                max_size=max(10, 2 * self.options.concurrency + 4),
            )
            self.store: Store = self._pg_store
        else:
            self.store = store_for(settings)

    @property
    def name(self) -> str:
        return "PostgreSQL" if self._queue is not None else "SQLite"

    @property
    def gc_interval(self) -> float | None:
        """How often gc runs beside each worker; None where it is a shared periodic task."""
        return None if self._queue is not None else GC_INTERVAL

    async def open(self) -> None:
        """Connect, and create or upgrade the schema (the queue's too); safe concurrently."""
        await self.store.open()
        if self._queue is not None and self._pg_store is not None:
            try:
                await self._queue.install_schema(self._pg_store)
            except BaseException:
                await self.store.close()
                raise

    async def close(self) -> None:
        await self.store.close()

    def commit_locks(self) -> CommitLocks:
        """This process's commit locks: shared with every process on PostgreSQL."""
        if self._commit_locks is None:
            if self._pg_store is not None:
                from bot.store.pg_commit_locks import PostgresCommitLocks

                self._commit_locks = PostgresCommitLocks(self._pg_store.pool)
            else:
                self._commit_locks = LocalCommitLocks()
        return self._commit_locks

    def rate_limit_gate(self) -> RateLimitGate | None:
        """GitHub's rate limits as every process sees them (None: this process's own)."""
        if self._pg_store is None:
            return None
        from bot.store.pg_rate_limits import PostgresRateLimitGate

        return PostgresRateLimitGate(self._pg_store.pool)

    def worker(
        self,
        handler: JobHandler,
        *,
        metrics: Metrics | None = None,
        retainer: Retainer | None = None,
    ) -> JobWorker:
        """Return this backend's worker, running `handler` for each job."""
        if self._queue is not None and self._pg_store is not None:
            from bot.app.pgqueue import PgWorker

            return PgWorker(
                self._queue,
                self._pg_store,
                handler,
                metrics=metrics,
                retainer=retainer,
                locks=self.commit_locks(),
            )
        return Worker(self.store, handler, self.options, metrics=metrics, locks=self.commit_locks())
