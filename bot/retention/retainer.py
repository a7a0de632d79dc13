"""Keep a failing artifact for the people who investigate it: store it, index it, audit it.

The handlers call `Retainer.retain` between scanning an artifact and deleting its download.
It never raises: a store that fails does not lose the scan's result. The bytes then wait in
a local spool (`DATA_DIR/retained-pending`) and `retry_pending`, which the App runs
periodically, stores them later; every step lands in the job's audit trail.

Order of a retention, so that a crash at any point leaves nothing wrong behind:
1. the blob is written (atomically, verified against the digest) unless it is already stored;
2. the metadata record is written (or merged into the one for the same repository, commit
   and digest, with one more sighting);
3. the audit trail says so.
A crash before 2 leaves at most an unreferenced blob or an invisible partial write, which
`gc` removes; the job itself is run again (its lease expires) and retains the artifact anew.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from bot.engine.model import ArtifactReport, Severity
from bot.engine.policy import RetentionRules
from bot.retention.blobs import BlobStore, BlobStoreError, DigestMismatch, file_digest
from bot.retention.policy import RetentionPolicy
from bot.store.base import (
    Job,
    RetainedRecord,
    RetainedState,
    RetentionIndex,
    Sighting,
    iso_time,
)

log = logging.getLogger(__name__)

SPOOL_FOLDER: Final = "retained-pending"
"""Under DATA_DIR: the bytes of retentions that wait for the store to come back."""
MAX_BACKOFF: Final = 3600.0
"""Longest wait between two retries of a pending retention."""


def retained_id(repository: str, commit: str, digest: str) -> str:
    """The id of the record for these bytes in this commit: 16 hex digits, stable anywhere.

    Deterministic, so a retried job finds its own record, and the id is known (and can be
    shown in the check run) before the store has answered.
    """
    key = f"{repository.lower()}\n{commit.lower()}\n{digest}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class RetentionMeta:
    """Where a scanned artifact came from: what the metadata record says about it."""

    repository: str
    commit: str
    installation_id: int | None = None
    event: str | None = None
    delivery_id: str | None = None
    job_id: int | None = None
    pull_request: int | None = None
    release: str | None = None
    workflow_run_id: int | None = None
    artifact_id: int | None = None
    artifact_name: str | None = None
    """Defaults to the report's name."""
    check_run_url: str | None = None

    @classmethod
    def for_job(
        cls,
        job: Job,
        *,
        commit: str | None = None,
        workflow_run_id: int | None = None,
        artifact_id: int | None = None,
        artifact_name: str | None = None,
        check_run_url: str | None = None,
    ) -> RetentionMeta:
        """Fill what a job knows (repository, installation, delivery, event, pull request,
        release); `commit` defaults to the job's head SHA."""
        details: Mapping[str, Any] = job.details
        head = commit or job.head_sha
        if not head:
            raise ValueError(
                f"job {job.id}: a retained artifact needs the commit it was built from"
            )
        pull = details.get("pull_number")
        if pull is None and details.get("is_pull_request"):
            pull = details.get("issue_number")
        release = details.get("tag_name") or details.get("release_id")
        run = workflow_run_id if workflow_run_id is not None else details.get("workflow_run_id")
        return cls(
            repository=job.repository,
            commit=head,
            installation_id=job.installation_id,
            event=str(details.get("event") or job.kind.value),
            delivery_id=job.delivery_id,
            job_id=job.id,
            pull_request=pull if isinstance(pull, int) else None,
            release=str(release) if release is not None else None,
            workflow_run_id=run if isinstance(run, int) else None,
            artifact_id=artifact_id,
            artifact_name=artifact_name,
            check_run_url=check_run_url,
        )

    def sighting(self, at: float, report: ArtifactReport) -> Sighting:
        return Sighting(
            seen_at=at,
            artifact_name=self.artifact_name or report.name,
            installation_id=self.installation_id,
            event=self.event,
            delivery_id=self.delivery_id,
            job_id=self.job_id,
            pull_request=self.pull_request,
            release=self.release,
            workflow_run_id=self.workflow_run_id,
            artifact_id=self.artifact_id,
            check_run_url=self.check_run_url,
            findings=tuple(finding.to_dict() for finding in report.findings),
        )


