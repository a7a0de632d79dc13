"""The scale-out store: PostgreSQL, shared by any number of web and worker processes.

The same semantics as the SQLite store (`bot.store.sqlite`), which is the reference; what
differs is how they are obtained:

- One `psycopg_pool.AsyncConnectionPool` per process, opened by `open()` (which first
  migrates the schema, `bot.store.pg_schema`). The job queue (procrastinate, `bot.app.pgqueue`)
  runs on the same pool, exposed as `pool`. Pool connections are in autocommit mode: a
  single statement is its own transaction, several are grouped with `conn.transaction()`.
  The pool checks a connection before lending it (one empty query), so a connection the
  server closed (a restart, a failover) is replaced instead of failing a webhook.
- Few round trips: a write is one statement where it can be (a data-modifying CTE updates a
  job and appends its audit event together), and multi-statement transactions are sent in
  pipeline mode, so BEGIN, the statements and COMMIT travel together.
- `record_delivery` records the delivery, its jobs and their audit events in one transaction
  and calls the `on_queued` hook for each new job inside it (the queue defers its own job
  there), so all of it commits together or not at all. Concurrent deliveries with the same
  id, from any number of processes, are serialised by the unique `delivery_id`
  (INSERT … ON CONFLICT DO NOTHING waits for the first to commit); the same work asked twice
  by the partial unique index on `dedupe_key`.
- Every psycopg error becomes a StoreError whose message never shows the URL's password.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from typing import Any, Final, TypeAlias
from urllib.parse import quote

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

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
from bot.store.pg_schema import migrate

Connection: TypeAlias = psycopg.AsyncConnection[Any]
OnQueued: TypeAlias = Callable[[Connection, Job], Awaitable[None]]
Row: TypeAlias = dict[str, Any]

CLAIM_LOCK_KEY: Final[int] = 0x7267_636C_6169  # "rgclai": serialises `claim` (see there)
RECOVERY_LOCK: Final = "release-guard/recovery-sweep/"  # + the schema, hashed: one sweeper

_STATE_RANK: Final = {RetainedState.FAILED: 0, RetainedState.PENDING: 1, RetainedState.KEPT: 2}
"""A merge keeps the better state: bytes kept beat bytes waiting, which beat bytes lost."""


_ROLLED_BACK: Final = (
    pg_errors.DeadlockDetected,
    pg_errors.SerializationFailure,
    pg_errors.TransactionRollback,
)
_TRANSACTION_TRIES: Final = 3
"""How often `record_delivery` runs its transaction when PostgreSQL rolls it back on a deadlock
(two deliveries inserting the same pending jobs in opposite orders) or a serialisation
failure: the loser is simply run again, it cannot have committed anything."""


_DUE: Final = (
    "((j.state = 'queued' AND j.not_before <= %(now)s)"
    " OR (j.state = 'running' AND j.lease_expires < %(now)s))"
)
_UNLOCKED: Final = (
    "NOT EXISTS (SELECT 1 FROM jobs AS other WHERE other.state = 'running'"
    " AND other.lease_expires >= %(now)s AND other.id <> j.id"
    f" AND {lock_key_sql('other', 'postgresql')} = {lock_key_sql('j', 'postgresql')})"
)

_RECORD_SQL: Final = f"""
WITH delivery AS (
    INSERT INTO deliveries (delivery_id, event, action, received_at, payload_sha256, outcome)
    VALUES (%(delivery_id)s, %(event)s, %(action)s, %(now)s, %(payload_sha256)s, 'recorded')
    ON CONFLICT (delivery_id) DO NOTHING
    RETURNING delivery_id
), spec AS (
    SELECT * FROM jsonb_to_recordset(%(specs)s::jsonb) AS s (
        n integer, kind text, installation_id bigint, repository text, head_sha text,
        details jsonb, dedupe_key text)
), job AS (
    INSERT INTO jobs (delivery_id, kind, installation_id, repository, head_sha, details,
                      dedupe_key, state, not_before, created_at, updated_at)
    SELECT delivery.delivery_id, spec.kind, spec.installation_id, spec.repository,
           spec.head_sha, spec.details, spec.dedupe_key, 'queued', %(now)s, %(now)s, %(now)s
    FROM spec CROSS JOIN delivery
    ORDER BY spec.n
    ON CONFLICT (dedupe_key) WHERE {PENDING} DO NOTHING
    RETURNING *
), trail AS (
    INSERT INTO audit_events (job_id, delivery_id, at, stage, message, data)
    SELECT job.id, job.delivery_id, %(now)s, event.stage, event.message, event.data
    FROM job CROSS JOIN LATERAL (VALUES
        (1, 'received', %(received)s, %(received_data)s::jsonb),
        (2, 'queued', 'queued as a ' || job.kind || ' job', '{{}}'::jsonb)
    ) AS event (n, stage, message, data)
    ORDER BY job.id, event.n
)
SELECT (SELECT count(*) FROM delivery) > 0 AS recorded, job.*
FROM (VALUES (1)) AS one (x) LEFT JOIN job ON true
ORDER BY job.id
"""
"""Records the delivery and its new jobs, with their first audit events, in one statement.

