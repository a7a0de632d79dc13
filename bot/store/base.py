"""The durable store's interface: deliveries, the job queue with leases, and the audit trail.

Kept small on purpose: SQLite implements it now, PostgreSQL (procrastinate) later, and the web
handler, the worker and the CLI see only this.

Leases are how a crash is survived: `claim` gives a job to one worker until its lease expires;
the worker renews it while the job runs. A process killed mid-job stops renewing, so its job
becomes claimable again when the lease runs out (or at once, when a restarted process on the
same machine `reclaim`s the dead process's leases). Every state change made by a worker is
conditional on it still holding the lease, so a job completes once even if two workers ran it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from bot.errors import ReleaseGuardError
from bot.events import JobKind, JobSpec, JSONValue


def iso_time(at: float | None) -> str | None:
    """Format a store timestamp (seconds since the epoch) as ISO 8601 UTC, to the millisecond."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StoreError(ReleaseGuardError):
    """The store cannot be opened or used (missing, unreachable, corrupt, unsupported)."""


class StoreMissing(StoreError):
    """The database does not exist yet and was not to be created (read-only commands)."""


class LeaseLost(StoreError):
    """The job is no longer leased to this worker (its lease expired and another took it)."""


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook delivery, as far as the store keeps it (not its payload: only a digest)."""

    delivery_id: str
    event: str
    action: str | None
    payload_sha256: str


@dataclass(frozen=True, slots=True)
class Job:
    """A queued unit of work, as the store last saw it.

    `attempts` counts claims, the current one included; `lease_owner` is the worker that holds
    it while it runs.
    """

    id: int
    delivery_id: str
    kind: JobKind
    installation_id: int
    repository: str
    head_sha: str | None
    details: dict[str, JSONValue]
    dedupe_key: str
    state: JobState
    attempts: int
    not_before: float
    lease_owner: str | None
    lease_expires: float | None
    check_run_id: int | None
    created_at: float
    updated_at: float
    result_summary: str | None

    @property
    def lock_key(self) -> str:
        """What the job works on: two jobs with the same key never run at the same time.

        The repository (case-blind, as GitHub compares names) and the commit; a job that does
        not know its commit yet (a comment command) is serialised with the other commands on
        its pull request, or else with the same work only.
        """
        if self.head_sha:
            return f"{self.repository.lower()}@{self.head_sha}"
        number = self.details.get("issue_number")
        if isinstance(number, int) and not isinstance(number, bool):
            return f"{self.repository.lower()}#{number}"
        return self.dedupe_key

    def to_json(self) -> dict[str, Any]:
        """Return the job as JSON-able data (the `jobs --json` shape)."""
        return {
            "id": self.id,
            "delivery_id": self.delivery_id,
            "kind": self.kind.value,
            "installation_id": self.installation_id,
            "repository": self.repository,
            "head_sha": self.head_sha,
            "details": self.details,
            "state": self.state.value,
            "attempts": self.attempts,
            "not_before": iso_time(self.not_before),
            "lease_owner": self.lease_owner,
            "lease_expires": iso_time(self.lease_expires),
            "check_run_id": self.check_run_id,
            "created_at": iso_time(self.created_at),
            "updated_at": iso_time(self.updated_at),
            "result_summary": self.result_summary,
        }


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One append-only line of a job's trail: which stage it reached, when, and why."""

    id: int
    job_id: int | None
    delivery_id: str | None
    at: float
    stage: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "job_id": self.job_id,
            "delivery_id": self.delivery_id,
            "at": iso_time(self.at),
            "stage": self.stage,
            "message": self.message,
            "data": self.data,
        }


