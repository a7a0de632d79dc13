"""Garbage collection of the artifact store: expired first, then oldest past the size cap.

`collect_garbage` decides from the index alone, then deletes the records before the blobs
(a blob left behind by a failure is an orphan that the next run removes; a record is never
left pointing at a deleted blob by gc itself). It also removes what crashes leave: blobs no
record names, staging files of interrupted writes, spooled bytes no retention waits for —
each only once it is older than a grace period, so a retention in progress elsewhere is
never undercut. `dry_run` reports the same list and deletes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bot.retention.blobs import PARTIAL_GRACE, BlobStoreError
from bot.retention.retainer import Retainer
from bot.store.base import RetainedFilter, RetainedRecord, RetainedState

log = logging.getLogger(__name__)

EXPIRED: Final = "expired"
OVER_CAP: Final = "over the size cap"
ORPHAN: Final = "no record names it"
INTERRUPTED: Final = "interrupted write"
STALE_SPOOL: Final = "spooled bytes no retention waits for"


@dataclass(frozen=True, slots=True)
class Deletion:
    """One thing gc deleted (or would delete, in a dry run), and why."""

    reason: str
    size: int
    retained_id: str | None = None
    digest: str | None = None
    repository: str | None = None
    commit: str | None = None
    artifact_name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "retained_id": self.retained_id,
            "sha256": self.digest,
            "size": self.size,
            "repository": self.repository,
            "commit": self.commit,
            "artifact_name": self.artifact_name,
        }

    def describe(self) -> str:
        if self.retained_id is not None:
            return (
                f"{self.retained_id}  {self.repository}@{(self.commit or '')[:12]}  "
                f"{self.artifact_name}  {self.size:,} bytes  ({self.reason})"
            )
        return f"{self.digest or '-'}  {self.size:,} bytes  ({self.reason})"


@dataclass(slots=True)
class GcReport:
    """What a gc run did: deletions, bytes freed, what remains, and what it could not do."""

    dry_run: bool
    max_bytes: int | None
    deleted: list[Deletion] = field(default_factory=list)
    freed_bytes: int = 0
    remaining_records: int = 0
    remaining_bytes: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "max_bytes": self.max_bytes,
            "deleted": [item.to_json() for item in self.deleted],
            "freed_bytes": self.freed_bytes,
            "remaining_records": self.remaining_records,
            "remaining_bytes": self.remaining_bytes,
            "warnings": self.warnings,
        }


def _plan(
    records: list[RetainedRecord], now: float, max_bytes: int | None
) -> tuple[list[tuple[RetainedRecord, str]], list[RetainedRecord]]:
    """Return the records to delete (with the reason) and the records that remain."""
    victims = [(r, EXPIRED) for r in records if r.expires_at <= now]
    live = [r for r in records if r.expires_at > now]
    if max_bytes is None:
        return victims, live
    refs = Counter(r.digest for r in live)
    sizes = {r.digest: r.size for r in live if r.state is RetainedState.KEPT}
    total = sum(sizes.values())
    dropped: set[str] = set()
    kept_oldest_first = sorted(
        (r for r in live if r.state is RetainedState.KEPT), key=lambda r: (r.last_seen_at, r.id)
    )
    for record in kept_oldest_first:
        if total <= max_bytes:
            break
        victims.append((record, OVER_CAP))
        dropped.add(record.id)
        refs[record.digest] -= 1
        if refs[record.digest] == 0:
            total -= record.size
    return victims, [r for r in live if r.id not in dropped]


def _kept_bytes(records: list[RetainedRecord]) -> int:
    return sum({r.digest: r.size for r in records if r.state is RetainedState.KEPT}.values())


async def collect_garbage(
    retainer: Retainer,
    *,
    dry_run: bool = False,
    grace: float = PARTIAL_GRACE,
    now: float | None = None,
) -> GcReport:
    """Delete what has expired, then the oldest past the size cap, then crash leftovers.

    Raises StoreError when the index cannot be read; a blob that cannot be deleted is a
    warning in the report (the next run tries again).
    """
    index, blobs = retainer.index, retainer.blobs
    max_bytes = retainer.policy.max_bytes
    now = retainer.clock() if now is None else now
    report = GcReport(dry_run=dry_run, max_bytes=max_bytes)
    async with retainer.lock:
        records = await index.list_retained(RetainedFilter(limit=None))
        victims, remaining = _plan(records, now, max_bytes)
        remaining_digests = {r.digest for r in remaining}
        trails = {} if dry_run else {r.id: await _last_job(retainer, r.id) for r, _ in victims}
        if dry_run:
            freed = {r.digest for r, _ in victims} - remaining_digests
        else:
            freed = await index.delete_retained([r.id for r, _ in victims])
        for record, reason in victims:
            report.deleted.append(
                Deletion(
                    reason=reason,
                    size=record.size,
                    retained_id=record.id,
                    digest=record.digest,
                    repository=record.repository,
                    commit=record.commit,
                    artifact_name=record.artifact_name,
                )
            )
            if not dry_run:
                await _after_delete(retainer, record, reason, trails.get(record.id))
        sizes = {r.digest: r.size for r, _ in victims if r.state is RetainedState.KEPT}
        for digest in sorted(freed):
            if digest not in sizes:
                continue
            if not dry_run:
                try:
                    await blobs.delete(digest)
                except BlobStoreError as exc:
                    report.warnings.append(str(exc))
                    continue
            report.freed_bytes += sizes[digest]
    report.remaining_records = len(remaining)
    report.remaining_bytes = _kept_bytes(remaining)
    await _sweep(retainer, report, had_records=bool(records), now=now, grace=grace)
    for item in report.deleted:
        log.info("gc %s: %s", "would delete" if dry_run else "deleted", item.describe())
    return report


async def _last_job(retainer: Retainer, retained_id: str) -> tuple[int | None, str | None]:
    """The job and delivery that last saw a record (whose trail hears of its deletion)."""
    full = await retainer.index.get_retained(retained_id)
    if full is None or not full.sightings:
        return None, None
    return full.sightings[-1].job_id, full.sightings[-1].delivery_id


async def _after_delete(
    retainer: Retainer,
    record: RetainedRecord,
    reason: str,
    trail: tuple[int | None, str | None] | None,
) -> None:
    """Drop a deleted record's spooled bytes and note the deletion in its job's trail."""
    if record.spool_path:
        await asyncio.to_thread(Path(record.spool_path).unlink, missing_ok=True)
    job_id, delivery_id = trail or (None, None)
    await retainer.index.audit(
        job_id,
        "retention_gc",
        f"deleted retained artifact {record.id} ({record.artifact_name}, sha256 "
        f"{record.digest[:12]}, {record.size:,} bytes): {reason}",
        {"retained_id": record.id, "sha256": record.digest, "reason": reason},
        delivery_id=delivery_id,
    )


async def _sweep(
    retainer: Retainer, report: GcReport, *, had_records: bool, now: float, grace: float
) -> None:
    """Remove crash leftovers older than `grace`: unnamed blobs, staging files, spool files."""
    index, blobs = retainer.index, retainer.blobs
    cutoff = now - grace
    try:
        stored = await blobs.list_blobs()
    except BlobStoreError as exc:
        report.warnings.append(str(exc))
        return
    async with retainer.lock:
        referenced = await index.referenced_digests()
        orphans = [b for b in stored if b.digest not in referenced and b.modified < cutoff]
        if orphans and not had_records and not referenced:
            # An empty index beside a full store is more likely a wrong DATABASE_URL than
            # a store of orphans: delete nothing that way.
            report.warnings.append(
                f"the store holds {len(stored)} blob(s) but the database has no retained "
                "artifact at all: is DATABASE_URL right? Unnamed blobs were left alone."
            )
            orphans = []
        for blob in orphans:
            if not report.dry_run:
                try:
                    await blobs.delete(blob.digest)
                except BlobStoreError as exc:
                    report.warnings.append(str(exc))
                    continue
            report.deleted.append(Deletion(reason=ORPHAN, size=blob.size, digest=blob.digest))
            report.freed_bytes += blob.size
    if not report.dry_run:
        for name in await blobs.sweep_partial(older_than=cutoff):
            report.deleted.append(Deletion(reason=INTERRUPTED, size=0, digest=name))
        pending = {
            r.spool_path
            for r in await index.list_retained(
                RetainedFilter(state=RetainedState.PENDING, limit=None)
            )
            if r.spool_path
        }
        for path in await asyncio.to_thread(_stale_spool, retainer.spool_dir, pending, cutoff):
            report.deleted.append(Deletion(reason=STALE_SPOOL, size=0, digest=path.name))


def _stale_spool(folder: Path, pending: set[str], cutoff: float) -> list[Path]:
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if str(entry) in pending or not entry.is_file():
            continue
        try:
            if entry.stat().st_mtime < cutoff:
                entry.unlink()
                removed.append(entry)
        except FileNotFoundError:
            continue
    return removed
