"""The PostgreSQL store's schema, as numbered migrations, and `migrate`, safe to run at once.

The tables mirror the SQLite store's (`bot.store.sqlite.MIGRATIONS`), in PostgreSQL's types:

- timestamps are `double precision` seconds since the epoch, computed in Python (the store's
  clock is injectable, as SQLite's, so tests move time by hand);
- ids are `bigint` identity columns; JSON (job details, audit data, findings) is `jsonb`;
- `audit_events` is append-only: a trigger refuses UPDATE, DELETE and TRUNCATE, whoever asks.

Tables are named without a schema, so they land in the first schema of the connection's
`search_path` (`public` unless the URL says otherwise; the tests use a private schema each).

`migrate` applies the missing migrations in one transaction under a transaction-level advisory
lock: processes starting together on an empty database take turns, and the later ones find
the schema current. The job queue (procrastinate, `bot.app.pgqueue`) installs its own schema
under the same lock, `MIGRATION_LOCK_KEY`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

import psycopg

from bot.store.base import StoreError

MIGRATION_LOCK_KEY: Final[int] = 0x7267_6D69_6772  # "rgmigr": release-guard's migrations
"""The key of the advisory lock held while the schema (ours or the queue's) changes."""

# Each migration is a tuple of statements, applied in one transaction; never edit a released
# one: append a new migration instead.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        # -- deliveries, the jobs they queue, and the audit trail
        """CREATE TABLE deliveries (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            delivery_id text NOT NULL UNIQUE,
            event text NOT NULL,
            action text,
            received_at double precision NOT NULL,
            payload_sha256 text NOT NULL,
            outcome text NOT NULL
        )""",
        """CREATE TABLE jobs (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            delivery_id text NOT NULL REFERENCES deliveries (delivery_id),
            kind text NOT NULL,
            installation_id bigint NOT NULL,
            repository text NOT NULL,
            head_sha text,
            details jsonb NOT NULL,
            dedupe_key text NOT NULL,
            state text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed')),
            attempts integer NOT NULL DEFAULT 0,
            not_before double precision NOT NULL,
            lease_owner text,
            lease_expires double precision,
            check_run_id bigint,
            created_at double precision NOT NULL,
            updated_at double precision NOT NULL,
            result_summary text
        )""",
        "CREATE INDEX jobs_due ON jobs (state, not_before)",
        "CREATE INDEX jobs_by_delivery ON jobs (delivery_id)",
        # A delivery asking for work already queued or running is folded into that job.
        """CREATE UNIQUE INDEX jobs_pending_dedupe ON jobs (dedupe_key)
            WHERE state IN ('queued', 'running')""",
        """CREATE TABLE audit_events (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job_id bigint REFERENCES jobs (id),
            delivery_id text,
            at double precision NOT NULL,
            stage text NOT NULL,
            message text NOT NULL,
            data jsonb NOT NULL DEFAULT '{}'
        )""",
        "CREATE INDEX audit_events_by_job ON audit_events (job_id, id)",
        """CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'audit_events is append-only'
                    USING ERRCODE = 'restrict_violation';
            END
        $$""",
        # Per statement: even an UPDATE or DELETE that matches no row is refused.
        """CREATE TRIGGER audit_events_append_only
            BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_events
            FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()""",
        # -- the index of retained artifacts; the bytes live in ARTIFACT_STORE
        """CREATE TABLE retained (
            id text COLLATE "C" PRIMARY KEY,
            digest text NOT NULL,
            size bigint NOT NULL,
            repository text NOT NULL,
            head_sha text NOT NULL,
            artifact_name text NOT NULL,
            state text NOT NULL CHECK (state IN ('kept', 'pending', 'failed')),
            kept_at double precision NOT NULL,
            expires_at double precision NOT NULL,
            last_seen_at double precision NOT NULL,
            attempts integer NOT NULL DEFAULT 0,
            next_attempt_at double precision,
            last_error text,
            spool_path text
        )""",
        "CREATE INDEX retained_by_digest ON retained (digest)",
        "CREATE INDEX retained_by_repository ON retained (lower(repository), head_sha)",
        "CREATE INDEX retained_due ON retained (state, next_attempt_at)",
        """CREATE TABLE retained_sightings (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            retained_id text COLLATE "C" NOT NULL REFERENCES retained (id) ON DELETE CASCADE,
            seen_at double precision NOT NULL,
            artifact_name text NOT NULL,
            installation_id bigint,
            event text,
            delivery_id text,
            job_id bigint,
            pull_request bigint,
            release text,
            workflow_run_id bigint,
            artifact_id bigint,
            check_run_url text,
            findings jsonb NOT NULL DEFAULT '[]'
        )""",
        "CREATE INDEX retained_sightings_by_record ON retained_sightings (retained_id, id)",
        # -- GitHub rate-limit backoff shared by every process, per installation (0: the
        # App's own JWT requests)
        """CREATE TABLE rate_limit_blocks (
            installation_id bigint PRIMARY KEY,
            blocked_until double precision NOT NULL,
            reason text NOT NULL,
            updated_at double precision NOT NULL
        )""",
    ),
    (
        # Recent rescans, shared by every worker (bot.handlers.comments).
        """CREATE TABLE rescans (
            key text PRIMARY KEY,
            result jsonb NOT NULL,
            recorded_at double precision NOT NULL
        )""",
        "CREATE INDEX rescans_by_time ON rescans (recorded_at)",
    ),
    (
        # Scanned once (issue 15): verdicts by what was scanned, policy and engine; and what
        # each commit's latest pull-request check run covers.
        """CREATE TABLE scan_verdicts (
            key text PRIMARY KEY,
            report jsonb NOT NULL,
            retained_id text,
            recorded_at double precision NOT NULL
        )""",
        "CREATE INDEX scan_verdicts_by_time ON scan_verdicts (recorded_at)",
        """CREATE TABLE check_coverage (
            repository text NOT NULL,
            head_sha text NOT NULL,
            check_run_id bigint NOT NULL,
            inputs text NOT NULL,
            job_id bigint NOT NULL,
            recorded_at double precision NOT NULL,
            PRIMARY KEY (repository, head_sha)
        )""",
        "CREATE INDEX check_coverage_by_time ON check_coverage (recorded_at)",
    ),
    (
        # The recovery sweep of failed webhook deliveries (bot.app.recovery): its high-water
        # mark (the lock of the sweep is an advisory lock here, the columns serve SQLite), and
        # the redeliveries asked for per GUID.
        """CREATE TABLE recovery_state (
            name text PRIMARY KEY,
            mark double precision,
            sweeper text,
            sweeper_until double precision
        )""",
        """CREATE TABLE redeliveries (
            guid text PRIMARY KEY,
            requests integer NOT NULL,
            first_requested_at double precision NOT NULL,
            last_requested_at double precision NOT NULL
        )""",
        "CREATE INDEX redeliveries_by_time ON redeliveries (last_requested_at)",
    ),
)