class Store(Protocol):
    """What the App needs from its database. Every method is a coroutine; none blocks the loop."""

    async def open(self) -> None:
        """Connect, and create or migrate the schema."""

    async def close(self) -> None:
        """Release the connection; the store cannot be used afterwards."""

    async def ping(self) -> bool:
        """Tell whether the database answers (for `/readyz`); never raises."""

    async def record_delivery(self, delivery: Delivery, jobs: Sequence[JobSpec]) -> bool:
        """Record a delivery and queue its jobs in one transaction.

        Return False, and change nothing, when the delivery id is already recorded. A job whose
        dedupe key matches a job still queued or running is folded into that job (noted in its
        audit trail) instead of being queued twice. Returns only once the data is durable.
        """

    async def claim(self, worker_id: str, lease: float) -> Job | None:
        """Lease the next due job (queued, or running with an expired lease) to `worker_id`."""

    async def start(self, job_id: int, worker_id: str, lease: float) -> Job | None:
        """Lease one given job to `worker_id` (a queue that is not the store chose it).

        Like `claim`, for a job the PostgreSQL queue (procrastinate) handed to this worker:
        a queued job, or a running one whose worker stopped, becomes running with one more
        attempt; a finished or unknown job gives None (it must not run again).
        """

    async def renew(self, job: Job, lease: float) -> bool:
        """Extend the job's lease from now; False when the worker no longer holds it."""

    async def complete(self, job: Job, state: JobState, summary: str) -> None:
        """Finish the job as DONE or FAILED with a summary; raise LeaseLost if not held."""

    async def retry_later(self, job: Job, delay: float, reason: str) -> None:
        """Put the job back in the queue, due in `delay` seconds; raise LeaseLost if not held.

        The job keeps its dedupe key while queued again, so new deliveries still fold into it.
        """

    async def set_check_run(self, job: Job, check_run_id: int) -> None:
        """Remember the check run the job reports on, so a retry updates the same one."""

    async def audit(
        self,
        job_id: int | None,
        stage: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        *,
        delivery_id: str | None = None,
    ) -> None:
        """Append one event to the audit trail."""

    async def reclaim(self, lease_owners: Collection[str], reason: str) -> int:
        """Queue again, at once, the running jobs of workers known to be dead; return how many."""

    async def get_job(self, job_id: int) -> Job | None:
        """Return one job, or None."""

    async def recent_rescan(self, key: str) -> dict[str, Any] | None:
        """The last rescan recorded for `key` (`bot.handlers.comments.RescanLedger`)."""

    async def record_rescan(self, key: str, result: Mapping[str, Any]) -> None:
        """Record a finished rescan for `key`, for every worker to answer from."""

    async def pending_jobs(self) -> dict[JobState, int]:
        """How many jobs are queued and how many running, for the whole App."""

    async def list_jobs(self, limit: int = 50, *, state: JobState | None = None) -> list[Job]:
        """Return the most recent jobs first."""

    async def audit_trail(self, job_id: int) -> list[AuditEvent]:
        """Return a job's audit events, oldest first."""


# -- retained artifacts (issue 5) ---------------------------------------------------------------


class RetainedState(StrEnum):
    """Where a retained artifact's bytes are.

    KEPT: in the artifact store, verified against the digest. PENDING: the store failed; the
    bytes wait in a local spool and the retention is retried. FAILED: the bytes could not be
    kept at all (the store and the spool both failed); only the metadata remains.
    """

    KEPT = "kept"
    PENDING = "pending"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Sighting:
    """One scan that found a retained artifact failing: where it came from, and what it found."""

    seen_at: float
    artifact_name: str
    installation_id: int | None = None
    event: str | None = None
    delivery_id: str | None = None
    job_id: int | None = None
    pull_request: int | None = None
    release: str | None = None
    workflow_run_id: int | None = None
    artifact_id: int | None = None
    check_run_url: str | None = None
    findings: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "seen_at": iso_time(self.seen_at),
            "artifact_name": self.artifact_name,
            "installation_id": self.installation_id,
            "event": self.event,
            "delivery_id": self.delivery_id,
            "job_id": self.job_id,
            "pull_request": self.pull_request,
            "release": self.release,
            "workflow_run_id": self.workflow_run_id,
            "artifact_id": self.artifact_id,
            "check_run_url": self.check_run_url,
            "findings": list(self.findings),
        }