class Missing(enum.Enum):
    """`Retainer.retain_stored`'s answer when the bytes to point at are not in the store."""

    MISSING = "missing"


MISSING: Final = Missing.MISSING


@dataclass(frozen=True, slots=True)
class RetainedRef:
    """What became of one retention, for the check run and the job's result.

    `state` KEPT: stored and verified; PENDING: the store failed and the retention will be
    retried; FAILED: it could not be kept (`error` says why). `stored_now` is False when
    the same bytes were already in the store.
    """

    id: str
    digest: str
    size: int
    artifact_name: str
    state: RetainedState
    expires_at: float | None = None
    stored_now: bool = False
    error: str | None = None

    @property
    def kept(self) -> bool:
        return self.state is RetainedState.KEPT


def retention_note(refs: Iterable[RetainedRef]) -> str | None:
    """One Markdown-free sentence for the check run about the retentions that did not succeed.

    None when every retention succeeded (or nothing was retained).
    """
    pending = [ref for ref in refs if not ref.kept]
    if not pending:
        return None
    names = ", ".join(f"{ref.artifact_name} ({ref.id})" for ref in pending)
    if all(ref.state is RetainedState.PENDING for ref in pending):
        return (
            f"Retention failed for {names}: the artifact store did not answer; the bytes are "
            "held locally and storing them will be retried. The scan result above stands."
        )
    return (
        f"Retention failed for {names}: the artifact could not be kept "
        f"({pending[0].error or 'unknown error'}). The scan result above stands."
    )


def retained_ids(refs: Iterable[RetainedRef]) -> str | None:
    """The ids for `SummaryContext.retained_id` (space-separated; `retained show` takes many)."""
    ids = list(dict.fromkeys(ref.id for ref in refs))
    return " ".join(ids) if ids else None