The jobs are inserted only when the delivery is (a cross join with the delivery's row); a
spec whose dedupe key matches a pending job inserts nothing. There is always a first row, so
`recorded` tells a duplicate delivery from one without jobs."""

_FOLD_SQL: Final = f"""
INSERT INTO audit_events (job_id, delivery_id, at, stage, message, data)
SELECT jobs.id, %(delivery_id)s, %(now)s, 'received', %(message)s, %(data)s::jsonb
FROM unnest(%(keys)s::text[]) WITH ORDINALITY AS folded (key, n)
JOIN jobs ON jobs.dedupe_key = folded.key AND jobs.{PENDING}
ORDER BY folded.n
"""
"""Notes, on each pending job a spec was folded into, the delivery that asked again.

A separate statement from `_RECORD_SQL`: the job may have been committed by another
transaction while this one waited on the dedupe index, and only a new statement sees it."""

_LEASE_SQL: Final = """
WITH chosen AS (
    SELECT j.id, j.state, j.lease_owner FROM jobs AS j
    WHERE {where}
    ORDER BY j.not_before, j.id
    LIMIT 1
    {lock}
), leased AS (
    UPDATE jobs SET state = 'running', attempts = jobs.attempts + 1,
        lease_owner = %(worker_id)s, lease_expires = %(expires)s, updated_at = %(now)s
    FROM chosen WHERE jobs.id = chosen.id
    RETURNING jobs.*, chosen.state AS previous_state, chosen.lease_owner AS previous_owner
), trail AS (
    INSERT INTO audit_events (job_id, delivery_id, at, stage, message, data)
    SELECT leased.id, NULL, %(now)s, 'reclaimed', {message}, '{{}}'::jsonb
    FROM leased WHERE leased.previous_state = 'running'
)
SELECT * FROM leased
"""

_CLAIM_SQL: Final = _LEASE_SQL.format(
    where=f"{_DUE} AND {_UNLOCKED}",
    lock="FOR UPDATE SKIP LOCKED",
    message="'the lease of ' || coalesce(leased.previous_owner, '?') || ' expired'",
)
_START_SQL: Final = _LEASE_SQL.format(
    where=f"j.id = %(job_id)s AND j.{PENDING}",
    lock="FOR UPDATE",
    message="coalesce(leased.previous_owner, '?') || ' stopped before finishing it'",
)

_HELD: Final = (
    "WHERE id = %(id)s AND state = 'running' AND lease_owner = %(owner)s"
    " AND attempts = %(attempts)s"
)
"""Every change a worker makes to its job is conditional on still holding it."""

_LEASED_WITH_AUDIT: Final = """
WITH changed AS (
    UPDATE jobs SET {assignments} {held} RETURNING id
), trail AS (
    INSERT INTO audit_events (job_id, delivery_id, at, stage, message, data)
    SELECT changed.id, %(delivery_id)s, %(now)s, %(stage)s, %(message)s, %(data)s::jsonb
    FROM changed
)
SELECT count(*) FROM changed
"""

_RETAINED_COLUMNS: Final = (
    "retained.*, (SELECT count(*) FROM retained_sightings s"
    " WHERE s.retained_id = retained.id) AS sighting_count"
)


class PostgresStore:
    """The Store and RetentionIndex protocols on PostgreSQL (see the module docstring).

    `on_queued(conn, job)` is awaited for every job `record_delivery` queues (not for one
    folded into a pending job), on the delivery's connection and inside its transaction,
    before the commit: what it writes commits with the delivery, and if it raises nothing
    of the delivery is recorded.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        on_queued: OnQueued | None = None,
        min_size: int = 1,
        max_size: int = 10,
        timeout: float = 10.0,
    ) -> None:
        """`timeout`: how long `open()` waits for the server, and a call for a connection."""
        self._url = url
        self._clock = clock
        self.on_queued = on_queued
        self._min_size = min_size
        self._max_size = max_size
        self._timeout = timeout
        self._pool: AsyncConnectionPool | None = None
        self._where, self._password = _describe(url)

    def __repr__(self) -> str:
        return f"PostgresStore({self._where!r})"

    @property
    def pool(self) -> AsyncConnectionPool:
        """The open connection pool (autocommit connections), for procrastinate to share."""
        if self._pool is None:
            raise StoreError(f"{self._where}: the store is not open")
        return self._pool

    # -- plumbing ------------------------------------------------------------------------------

    def _error(self, exc: BaseException, doing: str | None = None) -> StoreError:
        """A StoreError for `exc` that names the server but never shows the password."""
        reason = " ".join(str(exc).split()) or type(exc).__name__  # libpq's are multi-line
        message = f"{self._where}: {doing}: {reason}" if doing else f"{self._where}: {reason}"
        return StoreError(self._redact(message))

    def _redact(self, message: str) -> str:
        if self._password:
            for spelling in {self._password, quote(self._password, safe="")}:
                message = message.replace(spelling, "***")
        return message

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; psycopg's errors come out as StoreError."""
        pool = self.pool
        try:
            async with pool.connection() as conn:
                yield conn
        except psycopg.Error as exc:
            raise self._error(exc) from exc

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        """A pooled connection in a transaction, pipelined: BEGIN is sent with the first
        statement, COMMIT with the last ones."""
        async with self._connection() as conn:
            pipeline: contextlib.AbstractAsyncContextManager[Any] = (
                conn.pipeline() if psycopg.AsyncPipeline.is_supported() else _nothing()
            )
            async with pipeline, conn.transaction():
                yield conn

    async def _rows(self, conn: Connection, sql: str, params: Any = None) -> list[Row]:
        cursor = conn.cursor(row_factory=dict_row)
        await cursor.execute(sql, params)
        return await cursor.fetchall()

    async def _query(self, sql: str, params: Any = None) -> list[Row]:
        """Run one statement (its own transaction) and return its rows."""
        async with self._connection() as conn:
            return await self._rows(conn, sql, params)

    # -- lifecycle -----------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, migrate the schema, and open the pool; StoreError if the server fails."""
        if self._pool is not None:
            return
        try:
            conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, connect_timeout=max(1, round(self._timeout))
            )
        except psycopg.Error as exc:
            raise self._error(exc, "cannot connect to PostgreSQL") from None
        try:
            await migrate(conn, clock=self._clock)
        except psycopg.Error as exc:
            raise self._error(exc, "cannot migrate the schema") from exc
        finally:
            await conn.close()
        pool: AsyncConnectionPool = AsyncConnectionPool(
            self._url,
            min_size=self._min_size,
            max_size=self._max_size,
            open=False,
            configure=_autocommit,
            check=AsyncConnectionPool.check_connection,
            timeout=self._timeout,
            name="release-guard",
        )
        try:
            await pool.open(wait=True, timeout=self._timeout)
        except psycopg.Error as exc:
            await pool.close()
            raise self._error(exc, "cannot open the connection pool") from None
        self._pool = pool

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def ping(self) -> bool:
        pool = self._pool
        if pool is None:
            return False
        try:
            async with pool.connection(timeout=min(self._timeout, 5.0)) as conn:
                await conn.execute("SELECT 1")
        except Exception:
            return False
        return True

    # -- deliveries ----------------------------------------------------------------------------

    async def record_delivery(self, delivery: Delivery, jobs: Sequence[JobSpec]) -> bool:
        """Record a delivery and queue its jobs in one transaction (see Store).

        Round trips: one for the delivery, its new jobs and their audit events; then the
        `on_queued` hook's own; then one for the folded jobs' audit events, the delivery's
        outcome and the commit.
        """
        specs = json.dumps(
            [
                {
                    "n": n,
                    "kind": spec.kind.value,
                    "installation_id": spec.installation_id,
                    "repository": spec.repository,
                    "head_sha": spec.head_sha,
                    "details": spec.details,
                    "dedupe_key": spec.dedupe_key,
                }
                for n, spec in enumerate(jobs)
            ]
        )  # a value JSON cannot hold raises TypeError here, before anything is written
        for attempt in range(1, _TRANSACTION_TRIES + 1):
            try:
                async with self._transaction() as conn:
                    return await self._record(conn, delivery, tuple(jobs), specs)
            except StoreError as exc:
                retry = isinstance(exc.__cause__, _ROLLED_BACK)
                if not retry or attempt == _TRANSACTION_TRIES:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _record(
        self, conn: Connection, delivery: Delivery, jobs: tuple[JobSpec, ...], specs: str
    ) -> bool:
        now = self._clock()
        name = f"{delivery.event}.{delivery.action}" if delivery.action else delivery.event
        data = json.dumps({"event": delivery.event, "action": delivery.action})
        rows = await self._rows(
            conn,
            _RECORD_SQL,
            {
                "delivery_id": delivery.delivery_id,
                "event": delivery.event,
                "action": delivery.action,
                "now": now,
                "payload_sha256": delivery.payload_sha256,
                "specs": specs,
                "received": f"{name} delivery {delivery.delivery_id}",
                "received_data": data,
            },
        )
        if not rows[0]["recorded"]:
            return False
        new = {row["dedupe_key"]: job_from_row(row) for row in rows if row["id"] is not None}
        folded: list[str] = []
        for spec in jobs:
            job = new.pop(spec.dedupe_key, None)
            if job is None:
                folded.append(spec.dedupe_key)
            elif self.on_queued is not None:
                try:
                    await self.on_queued(conn, job)
                except Exception as exc:
                    raise StoreError(
                        self._redact(f"cannot queue job {job.id} ({job.kind.value}): {exc}")
                    ) from exc
        if folded:
            await conn.execute(
                _FOLD_SQL,
                {
                    "delivery_id": delivery.delivery_id,
                    "now": now,
                    "message": f"{name} delivery {delivery.delivery_id} asks for the same"
                    " work: folded into this job",
                    "data": data,
                    "keys": folded,
                },
            )
        queued = len(jobs) - len(folded)
        outcome = "queued" if queued else ("coalesced" if jobs else "recorded")
        await conn.execute(
            "UPDATE deliveries SET outcome = %s WHERE delivery_id = %s",
            (outcome, delivery.delivery_id),
        )
        return True

    # -- the queue -----------------------------------------------------------------------------

    async def claim(self, worker_id: str, lease: float) -> Job | None:
        """Lease the next due job whose lock (`Job.lock_key`) no running job holds.

        Claims are serialised by a transaction-level advisory lock: two claims at once could
        otherwise each see the other's job as not yet running and start two jobs with one
        lock. With the PostgreSQL queue, procrastinate chooses the jobs (`start`); `claim` is
        the embedded worker's way, kept for parity.
        """
        now = self._clock()
        async with self._transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CLAIM_LOCK_KEY,))
            rows = await self._rows(
                conn, _CLAIM_SQL, {"now": now, "worker_id": worker_id, "expires": now + lease}
            )
        return job_from_row(rows[0]) if rows else None

    async def start(self, job_id: int, worker_id: str, lease: float) -> Job | None:
        now = self._clock()
        rows = await self._query(
            _START_SQL,
            {"now": now, "worker_id": worker_id, "expires": now + lease, "job_id": job_id},
        )
        return job_from_row(rows[0]) if rows else None

    async def _leased(
        self,
        job: Job,
        assignments: str,
        values: Mapping[str, Any],
        audit: tuple[str, str, Mapping[str, Any]] | None = None,
    ) -> bool:
        """Update `job` while this claim still holds it (owner and attempt), and audit it.

        Both in one statement; return whether the job was still held.
        """
        params: dict[str, Any] = {
            **values,
            "id": job.id,
            "owner": job.lease_owner,
            "attempts": job.attempts,
        }
        if audit is None:
            sql = f"UPDATE jobs SET {assignments} {_HELD} RETURNING 1"
        else:
            stage, message, data = audit
            sql = _LEASED_WITH_AUDIT.format(assignments=assignments, held=_HELD)
            params.update(
                delivery_id=job.delivery_id,
                stage=stage,
                message=message,
                data=json.dumps(data, default=str),
            )
        rows = await self._query(sql, params)
        if audit is None:
            return bool(rows)
        return bool(rows[0]["count"])

    async def renew(self, job: Job, lease: float) -> bool:
        now = self._clock()
        return await self._leased(
            job,
            "lease_expires = %(expires)s, updated_at = %(now)s",
            {"expires": now + lease, "now": now},
        )

    async def complete(self, job: Job, state: JobState, summary: str) -> None:
        if state not in (JobState.DONE, JobState.FAILED):
            raise ValueError(f"a job completes as done or failed, not {state}")
        now = self._clock()
        held = await self._leased(
            job,
            "state = %(state)s, result_summary = %(summary)s, lease_owner = NULL,"
            " lease_expires = NULL, updated_at = %(now)s",
            {"state": state.value, "summary": summary, "now": now},
            (state.value, summary, {"attempts": job.attempts}),
        )
        if not held:
            raise LeaseLost(f"job {job.id} is no longer leased to {job.lease_owner}")

    async def retry_later(self, job: Job, delay: float, reason: str) -> None:
        delay = max(0.0, delay)
        now = self._clock()
        held = await self._leased(
            job,
            "state = 'queued', not_before = %(not_before)s, result_summary = %(reason)s,"
            " lease_owner = NULL, lease_expires = NULL, updated_at = %(now)s",
            {"not_before": now + delay, "reason": reason, "now": now},
            (
                "retry",
                f"attempt {job.attempts} will be retried in {delay:.0f}s: {reason}",
                {"delay": round(delay, 3), "attempts": job.attempts},
            ),
        )
        if not held:
            raise LeaseLost(f"job {job.id} is no longer leased to {job.lease_owner}")

    async def set_check_run(self, job: Job, check_run_id: int) -> None:
        now = self._clock()
        held = await self._leased(
            job,
            "check_run_id = %(check_run_id)s, updated_at = %(now)s",
            {"check_run_id": check_run_id, "now": now},
            (
                "check_run",
                f"reporting on check run {check_run_id}",
                {"check_run_id": check_run_id},
            ),
        )
        if not held:
            raise LeaseLost(f"job {job.id} is no longer leased to {job.lease_owner}")

    async def reclaim(self, lease_owners: Collection[str], reason: str) -> int:
        if not lease_owners:
            return 0
        now = self._clock()
        rows = await self._query(
            """
            WITH requeued AS (
                UPDATE jobs SET state = 'queued', not_before = %(now)s, lease_owner = NULL,
                    lease_expires = NULL, updated_at = %(now)s
                WHERE state = 'running' AND lease_owner = ANY(%(owners)s::text[])
                RETURNING id, delivery_id
            ), trail AS (
                INSERT INTO audit_events (job_id, delivery_id, at, stage, message, data)
                SELECT id, delivery_id, %(now)s, 'reclaimed', %(reason)s, '{}'::jsonb
                FROM requeued ORDER BY id
            )
            SELECT count(*) FROM requeued
            """,
            {"now": now, "owners": list(lease_owners), "reason": reason},
        )
        return int(rows[0]["count"])

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
        now = self._clock()
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO audit_events (job_id, delivery_id, at, stage, message, data)"
                " VALUES (%(job_id)s::bigint, coalesce(%(delivery_id)s::text,"
                " (SELECT delivery_id FROM jobs WHERE id = %(job_id)s::bigint)),"
                " %(now)s, %(stage)s, %(message)s, %(data)s::jsonb)",
                {
                    "job_id": job_id,
                    "delivery_id": delivery_id,
                    "now": now,
                    "stage": stage,
                    "message": message,
                    "data": json.dumps(dict(data or {}), default=str),
                },
            )

    # -- reading -------------------------------------------------------------------------------

    async def recent_rescan(self, key: str) -> dict[str, Any] | None:
        """The last rescan recorded for `key` (see `bot.handlers.comments`), or None."""
        rows = await self._query("SELECT result FROM rescans WHERE key = %s", (key,))
        value = rows[0]["result"] if rows else None
        return value if isinstance(value, dict) else None

    # -- scanned once (ScanLedger) ---------------------------------------------------------------

    async def get_verdict(self, key: str) -> StoredVerdict | None:
        rows = await self._query("SELECT * FROM scan_verdicts WHERE key = %s", (key,))
        return verdict_from_row(rows[0]) if rows else None

    async def put_verdict(self, verdict: StoredVerdict) -> None:
        now = self._clock()
        async with self._connection() as conn:
            await conn.execute(
                "WITH kept AS (INSERT INTO scan_verdicts (key, report, retained_id, recorded_at)"
                " VALUES (%(key)s, %(report)s::jsonb, %(retained_id)s, %(at)s)"
                " ON CONFLICT (key) DO UPDATE SET report = EXCLUDED.report,"
                " retained_id = EXCLUDED.retained_id, recorded_at = EXCLUDED.recorded_at"
                " RETURNING key) DELETE FROM scan_verdicts"
                " WHERE recorded_at < %(old)s AND key NOT IN (SELECT key FROM kept)",
                {
                    "key": verdict.key,
                    "report": json.dumps(verdict.report),
                    "retained_id": verdict.retained_id,
                    "at": verdict.recorded_at,
                    "old": now - SCANS_KEPT,
                },
            )

    async def get_coverage(self, repository: str, head_sha: str) -> CheckCoverage | None:
        rows = await self._query(
            "SELECT * FROM check_coverage WHERE repository = %s AND head_sha = %s",
            (repository.lower(), head_sha.lower()),
        )
        return coverage_from_row(rows[0]) if rows else None

    async def put_coverage(self, coverage: CheckCoverage) -> None:
        now = self._clock()
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO check_coverage"
                " (repository, head_sha, check_run_id, inputs, job_id, recorded_at)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (repository, head_sha) DO UPDATE"
                " SET check_run_id = EXCLUDED.check_run_id, inputs = EXCLUDED.inputs,"
                " job_id = EXCLUDED.job_id, recorded_at = EXCLUDED.recorded_at",
                coverage_params(coverage),
            )
            await conn.execute(
                "DELETE FROM check_coverage WHERE recorded_at < %s", (now - SCANS_KEPT,)
            )

    async def record_rescan(self, key: str, result: Mapping[str, Any]) -> None:
        """Remember a finished rescan for `key`, and forget those older than a day."""
        now = self._clock()
        async with self._connection() as conn:
            await conn.execute(
                "WITH kept AS (INSERT INTO rescans (key, result, recorded_at)"
                " VALUES (%(key)s, %(result)s::jsonb, %(now)s) ON CONFLICT (key) DO UPDATE"
                " SET result = EXCLUDED.result, recorded_at = EXCLUDED.recorded_at"
                " RETURNING key) DELETE FROM rescans"
                " WHERE recorded_at < %(old)s AND key NOT IN (SELECT key FROM kept)",
                {
                    "key": key,
                    "result": json.dumps(dict(result), default=str),
                    "now": now,
                    "old": now - RESCANS_KEPT,
                },
            )

    async def get_job(self, job_id: int) -> Job | None:
        rows = await self._query("SELECT * FROM jobs WHERE id = %s", (job_id,))
        return job_from_row(rows[0]) if rows else None

    async def pending_jobs(self) -> dict[JobState, int]:
        """How many jobs are queued and running, for the whole App (the queue's depth)."""
        counts = {JobState.QUEUED: 0, JobState.RUNNING: 0}
        rows = await self._query(
            f"SELECT state, count(*) AS n FROM jobs WHERE {PENDING} GROUP BY state"
        )
        for row in rows:
            counts[JobState(row["state"])] = int(row["n"])
        return counts

    async def list_jobs(self, limit: int = 50, *, state: JobState | None = None) -> list[Job]:
        if state is None:
            rows = await self._query("SELECT * FROM jobs ORDER BY id DESC LIMIT %s", (limit,))
        else:
            rows = await self._query(
                "SELECT * FROM jobs WHERE state = %s ORDER BY id DESC LIMIT %s",
                (state.value, limit),
            )
        return [job_from_row(row) for row in rows]

    async def audit_trail(self, job_id: int) -> list[AuditEvent]:
        rows = await self._query(
            "SELECT * FROM audit_events WHERE job_id = %s ORDER BY id", (job_id,)
        )
        return [
            AuditEvent(
                id=row["id"],
                job_id=row["job_id"],
                delivery_id=row["delivery_id"],
                at=row["at"],
                stage=row["stage"],
                message=row["message"],
                data=row["data"],
            )
            for row in rows
        ]

    # -- retained artifacts (RetentionIndex) ---------------------------------------------------

    async def upsert_retained(
        self, record: RetainedRecord, sighting: Sighting
    ) -> tuple[RetainedRecord, bool]:
        async with self._transaction() as conn:
            inserted = await self._rows(
                conn,
                "INSERT INTO retained (id, digest, size, repository, head_sha, artifact_name,"
                " state, kept_at, expires_at, last_seen_at, attempts, next_attempt_at,"
                " last_error, spool_path) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s, %s) ON CONFLICT (id) DO NOTHING RETURNING id",
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
            created = bool(inserted)
            if not created:
                # Lock the row: concurrent merges into one record take turns.
                rows = await self._rows(
                    conn, "SELECT * FROM retained WHERE id = %s FOR UPDATE", (record.id,)
                )
                existing = retained_from_row(rows[0])
                better = _STATE_RANK[record.state] > _STATE_RANK[existing.state]
                source = record if better else existing
                await conn.execute(
                    "UPDATE retained SET state = %s, expires_at = greatest(expires_at, %s),"
                    " last_seen_at = greatest(last_seen_at, %s), attempts = %s,"
                    " next_attempt_at = %s, last_error = %s, spool_path = %s WHERE id = %s",
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
            await self._add_sighting(conn, record.id, sighting)
            rows = await self._rows(
                conn, f"SELECT {_RETAINED_COLUMNS} FROM retained WHERE id = %s", (record.id,)
            )
        if not rows:  # pragma: no cover - written in the same transaction
            raise StoreError(f"retained artifact {record.id} vanished while it was written")
        return retained_from_row(rows[0]), created

    @staticmethod
    async def _add_sighting(conn: Connection, retained_id: str, sighting: Sighting) -> None:
        """Add the sighting, unless a retried job recorded it already (same delivery, job and
        artifact); sightings that name neither a delivery nor a job are all kept."""
        await conn.execute(
            "INSERT INTO retained_sightings (retained_id, seen_at, artifact_name,"
            " installation_id, event, delivery_id, job_id, pull_request, release,"
            " workflow_run_id, artifact_id, check_run_url, findings)"
            # Typed parameters: in INSERT … SELECT an untyped NULL would be taken for text.
            " SELECT %(retained_id)s::text, %(seen_at)s::float8, %(artifact_name)s::text,"
            " %(installation_id)s::bigint, %(event)s::text, %(delivery_id)s::text,"
            " %(job_id)s::bigint, %(pull_request)s::bigint, %(release)s::text,"
            " %(workflow_run_id)s::bigint, %(artifact_id)s::bigint, %(check_run_url)s::text,"
            " %(findings)s::jsonb"
            " WHERE (%(delivery_id)s::text IS NULL AND %(job_id)s::bigint IS NULL)"
            " OR NOT EXISTS (SELECT 1 FROM retained_sightings WHERE"
            " retained_id = %(retained_id)s"
            " AND delivery_id IS NOT DISTINCT FROM %(delivery_id)s::text"
            " AND job_id IS NOT DISTINCT FROM %(job_id)s::bigint"
            " AND artifact_id IS NOT DISTINCT FROM %(artifact_id)s::bigint"
            " AND artifact_name = %(artifact_name)s)",
            {
                "retained_id": retained_id,
                "seen_at": sighting.seen_at,
                "artifact_name": sighting.artifact_name,
                "installation_id": sighting.installation_id,
                "event": sighting.event,
                "delivery_id": sighting.delivery_id,
                "job_id": sighting.job_id,
                "pull_request": sighting.pull_request,
                "release": sighting.release,
                "workflow_run_id": sighting.workflow_run_id,
                "artifact_id": sighting.artifact_id,
                "check_run_url": sighting.check_run_url,
                "findings": json.dumps(list(sighting.findings), default=str),
            },
        )

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
        async with self._connection() as conn:
            await conn.execute(
                "UPDATE retained SET state = %s, attempts = %s, next_attempt_at = %s,"
                " last_error = %s, spool_path = %s WHERE id = %s",
                (state.value, attempts, next_attempt_at, last_error, spool_path, retained_id),
            )

    async def get_retained(self, retained_id: str) -> RetainedRecord | None:
        async with self._connection() as conn:
            # The record named exactly, else those the prefix names (two tell it is ambiguous).
            rows = await self._rows(
                conn,
                f"SELECT {_RETAINED_COLUMNS} FROM retained WHERE id = %(id)s"
                " UNION ALL (SELECT * FROM (SELECT "
                f"{_RETAINED_COLUMNS} FROM retained WHERE %(id)s <> ''"
                " AND starts_with(id, %(id)s) ORDER BY id LIMIT 2) AS prefixed"
                " WHERE NOT EXISTS (SELECT 1 FROM retained WHERE id = %(id)s))",
                {"id": retained_id},
            )
            if not rows:
                return None
            if len(rows) > 1:
                raise AmbiguousId(f"{retained_id!r} names more than one retained artifact")
            record = retained_from_row(rows[0])
            sightings = await self._rows(
                conn,
                "SELECT * FROM retained_sightings WHERE retained_id = %s ORDER BY id",
                (record.id,),
            )
        return dataclasses.replace(
            record, sightings=tuple(sighting_from_row(row) for row in sightings)
        )

    async def list_retained(self, query: RetainedFilter) -> list[RetainedRecord]:
        sql, params = retained_query(_RETAINED_COLUMNS, query, "postgresql")
        return [retained_from_row(row) for row in await self._query(sql, params)]

    async def due_retained(self, now: float) -> list[RetainedRecord]:
        rows = await self._query(
            f"SELECT {_RETAINED_COLUMNS} FROM retained WHERE state = 'pending'"
            " AND coalesce(next_attempt_at, 0) <= %s ORDER BY next_attempt_at NULLS FIRST, id",
            (now,),
        )
        return [retained_from_row(row) for row in rows]

    async def delete_retained(self, retained_ids: Collection[str]) -> set[str]:
        if not retained_ids:
            return set()
        rows = await self._query(
            """
            WITH deleted AS (
                DELETE FROM retained WHERE id = ANY(%s::text[]) RETURNING digest
            )
            SELECT DISTINCT digest FROM deleted
            WHERE NOT EXISTS (
                SELECT 1 FROM retained WHERE retained.digest = deleted.digest
                    AND retained.id <> ALL(%s::text[])
            )
            """,
            (list(retained_ids), list(retained_ids)),
        )
        return {row["digest"] for row in rows}

    async def referenced_digests(self) -> set[str]:
        rows = await self._query("SELECT DISTINCT digest FROM retained")
        return {row["digest"] for row in rows}

    # -- recovering failed webhook deliveries (DeliveryLedger) --------------------------------

    async def recorded_deliveries(self, delivery_ids: Collection[str]) -> set[str]:
        if not delivery_ids:
            return set()
        rows = await self._query(
            "SELECT delivery_id FROM deliveries WHERE delivery_id = ANY(%s)",
            (list(set(delivery_ids)),),
        )
        return {str(row["delivery_id"]) for row in rows}

    async def recovery_mark(self) -> float | None:
        rows = await self._query("SELECT mark FROM recovery_state WHERE name = %s", (RECOVERY_ROW,))
        return None if not rows or rows[0]["mark"] is None else float(rows[0]["mark"])

    async def set_recovery_mark(self, mark: float) -> None:
        async with self._connection() as conn:
            await conn.execute(
                "INSERT INTO recovery_state (name, mark) VALUES (%s, %s) ON CONFLICT (name)"
                " DO UPDATE SET mark = GREATEST(recovery_state.mark, EXCLUDED.mark)",
                (RECOVERY_ROW, mark),
            )

    async def redeliveries(self, guids: Collection[str]) -> dict[str, RedeliveryRecord]:
        if not guids:
            return {}
        rows = await self._query(
            "SELECT guid, requests, last_requested_at FROM redeliveries WHERE guid = ANY(%s)",
            (list(set(guids)),),
        )
        return {
            str(row["guid"]): RedeliveryRecord(
                str(row["guid"]), int(row["requests"]), float(row["last_requested_at"])
            )
            for row in rows
        }

    async def note_redeliveries(self, guids: Collection[str]) -> dict[str, RedeliveryRecord]:
        wanted = list(dict.fromkeys(guids))
        if not wanted:
            return {}
        now = self._clock()
        async with self._transaction() as conn:
            await conn.execute(
                "DELETE FROM redeliveries WHERE last_requested_at < %s AND NOT guid = ANY(%s)",
                (now - REDELIVERIES_KEPT, wanted),
            )
            rows = await self._rows(
                conn,
                "INSERT INTO redeliveries (guid, requests, first_requested_at,"
                " last_requested_at) SELECT g, 1, %(now)s, %(now)s FROM unnest(%(guids)s::text[])"
                " AS g ON CONFLICT (guid) DO UPDATE SET requests = redeliveries.requests + 1,"
                " last_requested_at = EXCLUDED.last_requested_at"
                " RETURNING guid, requests, last_requested_at",
                {"guids": wanted, "now": now},
            )
        return {
            str(row["guid"]): RedeliveryRecord(
                str(row["guid"]), int(row["requests"]), float(row["last_requested_at"])
            )
            for row in rows
        }

    @contextlib.asynccontextmanager
    async def sweep_lock(self, owner: str, lease: float) -> AsyncIterator[bool]:
        """A session advisory lock, held on one pooled connection for the sweep.

        If the process dies, PostgreSQL releases the lock with its connection: no sweep waits
        for a dead sweeper. The key names the schema too, so that stores in two schemas of one
        database (the tests) do not exclude each other. `lease` is not needed here.
        """
        pool = self.pool
        try:
            conn = await pool.getconn()
        except psycopg.Error as exc:
            raise self._error(exc, "cannot take the recovery sweep's lock") from exc
        held = False
        try:
            try:
                cursor = await conn.execute(
                    "SELECT pg_try_advisory_lock(hashtextextended(%s || current_schema(), 0))",
                    (RECOVERY_LOCK,),
                )
                row = await cursor.fetchone()
            except psycopg.Error as exc:
                raise self._error(exc, "cannot take the recovery sweep's lock") from exc
            held = bool(row and row[0])
            yield held
        finally:
            await self._release_sweep(pool, conn, held)

    async def _release_sweep(self, pool: AsyncConnectionPool, conn: Connection, held: bool) -> None:
        # A connection that may still hold the lock never goes back to the pool open.
        try:
            if held:
                await conn.execute(
                    "SELECT pg_advisory_unlock(hashtextextended(%s || current_schema(), 0))",
                    (RECOVERY_LOCK,),
                )
        except psycopg.Error:
            await conn.close()
        except asyncio.CancelledError:
            await conn.close()
            raise
        finally:
            await pool.putconn(conn)

    # -- for tests and tools -------------------------------------------------------------------

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one raw statement (`%s` placeholders) and return its rows, if any."""
        async with self._connection() as conn:
            cursor = await conn.execute(sql, tuple(params) or None)
            if cursor.description is None:
                return []
            return [tuple(row) for row in await cursor.fetchall()]


async def _autocommit(conn: Connection) -> None:
    """The pool's `configure`: every connection starts in autocommit mode.

    Set here rather than in the pool's connection arguments, which procrastinate reuses for
    its LISTEN connection along with its own `autocommit=True`.
    """
    await conn.set_autocommit(True)


@contextlib.asynccontextmanager
async def _nothing() -> AsyncIterator[None]:
    yield


def _describe(url: str) -> tuple[str, str | None]:
    """Return how to name the database in messages (`postgresql://host:port/db`, no user or
    password) and the password, so that messages can be scrubbed of it."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.Error:
        return "PostgreSQL (an unreadable DATABASE_URL)", _raw_password(url)
    host = str(info.get("host") or "localhost")
    port = str(info.get("port") or "5432")
    dbname = str(info.get("dbname") or "")
    password = info.get("password")
    return f"postgresql://{host}:{port}/{dbname}", str(password) if password else None


def _raw_password(url: str) -> str | None:
    """The password of a URL psycopg could not parse, as well as it can be told."""
    head = url.split("://", 1)[-1].split("/", 1)[0]
    if "@" in head and ":" in head.rsplit("@", 1)[0]:
        return head.rsplit("@", 1)[0].split(":", 1)[1] or None
    return None
