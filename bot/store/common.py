"""What the SQLite and PostgreSQL stores share: rows to records, and the SQL both speak.

The two stores keep the same tables; they differ in placeholders (`?` or `%s`), in how JSON
is stored (text or jsonb) and in a few functions. The converters take a row whose JSON
columns are decoded already (PostgreSQL decodes jsonb itself; SQLite decodes them first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from bot.events import JobKind
from bot.store.base import (
    CheckCoverage,
    Job,
    JobState,
    RetainedFilter,
    RetainedRecord,
    RetainedState,
    Sighting,
    StoredVerdict,
)

Dialect = Literal["sqlite", "postgresql"]

PENDING: Final = "state IN ('queued', 'running')"
"""A job still to do or being done: the jobs new deliveries fold into."""
RESCANS_KEPT: Final = 86_400.0
REDELIVERIES_KEPT: Final = 4 * 86_400.0
RECOVERY_ROW: Final = "deliveries"  # the one row of `recovery_state`
"""Redelivery records outlive GitHub's 3-day window of deliveries by a day, then go."""
"""Seconds a finished rescan is remembered for other workers (`record_rescan`)."""
SCANS_KEPT: Final = 90 * 86_400.0
"""Seconds a verdict or a check run's coverage is remembered after it was last recorded: as
long as GitHub keeps an Actions artifact by default."""


def job_from_row(row: Mapping[str, Any]) -> Job:
    return Job(
        id=row["id"],
        delivery_id=row["delivery_id"],
        kind=JobKind(row["kind"]),
        installation_id=row["installation_id"],
        repository=row["repository"],
        head_sha=row["head_sha"],
        details=row["details"],
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


def retained_from_row(row: Mapping[str, Any]) -> RetainedRecord:
    """A retained record; `sighting_count` only when the query counted them."""
    return RetainedRecord(
        id=row["id"],
        digest=row["digest"],
        size=row["size"],
        repository=row["repository"],
        commit=row["head_sha"],
        artifact_name=row["artifact_name"],
        state=RetainedState(row["state"]),
        kept_at=row["kept_at"],
        expires_at=row["expires_at"],
        last_seen_at=row["last_seen_at"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        spool_path=row["spool_path"],
        sighting_count=row.get("sighting_count", 0),
    )


def sighting_from_row(row: Mapping[str, Any]) -> Sighting:
    return Sighting(
        seen_at=row["seen_at"],
        artifact_name=row["artifact_name"],
        installation_id=row["installation_id"],
        event=row["event"],
        delivery_id=row["delivery_id"],
        job_id=row["job_id"],
        pull_request=row["pull_request"],
        release=row["release"],
        workflow_run_id=row["workflow_run_id"],
        artifact_id=row["artifact_id"],
        check_run_url=row["check_run_url"],
        findings=tuple(row["findings"]),
    )


def lock_key_sql(table: str, dialect: Dialect = "sqlite") -> str:
    """SQL for `Job.lock_key` of a row of `jobs` named `table`; keep the two in step."""
    if dialect == "sqlite":
        is_number = f"json_type({table}.details, '$.issue_number') = 'integer'"
        number = f"json_extract({table}.details, '$.issue_number')"
    else:
        is_number = f"jsonb_typeof({table}.details -> 'issue_number') = 'number'"
        number = f"({table}.details ->> 'issue_number')"
    return (
        f"(CASE WHEN {table}.head_sha IS NOT NULL AND {table}.head_sha <> ''"
        f" THEN lower({table}.repository) || '@' || {table}.head_sha"
        f" WHEN {is_number} THEN lower({table}.repository) || '#' || {number}"
        f" ELSE {table}.dedupe_key END)"
    )


def retained_query(columns: str, query: RetainedFilter, dialect: Dialect) -> tuple[str, list[Any]]:
    """The `list_retained` statement for `query`, and its parameters."""
    mark = "?" if dialect == "sqlite" else "%s"
    where: list[str] = []
    params: list[Any] = []
    if query.repository is not None:
        where.append(
            f"repository = {mark} COLLATE NOCASE"
            if dialect == "sqlite"
            else f"lower(repository) = lower({mark})"
        )
        params.append(query.repository)
    if query.commit is not None:
        if dialect == "sqlite":
            where.append(f"substr(head_sha, 1, {mark}) = {mark}")
            params.append(len(query.commit))
        else:
            where.append(f"starts_with(head_sha, {mark})")
        params.append(query.commit.lower())
    for column, operator, value in (
        ("last_seen_at", ">=", query.since),
        ("kept_at", "<=", query.until),
        ("state", "=", None if query.state is None else query.state.value),
        ("digest", "=", None if query.digest is None else query.digest.lower()),
    ):
        if value is not None:
            where.append(f"{column} {operator} {mark}")
            params.append(value)
    sql = f"SELECT {columns} FROM retained"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY last_seen_at DESC, id"
    if query.limit is not None:
        sql += f" LIMIT {mark}"
        params.append(query.limit)
    return sql, params


def verdict_from_row(row: Mapping[str, Any]) -> StoredVerdict:
    """A `scan_verdicts` row, its `report` decoded already."""
    report = row["report"]
    return StoredVerdict(
        key=row["key"],
        report=report if isinstance(report, dict) else {},
        retained_id=row["retained_id"],
        recorded_at=row["recorded_at"],
    )


def coverage_from_row(row: Mapping[str, Any]) -> CheckCoverage:
    return CheckCoverage(
        repository=row["repository"],
        head_sha=row["head_sha"],
        check_run_id=row["check_run_id"],
        inputs=row["inputs"],
        job_id=row["job_id"],
        recorded_at=row["recorded_at"],
    )


def coverage_params(coverage: CheckCoverage) -> tuple[str, str, int, str, int, float]:
    """The row's values in column order; the repository and commit compared case-blind."""
    return (
        coverage.repository.lower(),
        coverage.head_sha.lower(),
        coverage.check_run_id,
        coverage.inputs,
        coverage.job_id,
        coverage.recorded_at,
    )