_VERSION_TABLE: Final = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    " version integer PRIMARY KEY, applied_at double precision NOT NULL)"
)


async def migrate(
    conn: psycopg.AsyncConnection[Any], *, clock: Callable[[], float] = time.time
) -> tuple[int, ...]:
    """Bring the schema in `conn`'s search_path up to date; return the versions applied.

    Runs in its own transaction (a savepoint if `conn` is already in one) under
    `pg_advisory_xact_lock(MIGRATION_LOCK_KEY)`, released at commit: a second process
    migrating at the same time waits, then sees the schema current and applies nothing.
    Raises StoreError when the database's schema is newer than this release-guard knows,
    psycopg's errors when the database fails.
    """
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        await conn.execute(_VERSION_TABLE)
        cursor = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
        row = await cursor.fetchone()
        current = int(row[0]) if row is not None else 0
        if current > len(MIGRATIONS):
            raise StoreError(
                f"the PostgreSQL schema version {current} is newer than this release-guard "
                f"knows ({len(MIGRATIONS)}): upgrade release-guard"
            )
        for version in range(current + 1, len(MIGRATIONS) + 1):
            for statement in MIGRATIONS[version - 1]:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_version (version, applied_at) VALUES (%s, %s)",
                (version, clock()),
            )
            applied.append(version)
    return tuple(applied)
