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
- It is also the `RetentionIndex` (schema version 2): the metadata of retained artifacts, and
  the `ScanLedger` (schema version 4): verdicts and check-run coverage, so each artifact is
  scanned once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from bot.events import JobSpec
from bot.store.base import (
    AmbiguousId,
    AuditEvent,
    CheckCoverage,
    Delivery,
    Job,
    JobState,
    LeaseLost,
    RedeliveryRecord,
    RetainedFilter,
    RetainedRecord,
    RetainedState,
    Sighting,
    StoredVerdict,
    StoreError,
    StoreMissing,
)
from bot.store.common import (
    PENDING,
    RECOVERY_ROW,
    REDELIVERIES_KEPT,
    RESCANS_KEPT,
    SCANS_KEPT,
    coverage_from_row,
    coverage_params,
    job_from_row,
    lock_key_sql,
    retained_from_row,
    retained_query,
    sighting_from_row,
    verdict_from_row,
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
    # 2: the index of retained artifacts (issue 5); the bytes live in ARTIFACT_STORE.
    (
        """CREATE TABLE retained (
            id TEXT PRIMARY KEY,
            digest TEXT NOT NULL,
            size INTEGER NOT NULL,
            repository TEXT NOT NULL,
            head_sha TEXT NOT NULL,
            artifact_name TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('kept', 'pending', 'failed')),
            kept_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            last_seen_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL,
            last_error TEXT,
            spool_path TEXT
        )""",
        "CREATE INDEX retained_by_digest ON retained (digest)",
        "CREATE INDEX retained_by_repository ON retained (repository COLLATE NOCASE, head_sha)",
        "CREATE INDEX retained_due ON retained (state, next_attempt_at)",
        """CREATE TABLE retained_sightings (
            id INTEGER PRIMARY KEY,
            retained_id TEXT NOT NULL REFERENCES retained (id) ON DELETE CASCADE,
            seen_at REAL NOT NULL,
            artifact_name TEXT NOT NULL,
            installation_id INTEGER,
            event TEXT,
            delivery_id TEXT,
            job_id INTEGER,
            pull_request INTEGER,
            release TEXT,
            workflow_run_id INTEGER,
            artifact_id INTEGER,
            check_run_url TEXT,
            findings TEXT NOT NULL DEFAULT '[]'
        )""",
        "CREATE INDEX retained_sightings_by_record ON retained_sightings (retained_id, id)",
    ),
    (
        # Recent rescans, shared by every worker: a command recorded before a rescan of the
        # same commit started is answered by it, whichever worker ran it.
        """CREATE TABLE rescans (
            key TEXT PRIMARY KEY,
            result TEXT NOT NULL,
            recorded_at REAL NOT NULL
        )""",
        "CREATE INDEX rescans_by_time ON rescans (recorded_at)",
    ),
    (
        # Scanned once (issue 15): verdicts by what was scanned, policy and engine; and what
        # each commit's latest pull-request check run covers.
        """CREATE TABLE scan_verdicts (
            key TEXT PRIMARY KEY,
            report TEXT NOT NULL,
            retained_id TEXT,
            recorded_at REAL NOT NULL
        )""",
        "CREATE INDEX scan_verdicts_by_time ON scan_verdicts (recorded_at)",
        """CREATE TABLE check_coverage (
            repository TEXT NOT NULL,
            head_sha TEXT NOT NULL,
            check_run_id INTEGER NOT NULL,
            inputs TEXT NOT NULL,
            job_id INTEGER NOT NULL,
            recorded_at REAL NOT NULL,
            PRIMARY KEY (repository, head_sha)
        )""",
        "CREATE INDEX check_coverage_by_time ON check_coverage (recorded_at)",
    ),
    (
        # The recovery sweep of failed webhook deliveries (bot.app.recovery): its high-water
        # mark and who sweeps, in one row, and the redeliveries asked for per GUID.
        """CREATE TABLE recovery_state (
            name TEXT PRIMARY KEY,
            mark REAL,
            sweeper TEXT,
            sweeper_until REAL
        )""",
        """CREATE TABLE redeliveries (
            guid TEXT PRIMARY KEY,
            requests INTEGER NOT NULL,
            first_requested_at REAL NOT NULL,
            last_requested_at REAL NOT NULL
        )""",
        "CREATE INDEX redeliveries_by_time ON redeliveries (last_requested_at)",
    ),
)

