"""`release-guard jobs` and `release-guard audit JOB`: what the App did, and why, stage by stage."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from bot.settings import Settings, SettingsError
from bot.store import AuditEvent, Job, Store, StoreError, StoreMissing, store_for
from bot.store.base import iso_time

T = TypeVar("T")

EXIT_OK = 0
EXIT_USAGE = 2


def add_jobs_commands(commands: Any) -> None:
    """Add `jobs` and `audit` to the CLI's subparsers."""
    jobs = commands.add_parser(
        "jobs",
        help="list recent jobs",
        description="List the most recent jobs, newest first, from the App's database.",
    )
    jobs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    jobs.add_argument(
        "--limit", type=_positive, default=50, metavar="N", help="how many (default: 50)"
    )
    jobs.set_defaults(handler=run_jobs)

    audit = commands.add_parser(
        "audit",
        help="show one job's audit trail",
        description="Show one job and its append-only audit trail, stage by stage.",
    )
    audit.add_argument("job", type=_positive, metavar="JOB", help="the job's id (see `jobs`)")
    audit.add_argument("--json", action="store_true", help="print JSON instead of text")
    audit.set_defaults(handler=run_audit)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("expected a positive whole number")
    return int(value)


async def _with_store(read: Callable[[Store], Awaitable[T]]) -> T:
    store = store_for(Settings.from_environment(), create=False)
    await store.open()
    try:
        return await read(store)
    finally:
        await store.close()


def _short(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def format_jobs(jobs: Sequence[Job]) -> str:
    """Render jobs as an aligned table (one line each)."""
    header = (
        "ID",
        "STATE",
        "KIND",
        "REPOSITORY",
        "COMMIT",
        "TRIES",
        "CHECK RUN",
        "UPDATED",
        "RESULT",
    )
    rows = [
        (
            str(job.id),
            job.state.value,
            job.kind.value,
            job.repository,
            (job.head_sha or "-")[:7],
            str(job.attempts),
            str(job.check_run_id or "-"),
            iso_time(job.updated_at) or "",
            _short(job.result_summary, 60),
        )
        for job in jobs
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        + "  "
        + row[-1]
        for row in [header, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def format_trail(job: Job, trail: Sequence[AuditEvent]) -> str:
    """Render a job and its audit trail for a person."""
    commit = f" @ {job.head_sha[:7]}" if job.head_sha else ""
    lines = [
        f"job {job.id}: {job.kind.value} {job.repository}{commit}",
        f"  state {job.state.value}, attempt {job.attempts}, delivery {job.delivery_id}"
        + (f", check run {job.check_run_id}" if job.check_run_id else ""),
    ]
    if job.result_summary:
        lines.append(f"  result: {job.result_summary}")
    lines.append("")
    width = max((len(event.stage) for event in trail), default=0)
    for event in trail:
        line = f"{iso_time(event.at)}  {event.stage.ljust(width)}  {event.message}"
        if event.data:
            line += "  " + json.dumps(event.data, sort_keys=True, default=str)
        lines.append(line)
    return "\n".join(lines) + "\n"


def run_jobs(args: argparse.Namespace) -> int:
    try:
        jobs = asyncio.run(_with_store(lambda store: store.list_jobs(args.limit)))
    except StoreMissing:
        jobs = []
    except (SettingsError, StoreError) as exc:
        return _fail(exc)
    if args.json:
        sys.stdout.write(json.dumps([job.to_json() for job in jobs], indent=2) + "\n")
    elif not jobs:
        sys.stdout.write("no jobs yet\n")
    else:
        sys.stdout.write(format_jobs(jobs))
    return EXIT_OK


def run_audit(args: argparse.Namespace) -> int:
    async def read(store: Store) -> tuple[Job | None, list[AuditEvent]]:
        job = await store.get_job(args.job)
        return job, (await store.audit_trail(args.job) if job is not None else [])

    try:
        job, trail = asyncio.run(_with_store(read))
    except (SettingsError, StoreError) as exc:
        return _fail(exc)
    if job is None:
        return _fail(f"no job {args.job} (see `release-guard jobs`)")
    if args.json:
        document = {"job": job.to_json(), "trail": [event.to_json() for event in trail]}
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    else:
        sys.stdout.write(format_trail(job, trail))
    return EXIT_OK


def _fail(error: object) -> int:
    print(f"release-guard: {error}", file=sys.stderr)
    return EXIT_USAGE