@dataclass(frozen=True, slots=True)
class RetainedRecord:
    """The metadata of one retained artifact: one per (repository, commit, digest).

    The bytes are stored once per digest, whatever the number of records that name it. A
    later scan of the same bytes for the same commit adds a `Sighting` and extends
    `expires_at` instead of keeping a second copy. `sightings` is filled by `get_retained`
    only; listings leave it empty and give `sighting_count`.
    """

    id: str
    digest: str
    size: int
    repository: str
    commit: str
    artifact_name: str
    state: RetainedState
    kept_at: float
    expires_at: float
    last_seen_at: float
    attempts: int = 0
    next_attempt_at: float | None = None
    last_error: str | None = None
    spool_path: str | None = None
    sighting_count: int = 0
    sightings: tuple[Sighting, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the record as JSON-able data (the `retained show --json` shape)."""
        return {
            "id": self.id,
            "sha256": self.digest,
            "size": self.size,
            "repository": self.repository,
            "commit": self.commit,
            "artifact_name": self.artifact_name,
            "state": self.state.value,
            "kept_at": iso_time(self.kept_at),
            "expires_at": iso_time(self.expires_at),
            "last_seen_at": iso_time(self.last_seen_at),
            "attempts": self.attempts,
            "next_attempt_at": iso_time(self.next_attempt_at),
            "last_error": self.last_error,
            "sighting_count": self.sighting_count,
            "sightings": [sighting.to_json() for sighting in self.sightings],
        }


@dataclass(frozen=True, slots=True)
class RetainedFilter:
    """Which records `list_retained` returns (every field narrows; None: any)."""

    repository: str | None = None
    """`owner/name`, compared without regard to case."""
    commit: str | None = None
    """A commit SHA or a prefix of one."""
    since: float | None = None
    """Seen at or after this time."""
    until: float | None = None
    """Kept at or before this time."""
    state: RetainedState | None = None
    digest: str | None = None
    limit: int | None = 100


class AmbiguousId(StoreError):
    """An id prefix names more than one retained artifact."""


@runtime_checkable
class RetentionIndex(Protocol):
    """The metadata index of the artifact store, kept in the same database as the jobs.

    A separate protocol from `Store` so that the job queue stays small; the SQLite store
    implements both, and a PostgreSQL backend is expected to do the same. The index never
    touches the bytes: `bot.retention` keeps those in the artifact store.
    """

    async def upsert_retained(
        self, record: RetainedRecord, sighting: Sighting
    ) -> tuple[RetainedRecord, bool]:
        """Insert `record`, or merge it into the record that has its id; add the sighting.

        Merging keeps the better state (kept over pending over failed), the later
        `expires_at` and `last_seen_at`, and skips a sighting already recorded for the same
        delivery, job and artifact (a retried job). Returns the record as stored and whether
        it was created.
        """

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
        """Set a record's retention state (a retry that succeeded or failed again)."""

    async def get_retained(self, retained_id: str) -> RetainedRecord | None:
        """Return one record with its sightings, by id or unique id prefix (AmbiguousId)."""

    async def list_retained(self, query: RetainedFilter) -> list[RetainedRecord]:
        """Return matching records, most recently seen first, without their sightings."""

    async def due_retained(self, now: float) -> list[RetainedRecord]:
        """Return the pending records whose next retry is due."""

    async def delete_retained(self, retained_ids: Collection[str]) -> set[str]:
        """Delete records (and their sightings); return the digests no record names any more."""

    async def referenced_digests(self) -> set[str]:
        """Return every digest that some record names."""

    async def audit(
        self,
        job_id: int | None,
        stage: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        *,
        delivery_id: str | None = None,
    ) -> None:
        """Append one event to the audit trail (the same method as `Store.audit`)."""


# -- scanned once: verdicts and check-run coverage (issue 15) -----------------------------------


@dataclass(frozen=True, slots=True)
class StoredVerdict:
    """A scan's verdict on one artifact or asset, kept for the next job that meets it.

    `key` names what was scanned (the bytes' digest, or the artifact's id and size), the
    repository, the effective policy and the engine version (`bot.handlers.verdicts`); a
    config change or an engine upgrade makes a new key, so nothing is ever invalidated by
    hand. `report` is the engine's `ArtifactReport` as `to_dict` gives it; `retained_id` names
    the retained copy of a failing artifact, when one was kept.
    """

    key: str
    report: dict[str, Any]
    retained_id: str | None
    recorded_at: float


@dataclass(frozen=True, slots=True)
class CheckCoverage:
    """What the commit's latest pull-request check run covers.

    `inputs` is a digest of the completed workflow runs (id and attempt), their scanned
    artifacts (ids) and the policy the check ran with; a job that finds the same inputs has
    nothing new to report and adds no check run (`bot.handlers.pull_requests`).
    """

    repository: str
    head_sha: str
    check_run_id: int
    inputs: str
    job_id: int
    recorded_at: float


@runtime_checkable
class ScanLedger(Protocol):
    """Verdicts and check-run coverage, shared by every worker (both stores implement it)."""

    async def get_verdict(self, key: str) -> StoredVerdict | None:
        """The verdict recorded under `key`, or None."""

    async def put_verdict(self, verdict: StoredVerdict) -> None:
        """Record (or replace) the verdict under its key; forget those long unused."""

    async def get_coverage(self, repository: str, head_sha: str) -> CheckCoverage | None:
        """What the commit's latest check run covers (repository compared case-blind)."""

    async def put_coverage(self, coverage: CheckCoverage) -> None:
        """Record (or replace) what the commit's latest check run covers."""


# -- recovering failed webhook deliveries (issue 14) --------------------------------------------


@dataclass(frozen=True, slots=True)
class RedeliveryRecord:
    """How often the App asked GitHub to redeliver one delivery (by its GUID), and when last."""

    guid: str
    requests: int
    last_requested_at: float


@runtime_checkable
class DeliveryLedger(Protocol):
    """What the recovery sweep (`bot.app.recovery`) keeps in the database.

    A separate protocol from `Store`, as `RetentionIndex` is: both stores implement it. The
    high-water mark is GitHub's `delivered_at` of the newest delivery a complete sweep saw
    (GitHub's clock, never ours); the redelivery records bound how often one GUID is asked
    for again across sweeps and processes.
    """

    async def recorded_deliveries(self, delivery_ids: Collection[str]) -> set[str]:
        """Return those of `delivery_ids` (GitHub's GUIDs) this store has recorded."""

    async def recovery_mark(self) -> float | None:
        """The last complete sweep's high-water mark (epoch seconds), or None."""

    async def set_recovery_mark(self, mark: float) -> None:
        """Record a complete sweep's high-water mark; a mark never moves back."""

    async def redeliveries(self, guids: Collection[str]) -> dict[str, RedeliveryRecord]:
        """Return what is recorded about redelivery requests for these GUIDs."""

    async def note_redeliveries(self, guids: Collection[str]) -> dict[str, RedeliveryRecord]:
        """Count one redelivery request for each GUID, now (one transaction); forget the
        records older than 4 days. Return the records as they are now."""

    def sweep_lock(self, owner: str, lease: float) -> AbstractAsyncContextManager[bool]:
        """Hold the right to sweep, for one sweep: yields False when another process has it.

        On PostgreSQL a session advisory lock (released with its connection if the process
        dies); on SQLite a lease of `lease` seconds on one row.
        """

    async def audit(
        self,
        job_id: int | None,
        stage: str,
        message: str,
        data: Mapping[str, Any] | None = None,
        *,
        delivery_id: str | None = None,
    ) -> None:
        """Append one event to the audit trail (the same method as `Store.audit`)."""