_STATE_RANK: Final = {RetainedState.FAILED: 0, RetainedState.PENDING: 1, RetainedState.KEPT: 2}
"""A merge keeps the better state: bytes kept beat bytes waiting, which beat bytes lost."""


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
                f" ON CONFLICT (dedupe_key) WHERE {PENDING} DO NOTHING RETURNING id",
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
                    f"SELECT id FROM jobs WHERE dedupe_key = ? AND {PENDING}",
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
        """Lease the next due job, unless a job with its `lock_key` runs on a live lease.

        A job blocked so is passed over, not waited for: the next due job is taken instead.
        """
        return await self._call(self._claim_sync, worker_id, lease)

    _DUE: Final = (
        "((jobs.state = 'queued' AND jobs.not_before <= :now)"
        " OR (jobs.state = 'running' AND jobs.lease_expires < :now))"
    )
    # Job.lock_key in SQL: a due job waits while another job with its key runs on a live lease.
    _UNLOCKED: Final = (
        "NOT EXISTS (SELECT 1 FROM jobs AS other WHERE other.state = 'running'"
        " AND other.lease_expires >= :now AND other.id <> jobs.id"
        f" AND {lock_key_sql('other')} = {lock_key_sql('jobs')})"
    )
    _CLAIMABLE: Final = f"{_DUE} AND {_UNLOCKED}"

    def _claim_sync(self, worker_id: str, lease: float) -> Job | None:
        now = self._clock()
        db = self._db
        # Look before taking the write lock: an idle poll then costs one read, no lock.
        if (
            db.execute(
                f"SELECT 1 FROM jobs WHERE {self._CLAIMABLE} LIMIT 1", {"now": now}
            ).fetchone()
            is None
        ):
            return None
        with self._write() as conn:
            row = conn.execute(
                f"SELECT id, state, lease_owner FROM jobs WHERE {self._CLAIMABLE}"
                " ORDER BY not_before, id LIMIT 1",
                {"now": now},
            ).fetchone()
            if row is None:
                return None
            return self._lease_sync(
                conn, row, worker_id, lease, now, f"the lease of {row['lease_owner']} expired"
            )

    async def start(self, job_id: int, worker_id: str, lease: float) -> Job | None:
        return await self._call(self._start_sync, job_id, worker_id, lease)

    def _start_sync(self, job_id: int, worker_id: str, lease: float) -> Job | None:
        now = self._clock()
        with self._write() as conn:
            row = conn.execute(
                f"SELECT id, state, lease_owner FROM jobs WHERE id = ? AND {PENDING}",
                (job_id,),
            ).fetchone()
            if row is None:
                return None
            return self._lease_sync(
                conn,
                row,
                worker_id,
                lease,
                now,
                f"{row['lease_owner']} stopped before finishing it",
            )

    def _lease_sync(
        self,
        conn: sqlite3.Connection,
        row: sqlite3.Row,
        worker_id: str,
        lease: float,
        now: float,
        reclaimed: str,
    ) -> Job:
        """Lease the job `row` names to `worker_id`; audit `reclaimed` if it was running."""
        job_row = conn.execute(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = ?,"
            " lease_expires = ?, updated_at = ? WHERE id = ? RETURNING *",
            (worker_id, now + lease, now, row["id"]),
        ).fetchall()[0]
        if row["state"] == JobState.RUNNING:
            self._audit_sync(conn, row["id"], None, now, "reclaimed", reclaimed, {})
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

    async def recent_rescan(self, key: str) -> dict[str, Any] | None:
        """The last rescan recorded for `key` (see `bot.handlers.comments`), or None."""
        return await self._call(self._recent_rescan_sync, key)

    def _recent_rescan_sync(self, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT result FROM rescans WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        value = json.loads(row[0])
        return value if isinstance(value, dict) else None

    async def record_rescan(self, key: str, result: Mapping[str, Any]) -> None:
        """Remember a finished rescan for `key`, and forget those older than a day."""
        await self._call(self._record_rescan_sync, key, json.dumps(dict(result)))

    def _record_rescan_sync(self, key: str, result: str) -> None:
        now = self._clock()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO rescans (key, result, recorded_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET result = excluded.result,"
                " recorded_at = excluded.recorded_at",
                (key, result, now),
            )
            conn.execute("DELETE FROM rescans WHERE recorded_at < ?", (now - RESCANS_KEPT,))

    # -- scanned once (ScanLedger) ---------------------------------------------------------------

    async def get_verdict(self, key: str) -> StoredVerdict | None:
        return await self._call(self._get_verdict_sync, key)

    def _get_verdict_sync(self, key: str) -> StoredVerdict | None:
        row = self._db.execute("SELECT * FROM scan_verdicts WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return verdict_from_row({**dict(row), "report": json.loads(row["report"])})

    async def put_verdict(self, verdict: StoredVerdict) -> None:
        await self._call(self._put_verdict_sync, verdict)

    def _put_verdict_sync(self, verdict: StoredVerdict) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO scan_verdicts (key, report, retained_id, recorded_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET report = excluded.report,"
                " retained_id = excluded.retained_id, recorded_at = excluded.recorded_at",
                (
                    verdict.key,
                    json.dumps(verdict.report),
                    verdict.retained_id,
                    verdict.recorded_at,
                ),
            )
            conn.execute(
                "DELETE FROM scan_verdicts WHERE recorded_at < ?", (self._clock() - SCANS_KEPT,)
            )

    async def get_coverage(self, repository: str, head_sha: str) -> CheckCoverage | None:
        return await self._call(self._get_coverage_sync, repository, head_sha)

    def _get_coverage_sync(self, repository: str, head_sha: str) -> CheckCoverage | None:
        row = self._db.execute(
            "SELECT * FROM check_coverage WHERE repository = ? AND head_sha = ?",
            (repository.lower(), head_sha.lower()),
        ).fetchone()
        return None if row is None else coverage_from_row(row)

    async def put_coverage(self, coverage: CheckCoverage) -> None:
        await self._call(self._put_coverage_sync, coverage)

    def _put_coverage_sync(self, coverage: CheckCoverage) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO check_coverage"
                " (repository, head_sha, check_run_id, inputs, job_id, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (repository, head_sha) DO UPDATE SET"
                " check_run_id = excluded.check_run_id, inputs = excluded.inputs,"
                " job_id = excluded.job_id, recorded_at = excluded.recorded_at",
                coverage_params(coverage),
            )
            conn.execute(
                "DELETE FROM check_coverage WHERE recorded_at < ?", (self._clock() - SCANS_KEPT,)
            )

    async def get_job(self, job_id: int) -> Job | None:
        return await self._call(self._get_job_sync, job_id)

    def _get_job_sync(self, job_id: int) -> Job | None:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _job(row)

    async def pending_jobs(self) -> dict[JobState, int]:
        """How many jobs are queued and running, for the whole App (the queue's depth)."""
        return await self._call(self._pending_jobs_sync)

    def _pending_jobs_sync(self) -> dict[JobState, int]:
        counts = {JobState.QUEUED: 0, JobState.RUNNING: 0}
        rows = self._db.execute(
            f"SELECT state, count(*) FROM jobs WHERE {PENDING} GROUP BY state"
        ).fetchall()
        for state, count in rows:
            counts[JobState(state)] = int(count)
        return counts

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

    # -- retained artifacts (RetentionIndex) ---------------------------------------------------

    async def upsert_retained(
        self, record: RetainedRecord, sighting: Sighting
    ) -> tuple[RetainedRecord, bool]:
        return await self._call(self._upsert_retained_sync, record, sighting)

    def _upsert_retained_sync(
        self, record: RetainedRecord, sighting: Sighting
    ) -> tuple[RetainedRecord, bool]:
        with self._write() as conn:
            row = conn.execute("SELECT * FROM retained WHERE id = ?", (record.id,)).fetchone()
            created = row is None
            if row is None:
                conn.execute(
                    "INSERT INTO retained (id, digest, size, repository, head_sha, artifact_name,"
                    " state, kept_at, expires_at, last_seen_at, attempts, next_attempt_at,"
                    " last_error, spool_path) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        record.digest,
                        record.size,
                        record.repository,
                        record.commit,
                        record.artifact_name,
                        record.state.value,
                        record.kept_at,
                        record.expires_at,
                        record.last_seen_at,
                        record.attempts,
                        record.next_attempt_at,
                        record.last_error,
                        record.spool_path,
                    ),
                )
            else:
                existing = _retained(row)
                better = _STATE_RANK[record.state] > _STATE_RANK[existing.state]
                source = record if better else existing
                conn.execute(
                    "UPDATE retained SET state = ?, expires_at = max(expires_at, ?),"
                    " last_seen_at = max(last_seen_at, ?), attempts = ?, next_attempt_at = ?,"
                    " last_error = ?, spool_path = ? WHERE id = ?",
                    (
                        source.state.value,
                        record.expires_at,
                        record.last_seen_at,
                        source.attempts,
                        source.next_attempt_at,
                        source.last_error,
                        source.spool_path,
                        record.id,
                    ),
                )
            if not self._seen_before(conn, record.id, sighting):
                self._insert_sighting(conn, record.id, sighting)
            stored = self._retained_by_id(conn, record.id)
        if stored is None:  # pragma: no cover - written in the same transaction
            raise StoreError(f"retained artifact {record.id} vanished while it was written")
        return stored, created

    @staticmethod
    def _seen_before(conn: sqlite3.Connection, retained_id: str, sighting: Sighting) -> bool:
        """Whether a retried job already recorded this sighting (same delivery, job, artifact)."""
        if sighting.delivery_id is None and sighting.job_id is None:
            return False
        found = conn.execute(
            "SELECT 1 FROM retained_sightings WHERE retained_id = ? AND delivery_id IS ?"
            " AND job_id IS ? AND artifact_id IS ? AND artifact_name = ?",
            (
                retained_id,
                sighting.delivery_id,
                sighting.job_id,
                sighting.artifact_id,
                sighting.artifact_name,
            ),
        ).fetchone()
        return found is not None

    @staticmethod
    def _insert_sighting(conn: sqlite3.Connection, retained_id: str, sighting: Sighting) -> None:
        conn.execute(
            "INSERT INTO retained_sightings (retained_id, seen_at, artifact_name,"
            " installation_id, event, delivery_id, job_id, pull_request, release,"
            " workflow_run_id, artifact_id, check_run_url, findings)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                retained_id,
                sighting.seen_at,
                sighting.artifact_name,
                sighting.installation_id,
                sighting.event,
                sighting.delivery_id,
                sighting.job_id,
                sighting.pull_request,
                sighting.release,
                sighting.workflow_run_id,
                sighting.artifact_id,
                sighting.check_run_url,
                json.dumps(list(sighting.findings), default=str),
            ),
        )

    _RETAINED_COLUMNS: Final = (
        "retained.*, (SELECT count(*) FROM retained_sightings s"
        " WHERE s.retained_id = retained.id) AS sighting_count"
    )

    def _retained_by_id(self, conn: sqlite3.Connection, retained_id: str) -> RetainedRecord | None:
        row = conn.execute(
            f"SELECT {self._RETAINED_COLUMNS} FROM retained WHERE id = ?", (retained_id,)
        ).fetchone()
        return None if row is None else _retained(row)

    async def update_retained(
        self,
        retained_id: str,
        *,
        state: RetainedState,
        attempts: int,
        next_attempt_at: float | None,
        last_error: str | None,
        spool_path: str | None,
    ) -> None:
        await self._call(
            self._update_retained_sync,
            retained_id,
            state,
            attempts,
            next_attempt_at,
            last_error,
            spool_path,
        )

    def _update_retained_sync(
        self,
        retained_id: str,
        state: RetainedState,
        attempts: int,
        next_attempt_at: float | None,
        last_error: str | None,
        spool_path: str | None,
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE retained SET state = ?, attempts = ?, next_attempt_at = ?,"
                " last_error = ?, spool_path = ? WHERE id = ?",
                (state.value, attempts, next_attempt_at, last_error, spool_path, retained_id),
            )

    async def get_retained(self, retained_id: str) -> RetainedRecord | None:
        return await self._call(self._get_retained_sync, retained_id)

    def _get_retained_sync(self, retained_id: str) -> RetainedRecord | None:
        conn = self._db
        record = self._retained_by_id(conn, retained_id)
        if record is None and retained_id:
            rows = conn.execute(
                "SELECT id FROM retained WHERE substr(id, 1, ?) = ? ORDER BY id LIMIT 2",
                (len(retained_id), retained_id),
            ).fetchall()
            if len(rows) > 1:
                raise AmbiguousId(f"{retained_id!r} names more than one retained artifact")
            record = self._retained_by_id(conn, rows[0]["id"]) if rows else None
        if record is None:
            return None
        sightings = conn.execute(
            "SELECT * FROM retained_sightings WHERE retained_id = ? ORDER BY id", (record.id,)
        ).fetchall()
        return dataclasses.replace(record, sightings=tuple(_sighting(row) for row in sightings))

    async def list_retained(self, query: RetainedFilter) -> list[RetainedRecord]:
        return await self._call(self._list_retained_sync, query)

    def _list_retained_sync(self, query: RetainedFilter) -> list[RetainedRecord]:
        sql, params = retained_query(self._RETAINED_COLUMNS, query, "sqlite")
        return [_retained(row) for row in self._db.execute(sql, params).fetchall()]

    async def due_retained(self, now: float) -> list[RetainedRecord]:
        return await self._call(self._due_retained_sync, now)

    def _due_retained_sync(self, now: float) -> list[RetainedRecord]:
        rows = self._db.execute(
            f"SELECT {self._RETAINED_COLUMNS} FROM retained WHERE state = 'pending'"
            " AND coalesce(next_attempt_at, 0) <= ? ORDER BY next_attempt_at, id",
            (now,),
        ).fetchall()
        return [_retained(row) for row in rows]

    async def delete_retained(self, retained_ids: Collection[str]) -> set[str]:
        if not retained_ids:
            return set()
        return await self._call(self._delete_retained_sync, tuple(retained_ids))

    def _delete_retained_sync(self, ids: tuple[str, ...]) -> set[str]:
        digests: set[str] = set()
        with self._write() as conn:
            for start in range(0, len(ids), 500):
                batch = ids[start : start + 500]
                marks = ", ".join("?" for _ in batch)
                digests.update(
                    row[0]
                    for row in conn.execute(
                        f"DELETE FROM retained WHERE id IN ({marks}) RETURNING digest", batch
                    ).fetchall()
                )
            still = {
                row[0]
                for row in conn.execute("SELECT DISTINCT digest FROM retained").fetchall()
                if row[0] in digests
            }
        return digests - still

    async def referenced_digests(self) -> set[str]:
        return await self._call(self._referenced_digests_sync)

    def _referenced_digests_sync(self) -> set[str]:
        rows = self._db.execute("SELECT DISTINCT digest FROM retained").fetchall()
        return {row[0] for row in rows}

    # -- recovering failed webhook deliveries (DeliveryLedger) --------------------------------

    async def recorded_deliveries(self, delivery_ids: Collection[str]) -> set[str]:
        return await self._call(self._recorded_deliveries_sync, tuple(set(delivery_ids)))

    def _recorded_deliveries_sync(self, ids: tuple[str, ...]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit, well within
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT delivery_id FROM deliveries WHERE delivery_id IN ({marks})", chunk
            ).fetchall()
            found.update(str(row[0]) for row in rows)
        return found

    async def recovery_mark(self) -> float | None:
        return await self._call(self._recovery_mark_sync)

    def _recovery_mark_sync(self) -> float | None:
        row = self._db.execute(
            "SELECT mark FROM recovery_state WHERE name = ?", (RECOVERY_ROW,)
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    async def set_recovery_mark(self, mark: float) -> None:
        await self._call(self._set_recovery_mark_sync, mark)

    def _set_recovery_mark_sync(self, mark: float) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO recovery_state (name, mark) VALUES (?, ?) ON CONFLICT (name)"
                " DO UPDATE SET mark = max(coalesce(recovery_state.mark, excluded.mark),"
                " excluded.mark)",
                (RECOVERY_ROW, mark),
            )

    async def redeliveries(self, guids: Collection[str]) -> dict[str, RedeliveryRecord]:
        return await self._call(self._redeliveries_sync, tuple(set(guids)))

    def _redeliveries_sync(self, guids: tuple[str, ...]) -> dict[str, RedeliveryRecord]:
        found: dict[str, RedeliveryRecord] = {}
        for start in range(0, len(guids), 500):
            chunk = guids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT guid, requests, last_requested_at FROM redeliveries"
                f" WHERE guid IN ({marks})",
                chunk,
            ).fetchall()
            for row in rows:
                found[row[0]] = RedeliveryRecord(row[0], int(row[1]), float(row[2]))
        return found

    async def note_redeliveries(self, guids: Collection[str]) -> dict[str, RedeliveryRecord]:
        return await self._call(self._note_redeliveries_sync, tuple(dict.fromkeys(guids)))

    def _note_redeliveries_sync(self, guids: tuple[str, ...]) -> dict[str, RedeliveryRecord]:
        now = self._clock()
        noted: dict[str, RedeliveryRecord] = {}
        with self._write() as conn:
            conn.execute(
                "DELETE FROM redeliveries WHERE last_requested_at < ?", (now - REDELIVERIES_KEPT,)
            )
            for guid in guids:
                row = conn.execute(
                    "INSERT INTO redeliveries (guid, requests, first_requested_at,"
                    " last_requested_at) VALUES (?, 1, ?, ?) ON CONFLICT (guid) DO UPDATE SET"
                    " requests = redeliveries.requests + 1,"
                    " last_requested_at = excluded.last_requested_at"
                    " RETURNING requests, last_requested_at",
                    (guid, now, now),
                ).fetchone()
                noted[guid] = RedeliveryRecord(guid, int(row[0]), float(row[1]))
        return noted

    @contextlib.asynccontextmanager
    async def sweep_lock(self, owner: str, lease: float) -> AsyncIterator[bool]:
        """A lease on the recovery row: one sweeper at a time among the processes of this file.

        A process that dies holding it blocks the others until `lease` seconds have passed.
        """
        held = await self._call(self._take_sweep_sync, owner, lease)
        try:
            yield held
        finally:
            if held:
                with contextlib.suppress(StoreError):
                    await self._call(self._release_sweep_sync, owner)

    def _take_sweep_sync(self, owner: str, lease: float) -> bool:
        now = self._clock()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO recovery_state (name) VALUES (?) ON CONFLICT (name) DO NOTHING",
                (RECOVERY_ROW,),
            )
            taken = conn.execute(
                "UPDATE recovery_state SET sweeper = ?, sweeper_until = ? WHERE name = ?"
                " AND (sweeper IS NULL OR sweeper = ? OR sweeper_until < ?)",
                (owner, now + lease, RECOVERY_ROW, owner, now),
            ).rowcount
        return taken == 1

    def _release_sweep_sync(self, owner: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE recovery_state SET sweeper = NULL, sweeper_until = NULL"
                " WHERE name = ? AND sweeper = ?",
                (RECOVERY_ROW, owner),
            )

    # -- for tests and tools -------------------------------------------------------------------

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one raw statement (tests use it to show the audit trail refuses UPDATE)."""
        return await self._call(self._execute_sync, sql, tuple(params))

    def _execute_sync(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._write() as conn:
            return [tuple(row) for row in conn.execute(sql, params).fetchall()]


def _job(row: sqlite3.Row) -> Job:
    return job_from_row({**dict(row), "details": json.loads(row["details"])})


def _retained(row: sqlite3.Row) -> RetainedRecord:
    return retained_from_row(dict(row))


def _sighting(row: sqlite3.Row) -> Sighting:
    return sighting_from_row({**dict(row), "findings": json.loads(row["findings"])})
