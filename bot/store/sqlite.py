"""The embedded store: one SQLite file under DATA_DIR, shared safely by processes on one machine.

- One connection per process, used only by one dedicated thread: every call hops to that thread,
  so the event loop never blocks on disk and the connection is never shared across threads.
- WAL journal: readers never wait for the writer, and `/readyz` or `jobs` do not stall deliveries.
- `synchronous=FULL`: a commit returns only after the WAL is fsynced. In WAL mode NORMAL already
  survives a killed process, but it can lose the last commits on a power cut or a kernel panic,
  and GitHub does not redeliver a webhook it got a 202 for. CONTRACT's "202 once durably
  recorded" is worth one fsync per commit, and concurrent deliveries share a commit (group
  commit, see `record_delivery`). benchmarks/webhooks.py measures what it costs.
- Writes run in `BEGIN IMMEDIATE` transactions: a second process waits for the write lock
  (busy timeout) instead of failing when a read transaction would have to upgrade.
- `audit_events` is append-only: triggers abort any UPDATE or DELETE on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from bot.events import JobKind, JobSpec
from bot.store.base import (
    AuditEvent,
    Delivery,
    Job,
    JobState,
    LeaseLost,
    StoreError,
    StoreMissing,
)

T = TypeVar("T")

MIN_SQLITE: Final = (3, 35, 0)  # RETURNING, and upserts on partial indexes

# Each migration is a list of statements, applied in one transaction; never edit a released one.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            delivery_id TEXT NOT NULL UNIQUE,
            event TEXT NOT NULL,
            action TEXT,
            received_at REAL NOT NULL,
            payload_sha256 TEXT NOT NULL,
            outcome TEXT NOT NULL
        )""",
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            delivery_id TEXT NOT NULL REFERENCES deliveries (delivery_id),
            kind TEXT NOT NULL,
            installation_id INTEGER NOT NULL,
            repository TEXT NOT NULL,
            head_sha TEXT,
            details TEXT NOT NULL,
            dedupe_key TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            not_before REAL NOT NULL,
            lease_owner TEXT,
            lease_expires REAL,
            check_run_id INTEGER,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            result_summary TEXT
        )""",
        "CREATE INDEX jobs_due ON jobs (state, not_before)",
        """CREATE UNIQUE INDEX jobs_pending_dedupe ON jobs (dedupe_key)
            WHERE state IN ('queued', 'running')""",
        """CREATE TABLE audit_events (
            id INTEGER PRIMARY KEY,
            job_id INTEGER REFERENCES jobs (id),
            delivery_id TEXT,
            at REAL NOT NULL,
            stage TEXT NOT NULL,
            message TEXT NOT NULL,
            data TEXT NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX audit_events_by_job ON audit_events (job_id, id)",
        """CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
            BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
        """CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
            BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END""",
    ),
)

_PENDING: Final = "state IN ('queued', 'running')"


class SqliteStore:
    """The Store protocol on one SQLite file (see the module docstring for the choices)."""

    def __init__(
        self,
        path: Path,
        *,
        create: bool = True,
        busy_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self._create = create
        self._busy_timeout = busy_timeout
        self._clock = clock
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._pending: list[tuple[Delivery, tuple[JobSpec, ...], asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    # -- plumbing ------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError(f"{self.path}: the store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {exc}") from exc

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is not open")
        return self._conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreError(
                f"SQLite {sqlite3.sqlite_version} is too old: release-guard needs "
                f"{'.'.join(map(str, MIN_SQLITE))} or newer"
            )
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="release-guard-sqlite")
        try:
            await self._call(self._open_sync)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _open_sync(self) -> None:
        if not self.path.exists():
            if not self._create:
                raise StoreMissing(f"{self.path}: no database yet (nothing has been received)")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"{self.path.parent}: cannot create: {exc.strerror}") from exc
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open: {exc}") from exc
        conn.row_factory = sqlite3.Row
        try:
            self._enable_wal(conn)
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
            self._migrate()
        except BaseException:
            self._conn = None
            conn.close()
            raise

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL, waiting out a second process doing the same.

        Changing the journal mode can fail with "database is locked" at once, without SQLite's
        busy handler, while another connection opens the same new file; so retry until the
        busy timeout.
        """
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        if mode.lower() != "wal":
            raise StoreError(
                f"{self.path}: SQLite cannot use a write-ahead log here (journal mode {mode}); "
                "put DATA_DIR on a local file system"
            )

    def _migrate(self) -> None:
        with self._write() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            current = conn.execute("SELECT max(version) FROM schema_version").fetchone()[0] or 0
            if current > len(MIGRATIONS):
                raise StoreError(
                    f"{self.path}: schema version {current} is newer than this release-guard "
                    f"knows ({len(MIGRATIONS)}): upgrade release-guard"
                )
            for version in range(current + 1, len(MIGRATIONS) + 1):
                for statement in MIGRATIONS[version - 1]:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_version (version, applied_at) VALUES (?, ?)",
                    (version, self._clock()),
                )

    async def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, self._close_sync)
        executor.shutdown(wait=False)

    def _close_sync(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    async def ping(self) -> bool:
        try:
            return await self._call(self._ping_sync)
        except (StoreError, RuntimeError):
            return False

    def _ping_sync(self) -> bool:
        self._db.execute("SELECT max(version) FROM schema_version").fetchone()
        return True

    # -- deliveries ----------------------------------------------------------------------------

    async def record_delivery(self, delivery: Delivery, jobs: Sequence[JobSpec]) -> bool:
        """Record a delivery (see Store); concurrent calls share one transaction and one fsync.

        Group commit: deliveries that arrive while a transaction is being written wait for the
        next one, which records all of them, each in its own savepoint (one failing delivery
        does not undo the others). Every caller still returns only after its data is committed.
        """
        if self._executor is None:
            raise StoreError(f"{self.path}: the store is not open")
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((delivery, tuple(jobs), future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_deliveries())
        return await future

    async def _flush_deliveries(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            outcomes: Sequence[bool | Exception]
            try:
                outcomes = await self._call(
                    self._record_batch_sync, [(delivery, jobs) for delivery, jobs, _ in batch]
                )
            except Exception as exc:  # the transaction failed as a whole
                outcomes = [exc] * len(batch)
            for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                if future.done():  # the caller went away; its delivery is recorded anyway
                    continue
                if isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    def _record_batch_sync(
        self, batch: list[tuple[Delivery, tuple[JobSpec, ...]]]
    ) -> list[bool | Exception]:
        outcomes: list[bool | Exception] = []
        with self._write() as conn:
            for delivery, jobs in batch:
                conn.execute("SAVEPOINT delivery")
                try:
                    outcomes.append(self._record_delivery_sync(conn, delivery, jobs))
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK TO delivery")
                    outcomes.append(StoreError(f"{self.path}: {exc}"))
                except Exception as exc:  # a bad value in this delivery only
                    conn.execute("ROLLBACK TO delivery")
                    outcomes.append(exc)
                conn.execute("RELEASE delivery")
        return outcomes

    def _record_delivery_sync(
        self, conn: sqlite3.Connection, delivery: Delivery, jobs: tuple[JobSpec, ...]
    ) -> bool:
        now = self._clock()
        name = f"{delivery.event}.{delivery.action}" if delivery.action else delivery.event
        inserted = conn.execute(
            "INSERT INTO deliveries (delivery_id, event, action, received_at, payload_sha256,"
            " outcome) VALUES (?, ?, ?, ?, ?, 'recorded')"
            " ON CONFLICT (delivery_id) DO NOTHING",
            (
                delivery.delivery_id,
                delivery.event,
                delivery.action,
                now,
                delivery.payload_sha256,
            ),
        ).rowcount
        if not inserted:
            return False
        queued = 0
        for spec in jobs:
            row = conn.execute(
                "INSERT INTO jobs (delivery_id, kind, installation_id, repository, head_sha,"
                " details, dedupe_key, state, not_before, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)"
                f" ON CONFLICT (dedupe_key) WHERE {_PENDING} DO NOTHING RETURNING id",
                (
                    delivery.delivery_id,
                    spec.kind.value,
                    spec.installation_id,
                    spec.repository,
                    spec.head_sha,
                    json.dumps(spec.details),
                    spec.dedupe_key,
                    now,
                    now,
                    now,
                ),
            ).fetchall()  # RETURNING: read every row so the statement is finished
            data = {"event": delivery.event, "action": delivery.action}
            if row:
                queued += 1
                self._audit_sync(
                    conn,
                    row[0][0],
                    delivery.delivery_id,
                    now,
                    "received",
                    f"{name} delivery {delivery.delivery_id}",
                    data,
                )
                self._audit_sync(
                    conn,
                    row[0][0],
                    delivery.delivery_id,
                    now,
                    "queued",
                    f"queued as a {spec.kind.value} job",
                    {},
                )
            else:
                existing = conn.execute(
                    f"SELECT id FROM jobs WHERE dedupe_key = ? AND {_PENDING}",
                    (spec.dedupe_key,),
                ).fetchone()[0]
                self._audit_sync(
                    conn,
                    existing,
                    delivery.delivery_id,
                    now,
                    "received",
                    f"{name} delivery {delivery.delivery_id} asks for the same"
                    " work: folded into this job",
                    data,
                )
        outcome = "queued" if queued else ("coalesced" if jobs else "recorded")
        conn.execute(
            "UPDATE deliveries SET outcome = ? WHERE delivery_id = ?",
            (outcome, delivery.delivery_id),
        )
        return True

    # -- the queue -----------------------------------------------------------------------------

    async def claim(self, worker_id: str, lease: float) -> Job | None:
        return await self._call(self._claim_sync, worker_id, lease)

    _DUE: Final = (
        "(state = 'queued' AND not_before <= :now) OR (state = 'running' AND lease_expires < :now)"
    )

    def _claim_sync(self, worker_id: str, lease: float) -> Job | None:
        now = self._clock()
        db = self._db
        # Look before taking the write lock: an idle poll then costs one read, no lock.
        if (
            db.execute(f"SELECT 1 FROM jobs WHERE {self._DUE} LIMIT 1", {"now": now}).fetchone()
            is None
        ):
            return None
        with self._write() as conn:
            row = conn.execute(
                f"SELECT id, state, lease_owner FROM jobs WHERE {self._DUE}"
                " ORDER BY not_before, id LIMIT 1",
                {"now": now},
            ).fetchone()
            if row is None:
                return None
            job_row = conn.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?,"
                " lease_expires = ?, updated_at = ? WHERE id = ? RETURNING *",
                (worker_id, now + lease, now, row["id"]),
            ).fetchall()[0]
            if row["state"] == JobState.RUNNING:
                self._audit_sync(
                    conn,
                    row["id"],
                    None,
                    now,
                    "reclaimed",
                    f"the lease of {row['lease_owner']} expired",
                    {},
                )
        return _job(job_row)

    def _leased(
        self, conn: sqlite3.Connection, sql: str, params: tuple[Any, ...], job: Job
    ) -> None:
        """Run an UPDATE on `job` only while this claim still holds it (owner and attempt)."""
        changed = conn.execute(
            f"{sql} WHERE id = ? AND state = 'running' AND lease_owner = ? AND attempts = ?",
            (*params, job.id, job.lease_owner, job.attempts),
        ).rowcount
        if not changed:
            raise LeaseLost(f"job {job.id} is no longer leased to {job.lease_owner}")

    async def renew(self, job: Job, lease: float) -> bool:
        return await self._call(self._renew_sync, job, lease)

    def _renew_sync(self, job: Job, lease: float) -> bool:
        now = self._clock()
        try:
            with self._write() as conn:
                self._leased(
                    conn,
                    "UPDATE jobs SET lease_expires = ?, updated_at = ?",
                    (now + lease, now),
                    job,
                )
        except LeaseLost:
            return False
        return True

    async def complete(self, job: Job, state: JobState, summary: str) -> None:
        if state not in (JobState.DONE, JobState.FAILED):
            raise ValueError(f"a job completes as done or failed, not {state}")
        await self._call(self._complete_sync, job, state, summary)

    def _complete_sync(self, job: Job, state: JobState, summary: str) -> None:
        now = self._clock()
        with self._write() as conn:
            self._leased(
                conn,
                "UPDATE jobs SET state = ?, result_summary = ?, lease_owner = NULL,"
                " lease_expires = NULL, updated_at = ?",
                (state.value, summary, now),
                job,
            )
            self._audit_sync(
                conn, job.id, job.delivery_id, now, state.value, summary, {"attempts": job.attempts}
            )

    async def retry_later(self, job: Job, delay: float, reason: str) -> None:
        await self._call(self._retry_later_sync, job, max(0.0, delay), reason)

    def _retry_later_sync(self, job: Job, delay: float, reason: str) -> None:
        now = self._clock()
        with self._write() as conn:
            self._leased(
                conn,
                "UPDATE jobs SET state = 'queued', not_before = ?, result_summary = ?,"
                " lease_owner = NULL, lease_expires = NULL, updated_at = ?",
                (now + delay, reason, now),
                job,
            )
            self._audit_sync(
                conn,
                job.id,
                job.delivery_id,
                now,
                "retry",
                f"attempt {job.attempts} will be retried in {delay:.0f}s: {reason}",
                {"delay": round(delay, 3), "attempts": job.attempts},
            )

    async def set_check_run(self, job: Job, check_run_id: int) -> None:
        await self._call(self._set_check_run_sync, job, check_run_id)

    def _set_check_run_sync(self, job: Job, check_run_id: int) -> None:
        now = self._clock()
        with self._write() as conn:
            self._leased(
                conn, "UPDATE jobs SET check_run_id = ?, updated_at = ?", (check_run_id, now), job
            )
            self._audit_sync(
                conn,
                job.id,
                job.delivery_id,
                now,
                "check_run",
                f"reporting on check run {check_run_id}",
                {"check_run_id": check_run_id},
            )

    async def reclaim(self, lease_owners: Collection[str], reason: str) -> int:
        if not lease_owners:
            return 0
        return await self._call(self._reclaim_sync, tuple(lease_owners), reason)

    def _reclaim_sync(self, owners: tuple[str, ...], reason: str) -> int:
        now = self._clock()
        marks = ", ".join("?" for _ in owners)
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE jobs SET state = 'queued', not_before = ?, lease_owner = NULL,"
                " lease_expires = NULL, updated_at = ?"
                f" WHERE state = 'running' AND lease_owner IN ({marks})"
                " RETURNING id, delivery_id",
                (now, now, *owners),
            ).fetchall()
            for row in rows:
                self._audit_sync(conn, row["id"], row["delivery_id"], now, "reclaimed", reason, {})
        return len(rows)

    # -- the audit trail -----------------------------------------------------------------------

    async def audit(
        self,
        job_id: int | None,
        stage: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        *,
        delivery_id: str | None = None,
    ) -> None:
        await self._call(
            self._audit_one_sync, job_id, delivery_id, stage, message, dict(data or {})
        )

    def _audit_one_sync(
        self,
        job_id: int | None,
        delivery_id: str | None,
        stage: str,
        message: str,
        data: dict[str, Any],
    ) -> None:
        now = self._clock()
        with self._write() as conn:
            if delivery_id is None and job_id is not None:
                found = conn.execute(
                    "SELECT delivery_id FROM jobs WHERE id = ?", (job_id,)
                ).fetchone()
                delivery_id = found[0] if found else None
            self._audit_sync(conn, job_id, delivery_id, now, stage, message, data)

    @staticmethod
    def _audit_sync(
        conn: sqlite3.Connection,
        job_id: int | None,
        delivery_id: str | None,
        at: float,
        stage: str,
        message: str,
        data: Mapping[str, Any],
    ) -> None:
        conn.execute(
            "INSERT INTO audit_events (job_id, delivery_id, at, stage, message, data)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, delivery_id, at, stage, message, json.dumps(data, default=str)),
        )

    # -- reading -------------------------------------------------------------------------------

    async def get_job(self, job_id: int) -> Job | None:
        return await self._call(self._get_job_sync, job_id)

    def _get_job_sync(self, job_id: int) -> Job | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    async def list_jobs(self, limit: int = 50, *, state: JobState | None = None) -> list[Job]:
        return await self._call(self._list_jobs_sync, limit, state)

    def _list_jobs_sync(self, limit: int, state: JobState | None) -> list[Job]:
        if state is None:
            rows = self._db.execute("SELECT * FROM jobs ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE state = ? ORDER BY id DESC LIMIT ?",
                (state.value, limit),
            )
        return [_job(row) for row in rows.fetchall()]

    async def audit_trail(self, job_id: int) -> list[AuditEvent]:
        return await self._call(self._audit_trail_sync, job_id)

    def _audit_trail_sync(self, job_id: int) -> list[AuditEvent]:
        rows = self._db.execute(
            "SELECT * FROM audit_events WHERE job_id = ? ORDER BY id", (job_id,)
        ).fetchall()
        return [
            AuditEvent(
                id=row["id"],
                job_id=row["job_id"],
                delivery_id=row["delivery_id"],
                at=row["at"],
                stage=row["stage"],
                message=row["message"],
                data=json.loads(row["data"]),
            )
            for row in rows
        ]

    # -- for tests and tools -------------------------------------------------------------------

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one raw statement (tests use it to show the audit trail refuses UPDATE)."""
        return await self._call(self._execute_sync, sql, tuple(params))

    def _execute_sync(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._write() as conn:
            return [tuple(row) for row in conn.execute(sql, params).fetchall()]


def _job(row: sqlite3.Row) -> Job:
    return Job(
        id=row["id"],
        delivery_id=row["delivery_id"],
        kind=JobKind(row["kind"]),
        installation_id=row["installation_id"],
        repository=row["repository"],
        head_sha=row["head_sha"],
        details=json.loads(row["details"]),
        dedupe_key=row["dedupe_key"],
        state=JobState(row["state"]),
        attempts=row["attempts"],
        not_before=row["not_before"],
        lease_owner=row["lease_owner"],
        lease_expires=row["lease_expires"],
        check_run_id=row["check_run_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        result_summary=row["result_summary"],
    )
