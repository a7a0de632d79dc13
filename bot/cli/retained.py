"""`release-guard retained list|show|export|gc`: the store of failing artifacts, for investigators.

Exit status 0 when the command did what it was asked, 2 otherwise (usage, settings, an
unknown id, a database or store that cannot be used, and an export refused because the
stored bytes do not match their digest).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from bot.retention import Retainer, build_retainer
from bot.retention.blobs import BlobStoreError, blob_key
from bot.retention.gc import GcReport, collect_garbage
from bot.settings import Settings, SettingsError
from bot.store import StoreError, StoreMissing, store_for
from bot.store.base import (
    RetainedFilter,
    RetainedRecord,
    RetainedState,
    RetentionIndex,
    iso_time,
)

T = TypeVar("T")

EXIT_OK = 0
EXIT_USAGE = 2

_ID = re.compile(r"[0-9a-f]{6,16}")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_RELATIVE = re.compile(r"(\d+)([dh])")


class CommandFailed(Exception):
    """A retained command cannot do what it was asked; the message says why (exit 2)."""


def add_retained_commands(commands: Any) -> None:
    """Add `retained` (list, show, export, gc) to the CLI's subparsers."""
    retained = commands.add_parser(
        "retained",
        help="the artifacts kept because they failed a scan",
        description=(
            "Failing artifacts are kept in ARTIFACT_STORE (a folder under DATA_DIR, or S3), "
            "named by their SHA-256, with a metadata record in the App's database."
        ),
    )
    actions = retained.add_subparsers(dest="retained_command", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser(
        "list",
        help="list retained artifacts, most recently seen first",
        description="List retained artifacts, most recently seen first.",
    )
    listing.add_argument("--repository", metavar="OWNER/NAME", help="only this repository")
    listing.add_argument("--commit", type=_commit, metavar="SHA", help="only this commit (prefix)")
    listing.add_argument(
        "--since", type=_since, metavar="DATE", help="seen on or after (2026-01-31, or 7d, 12h ago)"
    )
    listing.add_argument("--until", type=_until, metavar="DATE", help="kept on or before DATE")
    listing.add_argument(
        "--state", choices=[s.value for s in RetainedState], help="only this state"
    )
    listing.add_argument(
        "--limit", type=_positive, default=100, metavar="N", help="how many (default: 100)"
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(handler=run_list)

    show = actions.add_parser(
        "show",
        help="show one retained artifact: where it came from, what it failed, where it is",
        description="Show retained artifacts by id (or a unique prefix of at least 6 digits).",
    )
    show.add_argument("ids", nargs="+", type=_retained_id, metavar="ID", help="a retained id")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.set_defaults(handler=run_show)

    export = actions.add_parser(
        "export",
        help="copy a retained artifact out of the store, verifying its digest",
        description=(
            "Copy a retained artifact to DEST (a new file, or a folder to put it in). The bytes "
            "are hashed on the way; an artifact that does not match its SHA-256 is refused and "
            "nothing is left at DEST."
        ),
    )
    export.add_argument("id", type=_retained_id, metavar="ID", help="a retained id")
    export.add_argument("dest", type=Path, metavar="DEST", help="a new file, or a folder")
    export.add_argument("--json", action="store_true", help="print JSON instead of text")
    export.set_defaults(handler=run_export)

    gc = actions.add_parser(
        "gc",
        help="delete expired artifacts, then the oldest past the size cap",
        description=(
            "Delete what has expired (RETENTION_DAYS, or a repository's retention.days), then "
            "the least recently seen artifacts until the store is within RETENTION_MAX_SIZE, "
            "then leftovers of interrupted writes; print what was deleted."
        ),
    )
    gc.add_argument("--dry-run", action="store_true", help="say what would go; delete nothing")
    gc.add_argument("--json", action="store_true", help="print JSON instead of text")
    gc.set_defaults(handler=run_gc)


# -- argument types ------------------------------------------------------------------------------


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("expected a positive whole number")
    return int(value)


def _retained_id(value: str) -> str:
    if not _ID.fullmatch(value.lower()):
        raise argparse.ArgumentTypeError(
            "expected a retained id: 16 hex digits, or a prefix of at least 6 "
            "(see `release-guard retained list`)"
        )
    return value.lower()


def _commit(value: str) -> str:
    if not re.fullmatch(r"[0-9a-fA-F]{4,64}", value):
        raise argparse.ArgumentTypeError("expected a commit SHA or a prefix of at least 4 digits")
    return value.lower()


def _date(value: str) -> tuple[datetime, bool]:
    """A point in time and whether it was a bare date (ISO 8601; naive means UTC)."""
    relative = _RELATIVE.fullmatch(value.strip())
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        delta = timedelta(days=amount) if unit == "d" else timedelta(hours=amount)
        return datetime.now(UTC) - delta, False
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected a date (2026-01-31), a time (2026-01-31T12:00Z) or an age (7d, 12h)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed, len(value.strip()) == 10


def _since(value: str) -> float:
    return _date(value)[0].timestamp()


def _until(value: str) -> float:
    moment, bare = _date(value)
    return (moment + timedelta(days=1)).timestamp() - 0.001 if bare else moment.timestamp()


# -- opening the store ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Opened:
    index: RetentionIndex
    retainer: Retainer


async def _with_retainer(use: Callable[[_Opened], Awaitable[T]]) -> T:
    settings = Settings.from_environment()
    store = store_for(settings, create=False)
    if not isinstance(store, RetentionIndex):  # pragma: no cover - every backend has one
        raise CommandFailed("this database cannot hold retained artifacts")
    retainer = build_retainer(settings, store)
    await store.open()
    try:
        return await use(_Opened(store, retainer))
    finally:
        await store.close()


def _run(use: Callable[[_Opened], Awaitable[T]], *, missing: T | None = None) -> T:
    """Run `use` against the store; StoreMissing gives `missing` (when not None)."""
    try:
        return asyncio.run(_with_retainer(use))
    except StoreMissing:
        if missing is not None:
            return missing
        raise CommandFailed("nothing has been retained yet (no database under DATA_DIR)") from None


def _fail(error: object) -> int:
    print(f"release-guard: {error}", file=sys.stderr)
    return EXIT_USAGE


def _guard(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the errors a retained command expects into a message and exit status 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except (CommandFailed, SettingsError, StoreError, BlobStoreError) as exc:
            return _fail(exc)

    run.__doc__ = command.__doc__
    return run


def _write_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


# -- list ------------------------------------------------------------------------------------------


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # pragma: no cover


def format_records(records: Sequence[RetainedRecord]) -> str:
    """Render records as an aligned table, one line each."""
    header = ("ID", "STATE", "REPOSITORY", "COMMIT", "ARTIFACT", "SIZE", "SHA256", "LAST SEEN")
    rows = [
        (
            r.id,
            r.state.value,
            r.repository,
            r.commit[:12],
            r.artifact_name,
            _size(r.size),
            r.digest[:12],
            iso_time(r.last_seen_at) or "",
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


@_guard
def run_list(args: argparse.Namespace) -> int:
    """List retained artifacts."""
    query = RetainedFilter(
        repository=args.repository,
        commit=args.commit,
        since=args.since,
        until=args.until,
        state=RetainedState(args.state) if args.state else None,
        limit=args.limit,
    )

    async def read(opened: _Opened) -> list[RetainedRecord]:
        return await opened.index.list_retained(query)

    none: list[RetainedRecord] = []
    records = _run(read, missing=none)
    if args.json:
        _write_json([record.to_json() for record in records])
    elif not records:
        sys.stdout.write("no retained artifacts\n")
    else:
        sys.stdout.write(format_records(records))
    return EXIT_OK


# -- show ------------------------------------------------------------------------------------------


def format_record(record: RetainedRecord, store_url: str) -> str:
    """Render one record, its location and its sightings for a person."""
    lines = [
        f"retained {record.id}: {record.state.value}",
        f"  repository   {record.repository} @ {record.commit}",
        f"  artifact     {record.artifact_name}, {record.size:,} bytes",
        f"  sha256       {record.digest}",
        f"  kept         {iso_time(record.kept_at)} until {iso_time(record.expires_at)}"
        f" (last seen {iso_time(record.last_seen_at)})",
    ]
    if record.state is RetainedState.KEPT:
        lines.append(f"  stored at    {store_url.rstrip('/')}/{blob_key(record.digest)}")
        lines.append(f"  get it back  release-guard retained export {record.id} DEST")
    else:
        retry = (
            f", next retry {iso_time(record.next_attempt_at)}"
            if record.state is RetainedState.PENDING
            else ""
        )
        lines.append(f"  not stored   {record.last_error or 'unknown error'}")
        lines.append(f"  attempts     {record.attempts}{retry}")
    lines.append(f"  seen {len(record.sightings)} time(s):")
    for sighting in record.sightings:
        where = [
            f"{sighting.event or 'scan'}",
            f"delivery {sighting.delivery_id}" if sighting.delivery_id else "",
            f"job {sighting.job_id}" if sighting.job_id is not None else "",
            f"pull request #{sighting.pull_request}" if sighting.pull_request else "",
            f"release {sighting.release}" if sighting.release else "",
            f"workflow run {sighting.workflow_run_id}" if sighting.workflow_run_id else "",
            f"artifact {sighting.artifact_id}" if sighting.artifact_id else "",
        ]
        lines.append(f"  - {iso_time(sighting.seen_at)}  " + ", ".join(w for w in where if w))
        lines.append(f"    artifact name {sighting.artifact_name}")
        if sighting.check_run_url:
            lines.append(f"    check run {sighting.check_run_url}")
        for finding in sighting.findings:
            lines.append(
                f"    {finding.get('severity')} {finding.get('rule')} {finding.get('path')}: "
                f"{finding.get('message')}"
            )
    return "\n".join(lines) + "\n"


@_guard
def run_show(args: argparse.Namespace) -> int:
    """Show retained artifacts by id."""

    async def read(opened: _Opened) -> tuple[list[RetainedRecord], str]:
        found = []
        for wanted in args.ids:
            record = await opened.index.get_retained(wanted)
            if record is None:
                raise CommandFailed(
                    f"no retained artifact {wanted} (see `release-guard retained list`)"
                )
            found.append(record)
        return found, opened.retainer.blobs.url

    records, url = _run(read)
    if args.json:
        document = [dict(record.to_json(), location=_location(record, url)) for record in records]
        _write_json(document[0] if len(document) == 1 else document)
    else:
        sys.stdout.write("\n".join(format_record(record, url) for record in records))
    return EXIT_OK


def _location(record: RetainedRecord, url: str) -> str | None:
    return (
        f"{url.rstrip('/')}/{blob_key(record.digest)}"
        if record.state is RetainedState.KEPT
        else None
    )


# -- export ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Exported:
    record: RetainedRecord
    path: Path


def _destination(dest: Path, record: RetainedRecord) -> Path:
    if dest.is_dir():
        name = _SAFE_NAME.sub("_", record.artifact_name)[:80] or "artifact"
        dest = dest / f"{name}-{record.digest[:12]}.zip"
    if dest.exists() or dest.is_symlink():
        raise CommandFailed(f"{dest}: already exists; export never overwrites a file")
    if not dest.parent.is_dir():
        raise CommandFailed(f"{dest.parent}: no such folder")
    return dest


async def _export(opened: _Opened, wanted: str, dest: Path) -> _Exported:
    record = await opened.index.get_retained(wanted)
    if record is None:
        raise CommandFailed(f"no retained artifact {wanted} (see `release-guard retained list`)")
    if record.state is not RetainedState.KEPT:
        raise CommandFailed(
            f"retained artifact {record.id} is {record.state.value}, not in the store: "
            f"{record.last_error or 'unknown error'}"
        )
    target = _destination(dest, record)
    partial = target.with_name(f".{target.name}.partial")
    hasher = hashlib.sha256()
    size = 0
    last = record.sightings[-1] if record.sightings else None
    job_id, delivery_id = (last.job_id, last.delivery_id) if last else (None, None)
    try:
        with partial.open("wb") as out:
            async for chunk in opened.retainer.blobs.read(record.digest):
                hasher.update(chunk)
                size += len(chunk)
                await asyncio.to_thread(out.write, chunk)
            out.flush()
            os.fsync(out.fileno())
        if hasher.hexdigest() != record.digest or size != record.size:
            await opened.index.audit(
                job_id,
                "retention_export_refused",
                f"export of {record.id} refused: the stored bytes hash to sha256 "
                f"{hasher.hexdigest()} ({size:,} bytes), not {record.digest} ({record.size:,})",
                {"retained_id": record.id, "sha256": record.digest, "found": hasher.hexdigest()},
                delivery_id=delivery_id,
            )
            raise CommandFailed(
                f"refused: retained artifact {record.id} does not match its digest: the store "
                f"holds {size:,} bytes with sha256 {hasher.hexdigest()}, the record says "
                f"{record.size:,} bytes with sha256 {record.digest}. The blob was altered or "
                "corrupted; nothing was written to "
                f"{target}"
            )
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    await opened.index.audit(
        job_id,
        "retention_export",
        f"retained artifact {record.id} exported (sha256 verified) to {target.absolute()}",
        {"retained_id": record.id, "sha256": record.digest, "path": str(target.absolute())},
        delivery_id=delivery_id,
    )
    return _Exported(record, target)


@_guard
def run_export(args: argparse.Namespace) -> int:
    """Copy a retained artifact out of the store, verifying its digest."""
    try:
        exported = _run(lambda opened: _export(opened, args.id, args.dest))
    except OSError as exc:
        raise CommandFailed(f"{args.dest}: cannot write: {exc.strerror or exc}") from exc
    record = exported.record
    if args.json:
        _write_json(
            {
                "id": record.id,
                "path": str(exported.path),
                "sha256": record.digest,
                "size": record.size,
                "verified": True,
            }
        )
    else:
        sys.stdout.write(
            f"exported {record.id} ({record.artifact_name}, {record.size:,} bytes) to "
            f"{exported.path}\nsha256 {record.digest} verified\n"
        )
    return EXIT_OK


# -- gc --------------------------------------------------------------------------------------------


def format_gc(report: GcReport) -> str:
    """Render a gc report: one line per deletion, then the totals."""
    verb = "would delete" if report.dry_run else "deleted"
    lines = [f"{verb} {item.describe()}" for item in report.deleted]
    cap = f" (cap {_size(report.max_bytes)})" if report.max_bytes is not None else " (no cap)"
    lines.append(
        f"gc: {verb} {len(report.deleted)} item(s), {_size(report.freed_bytes)} freed; "
        f"{report.remaining_records} retained artifact(s) remain, "
        f"{_size(report.remaining_bytes)}{cap}"
    )
    return "\n".join(lines) + "\n"


@_guard
def run_gc(args: argparse.Namespace) -> int:
    """Delete expired artifacts, then the oldest past the size cap."""

    async def collect(opened: _Opened) -> GcReport:
        return await collect_garbage(opened.retainer, dry_run=args.dry_run)

    empty = GcReport(dry_run=args.dry_run, max_bytes=None)
    report = _run(collect, missing=empty)
    for warning in report.warnings:
        print(f"release-guard: warning: {warning}", file=sys.stderr)
    if args.json:
        _write_json(report.to_json())
    else:
        sys.stdout.write(format_gc(report))
    return EXIT_OK