class Retainer:
    """Keeps artifacts in a BlobStore, their metadata in a RetentionIndex, per a policy."""

    def __init__(
        self,
        blobs: BlobStore,
        index: RetentionIndex,
        policy: RetentionPolicy,
        *,
        spool_dir: Path,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.blobs = blobs
        self.index = index
        self.policy = policy
        self.spool_dir = spool_dir
        self.clock = clock
        self.lock = asyncio.Lock()
        """Held while a record is written and while gc deletes, so that gc in this process
        never deletes a blob that a retention is about to name."""

    # -- retaining -----------------------------------------------------------------------------

    async def retain(
        self,
        path: Path,
        *,
        artifact_report: ArtifactReport,
        meta: RetentionMeta,
        rules: RetentionRules | None = None,
    ) -> RetainedRef | None:
        """Keep the artifact at `path` if the policy asks for it; never raises.

        `artifact_report` is its scan (its findings go in the record; its `sha256`, when
        set, is the digest the bytes are verified against). `rules` is the repository's
        `retention:` section (`config.policy.retention`). Returns None when the policy keeps
        nothing for this artifact, else what became of it.
        """
        policy = self.policy.for_repository(rules)
        if not policy.wants(artifact_report):
            return None
        name = meta.artifact_name or artifact_report.name
        try:
            return await self._retain(path, artifact_report, meta, policy, name)
        except Exception as exc:  # retention must never take the scan's result down with it
            log.exception("retention of %s failed", name, extra={"job_id": meta.job_id})
            digest = artifact_report.sha256 or "0" * 64
            await self._audit_quietly(
                meta.job_id,
                meta.delivery_id,
                "retention_failed",
                f"could not keep {name}: {exc}",
                {"error": str(exc)},
            )
            return RetainedRef(
                id=retained_id(meta.repository, meta.commit, digest),
                digest=digest,
                size=artifact_report.size,
                artifact_name=name,
                state=RetainedState.FAILED,
                error=str(exc),
            )

    async def retain_stored(
        self,
        *,
        artifact_report: ArtifactReport,
        meta: RetentionMeta,
        rules: RetentionRules | None = None,
    ) -> RetainedRef | Missing | None:
        """Keep, for `meta`'s commit, bytes an earlier scan already stored; never raises.

        For a verdict reused without downloading the artifact again
        (`bot.handlers.verdicts`): when the policy keeps this report, the blob named by its
        `sha256` must still be in the store; then a record (and a sighting) for this
        commit points at it, as a retention of freshly downloaded bytes would. Returns None
        when the policy keeps nothing for this report, `MISSING` when the bytes are not in
        the store (or it cannot tell), so that the artifact is downloaded and kept anew.
        """
        policy = self.policy.for_repository(rules)
        if not policy.wants(artifact_report):
            return None
        digest = artifact_report.sha256
        if not digest:
            return MISSING
        name = meta.artifact_name or artifact_report.name
        rid = retained_id(meta.repository, meta.commit, digest)
        now = self.clock()
        record = RetainedRecord(
            id=rid,
            digest=digest,
            size=artifact_report.size,
            repository=meta.repository,
            commit=meta.commit.lower(),
            artifact_name=name,
            state=RetainedState.KEPT,
            kept_at=now,
            expires_at=now + policy.seconds,
            last_seen_at=now,
        )
        try:
            async with self.lock:  # gc in this process cannot delete the blob meanwhile
                if await self.blobs.stat(digest) is None:
                    return MISSING
                stored, _created = await self.index.upsert_retained(
                    record, meta.sighting(now, artifact_report)
                )
            await self.index.audit(
                meta.job_id,
                "retained",
                f"kept {name} as {rid} until {iso_time(stored.expires_at)} (scanned before: "
                "already in the store, not downloaded again)",
                {
                    "retained_id": rid,
                    "sha256": digest,
                    "size": artifact_report.size,
                    "store": self.blobs.url,
                    "expires_at": iso_time(stored.expires_at),
                    "stored_now": False,
                },
                delivery_id=meta.delivery_id,
            )
        except Exception:  # the artifact is scanned again instead: nothing is lost
            log.exception("cannot reuse the kept copy of %s", name, extra={"job_id": meta.job_id})
            return MISSING
        return RetainedRef(
            id=rid,
            digest=digest,
            size=artifact_report.size,
            artifact_name=name,
            state=RetainedState.KEPT,
            expires_at=stored.expires_at,
        )

    async def _retain(
        self,
        path: Path,
        report: ArtifactReport,
        meta: RetentionMeta,
        policy: RetentionPolicy,
        name: str,
    ) -> RetainedRef:
        if report.sha256:
            digest, size = report.sha256, report.size
        else:  # a directory artifact, or a report without a digest: hash the file now
            digest, size = await asyncio.to_thread(file_digest, path)
        rid = retained_id(meta.repository, meta.commit, digest)
        now = self.clock()
        errors = sum(1 for f in report.findings if f.severity is Severity.ERROR)
        await self.index.audit(
            meta.job_id,
            "retaining",
            f"keeping {name} ({size:,} bytes, sha256 {digest[:12]}) as {rid}",
            {"retained_id": rid, "sha256": digest, "size": size, "errors": errors},
            delivery_id=meta.delivery_id,
        )
        record = RetainedRecord(
            id=rid,
            digest=digest,
            size=size,
            repository=meta.repository,
            commit=meta.commit.lower(),
            artifact_name=name,
            state=RetainedState.KEPT,
            kept_at=now,
            expires_at=now + policy.seconds,
            last_seen_at=now,
        )
        sighting = meta.sighting(now, report)
        try:
            stored_now = await self.blobs.put_file(digest, path, size=size)
        except DigestMismatch as exc:
            return await self._refuse(record, sighting, meta, exc)
        except BlobStoreError as exc:
            return await self._defer(path, record, sighting, meta, exc)
        async with self.lock:
            stored, _created = await self.index.upsert_retained(record, sighting)
            if await self.blobs.stat(digest) is None:  # deleted by a gc elsewhere meanwhile
                stored_now = await self.blobs.put_file(digest, path, size=size)
        how = "stored" if stored_now else "already in the store, not stored twice"
        await self.index.audit(
            meta.job_id,
            "retained",
            f"kept {name} as {rid} until {iso_time(stored.expires_at)} ({how})",
            {
                "retained_id": rid,
                "sha256": digest,
                "size": size,
                "store": self.blobs.url,
                "expires_at": iso_time(stored.expires_at),
                "stored_now": stored_now,
            },
            delivery_id=meta.delivery_id,
        )
        log.info("kept %s as %s (sha256 %s)", name, rid, digest, extra={"job_id": meta.job_id})
        return RetainedRef(
            id=rid,
            digest=digest,
            size=size,
            artifact_name=name,
            state=RetainedState.KEPT,
            expires_at=stored.expires_at,
            stored_now=stored_now,
        )

    async def _refuse(
        self, record: RetainedRecord, sighting: Sighting, meta: RetentionMeta, exc: Exception
    ) -> RetainedRef:
        """The downloaded file does not match its own scan's digest: keep nothing, say so."""
        failed = _replace_state(record, RetainedState.FAILED, error=str(exc))
        await self.index.upsert_retained(failed, sighting)
        await self.index.audit(
            meta.job_id,
            "retention_failed",
            f"refused to keep {record.artifact_name}: {exc}",
            {"retained_id": record.id, "sha256": record.digest},
            delivery_id=meta.delivery_id,
        )
        return _ref(failed, error=str(exc))

    async def _defer(
        self,
        path: Path,
        record: RetainedRecord,
        sighting: Sighting,
        meta: RetentionMeta,
        exc: BlobStoreError,
    ) -> RetainedRef:
        """The store failed: spool the bytes locally and retry later (or fail, disk full)."""
        spool = self.spool_dir / record.id
        try:
            await asyncio.to_thread(_spool_copy, path, spool)
        except OSError as spool_exc:
            error = f"{exc}; the local spool failed too: {spool_exc.strerror or spool_exc}"
            state = _replace_state(record, RetainedState.FAILED, error=error)
            message = f"could not keep {record.artifact_name}: {error}; it is not retained"
        else:
            state = _replace_state(
                record,
                RetainedState.PENDING,
                error=str(exc),
                attempts=1,
                next_attempt_at=self.clock() + _backoff(1),
                spool_path=str(spool),
            )
            message = (
                f"could not keep {record.artifact_name} as {record.id}: {exc}; "
                "held locally, will retry"
            )
        stored, _ = await self.index.upsert_retained(state, sighting)
        if stored.spool_path != str(spool):  # the record was already kept: no retry needed
            await asyncio.to_thread(_unlink, spool)
        log.warning("%s", message, extra={"job_id": meta.job_id})
        await self.index.audit(
            meta.job_id,
            "retention_failed",
            message,
            {"retained_id": record.id, "sha256": record.digest, "error": str(exc)},
            delivery_id=meta.delivery_id,
        )
        return _ref(stored, error=state.last_error)

    # -- retrying ------------------------------------------------------------------------------

    async def retry_pending(self) -> list[RetainedRef]:
        """Store the spooled bytes of pending retentions whose retry is due; never raises."""
        refs: list[RetainedRef] = []
        try:
            due = await self.index.due_retained(self.clock())
        except Exception:
            log.exception("cannot read the pending retentions")
            return refs
        for record in due:
            try:
                refs.append(await self._retry(record))
            except Exception:
                log.exception("retrying retention %s failed", record.id)
        return refs

    async def _retry(self, record: RetainedRecord) -> RetainedRef:
        full = await self.index.get_retained(record.id)
        last = full.sightings[-1] if full is not None and full.sightings else None
        job_id = last.job_id if last else None
        delivery_id = last.delivery_id if last else None
        attempt = record.attempts + 1
        spool = Path(record.spool_path) if record.spool_path else None
        if spool is None or not spool.is_file():
            error = "the locally held bytes are gone (DATA_DIR was cleared or is ephemeral)"
            await self._set(record, RetainedState.FAILED, attempt, None, error, None)
            await self.index.audit(
                job_id,
                "retention_failed",
                f"retry {attempt} of {record.id}: {error}; it is not retained",
                {"retained_id": record.id, "attempt": attempt},
                delivery_id=delivery_id,
            )
            return _ref(record, state=RetainedState.FAILED, error=error)
        try:
            stored_now = await self.blobs.put_file(record.digest, spool, size=record.size)
        except DigestMismatch as exc:
            await self._set(record, RetainedState.FAILED, attempt, None, str(exc), None)
            await asyncio.to_thread(_unlink, spool)
            await self.index.audit(
                job_id,
                "retention_failed",
                f"retry {attempt} of {record.id}: {exc}",
                {"retained_id": record.id, "attempt": attempt},
                delivery_id=delivery_id,
            )
            return _ref(record, state=RetainedState.FAILED, error=str(exc))
        except BlobStoreError as exc:
            next_at = self.clock() + _backoff(attempt)
            await self._set(record, RetainedState.PENDING, attempt, next_at, str(exc), str(spool))
            await self.index.audit(
                job_id,
                "retention_retry",
                f"retry {attempt} of {record.id} failed: {exc}; next at {iso_time(next_at)}",
                {"retained_id": record.id, "attempt": attempt, "error": str(exc)},
                delivery_id=delivery_id,
            )
            return _ref(record, state=RetainedState.PENDING, error=str(exc))
        await self._set(record, RetainedState.KEPT, attempt, None, None, None)
        await asyncio.to_thread(_unlink, spool)
        await self.index.audit(
            job_id,
            "retained",
            f"kept {record.artifact_name} as {record.id} on retry {attempt}"
            f" until {iso_time(record.expires_at)}",
            {
                "retained_id": record.id,
                "sha256": record.digest,
                "size": record.size,
                "store": self.blobs.url,
                "attempt": attempt,
                "stored_now": stored_now,
            },
            delivery_id=delivery_id,
        )
        log.info("kept %s as %s on retry %d", record.artifact_name, record.id, attempt)
        return _ref(record, state=RetainedState.KEPT, stored_now=stored_now)

    async def _set(
        self,
        record: RetainedRecord,
        state: RetainedState,
        attempts: int,
        next_attempt_at: float | None,
        error: str | None,
        spool_path: str | None,
    ) -> None:
        await self.index.update_retained(
            record.id,
            state=state,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            last_error=error,
            spool_path=spool_path,
        )

    async def _audit_quietly(
        self,
        job_id: int | None,
        delivery_id: str | None,
        stage: str,
        message: str,
        data: dict[str, Any],
    ) -> None:
        try:
            await self.index.audit(job_id, stage, message, data, delivery_id=delivery_id)
        except Exception:
            log.exception("cannot write the audit trail")


def _backoff(attempt: int) -> float:
    """Seconds before retry `attempt + 1`: one minute, doubling, at most an hour."""
    return float(min(MAX_BACKOFF, 60.0 * 2 ** max(0, attempt - 1)))


def _replace_state(
    record: RetainedRecord,
    state: RetainedState,
    *,
    error: str | None = None,
    attempts: int = 0,
    next_attempt_at: float | None = None,
    spool_path: str | None = None,
) -> RetainedRecord:
    return replace(
        record,
        state=state,
        last_error=error,
        attempts=attempts,
        next_attempt_at=next_attempt_at,
        spool_path=spool_path,
    )


def _ref(
    record: RetainedRecord,
    *,
    state: RetainedState | None = None,
    error: str | None = None,
    stored_now: bool = False,
) -> RetainedRef:
    return RetainedRef(
        id=record.id,
        digest=record.digest,
        size=record.size,
        artifact_name=record.artifact_name,
        state=state or record.state,
        expires_at=record.expires_at,
        stored_now=stored_now,
        error=error,
    )


def _spool_copy(source: Path, dest: Path) -> None:
    """Copy a file into the spool atomically (a temporary name, flushed, then renamed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    try:
        with source.open("rb") as src, partial.open("wb") as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _unlink(path: Path) -> None:
    path.unlink(missing_ok=True)
