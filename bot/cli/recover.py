"""`release-guard recover [--since DURATION] [--dry-run]`: redeliver what failed, by hand.

The periodic sweep (`bot.app.recovery`) reads back to its last high-water mark; after a long
outage, or with the sweep turned off, an operator runs this to look back further (up to
GitHub's 3 days) and see what is redelivered. It lists every delivery that failed and was
never recorded, asks GitHub to redeliver each (unless `--dry-run`), and exits 0, or 2 when
the settings, the database or GitHub refused (a refused redelivery included).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from typing import Any, Final, TextIO

import aiohttp

from bot import __version__
from bot.app.recovery import Candidate, Recovery, RecoveryOptions, SweepReport
from bot.github import GitHubApp
from bot.github.deliveries import DELIVERIES_KEPT
from bot.ops.logs import configure_logging
from bot.settings import Settings, SettingsError
from bot.store import StoreError, store_for
from bot.store.base import DeliveryLedger, iso_time

EXIT_OK: Final = 0
EXIT_USAGE: Final = 2
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNITS: Final = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def add_recover_command(commands: Any) -> None:
    """Add `recover` to the CLI's subparsers."""
    recover = commands.add_parser(
        "recover",
        help="ask GitHub to redeliver the App's deliveries that failed and were never recorded",
        description=(
            "List the App's webhook deliveries that failed (GitHub keeps 3 days of them) and "
            "that the database never recorded, and ask GitHub to redeliver each one. Exit 0, "
            "or 2 when the settings, the database or GitHub refused."
        ),
    )
    recover.add_argument(
        "--since",
        type=parse_duration,
        metavar="DURATION",
        help="how far back: 90m, 12h, 3d (default: 3d, all GitHub keeps)",
    )
    recover.add_argument(
        "--dry-run", action="store_true", help="only list what would be redelivered"
    )
    recover.set_defaults(handler=run_recover)


def parse_duration(value: str) -> float:
    """`90`, `90s`, `15m`, `12h`, `3d` into seconds; more than 3 days is refused."""
    match = _DURATION.fullmatch(value.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError("expected a duration such as 90m, 12h or 3d")
    seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds <= 0:
        raise argparse.ArgumentTypeError("expected a duration above zero")
    if seconds > DELIVERIES_KEPT:
        raise argparse.ArgumentTypeError(
            "GitHub keeps deliveries for 3 days only: at most 3d (see README, "
            "'After a longer outage')"
        )
    return seconds


def run_recover(args: argparse.Namespace) -> int:
    try:
        settings = Settings.from_environment()
        configure_logging(
            level="warning", fmt=settings.log_format, secrets=settings.secret_values()
        )
        settings.require_app()
        report = asyncio.run(recover(settings, since=args.since, dry_run=args.dry_run))
    except (SettingsError, StoreError) as exc:
        print(f"release-guard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print_report(report, dry_run=args.dry_run, out=sys.stdout)
    if report.error is not None:
        print(f"release-guard: {report.error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE if report.failed else EXIT_OK


async def recover(settings: Settings, *, since: float | None, dry_run: bool) -> SweepReport:
    """Run one sweep over `since` seconds (default: GitHub's 3 days)."""
    assert settings.app_id is not None and settings.private_key is not None
    store = store_for(settings, create=not dry_run)
    await store.open()
    try:
        if not isinstance(store, DeliveryLedger):  # pragma: no cover - both stores are
            raise StoreError("this database cannot keep the recovery sweep's state")
        async with aiohttp.ClientSession(
            headers={"User-Agent": f"release-guard/{__version__}"}
        ) as session:
            app = GitHubApp(
                app_id=settings.app_id,
                private_key=settings.private_key,
                session=session,
                api_url=settings.github_api_url,
                requester=f"release-guard/{__version__}",
            )
            # A manual run is not bounded to a handful per sweep: the operator asked.
            options = RecoveryOptions(max_redeliveries=1000, max_seen=50_000)
            return await Recovery(app, store, options).sweep(
                since=since if since is not None else DELIVERIES_KEPT, dry_run=dry_run
            )
    finally:
        await store.close()


def _line(candidate: Candidate) -> str:
    what = candidate.event + (f".{candidate.action}" if candidate.action else "")
    return (
        f"{candidate.guid}  {what:<28} first tried {iso_time(candidate.first_at)}, "
        f"{candidate.attempts} attempt(s), last: {candidate.last_status}"
    )


def print_report(report: SweepReport, *, dry_run: bool, out: TextIO) -> None:
    """Say what was (or would be) redelivered, one delivery a line, then a summary."""
    if report.skipped:
        out.write("another process is sweeping now: nothing done; run it again shortly\n")
        return
    if dry_run:
        for candidate in report.candidates:
            out.write(f"would redeliver  {_line(candidate)}\n")
    for candidate in report.requested:
        out.write(f"redelivered      {_line(candidate)}\n")
    for candidate, reason in report.failed:
        out.write(f"FAILED           {_line(candidate)}: {reason}\n")
    for candidate in report.given_up:
        out.write(
            f"not asked again  {_line(candidate)}: already redelivered "
            f"{candidate.requested_before} times\n"
        )
    verb = "would be redelivered" if dry_run else "redelivery requested"
    count = len(report.candidates) if dry_run else len(report.requested)
    out.write(
        f"{report.seen} delivery attempt(s) read; {count} {verb}"
        + (f", {len(report.failed)} refused" if report.failed else "")
        + (f", {report.waiting} asked for in the last minutes" if report.waiting else "")
        + (f", {report.deferred} left for a next run" if report.deferred else "")
        + (f", {report.malformed} unreadable entr(ies) skipped" if report.malformed else "")
        + "\n"
    )
