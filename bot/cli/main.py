"""The `release-guard` command line (CONTRACT.md fixes its commands and exit codes)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from bot import __version__
from bot.cli.progress import ProgressBar
from bot.engine.model import Report, Severity
from bot.engine.policy import Policy
from bot.engine.scan import scan_path
from bot.errors import ConfigError, InputError
from bot.report import FORMATS, render

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2

DEFAULT_CONFIG = Path(".github/release-guard.yml")


def build_parser(*, app_commands: bool = True) -> argparse.ArgumentParser:
    """Return the command line's parser; without `app_commands`, only `scan`.

    The App's commands import aiohttp, gidgethub and the job store; `scan`, which CI jobs
    run on every build, does not pay for those imports.
    """
    parser = argparse.ArgumentParser(
        prog="release-guard",
        description="Stop a release from shipping source maps, secrets and files it must not ship.",
    )
    parser.add_argument("--version", action="version", version=f"release-guard {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True

    scan = commands.add_parser(
        "scan",
        help="scan local artifacts (files or directories) with the engine the App uses",
        description=(
            "Scan build artifacts: archives (zip, whl, jar, tar, tgz, tar.bz2, tar.xz, nested), "
            "lone .js/.css/.map files, or directories. Exit 0 when no finding is an error, "
            "1 when at least one is, 2 for a usage, config or unreadable-input error."
        ),
    )
    scan.add_argument("paths", nargs="+", metavar="PATH", type=Path, help="file or directory")
    scan.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"repository config (default: {DEFAULT_CONFIG} when it exists)",
    )
    scan.add_argument("--format", choices=FORMATS, default="text", help="report format")
    scan.add_argument("--output", type=Path, metavar="FILE", help="write the report to FILE")
    scan.set_defaults(handler=run_scan)
    if app_commands:
        from bot.app.serve import add_serve_commands
        from bot.cli.demo import add_demo_command
        from bot.cli.jobs import add_jobs_commands
        from bot.cli.recover import add_recover_command
        from bot.cli.retained import add_retained_commands

        add_serve_commands(commands)
        add_jobs_commands(commands)
        add_retained_commands(commands)
        add_demo_command(commands)
        add_recover_command(commands)
    return parser


def policy_from(config: Path | None) -> Policy:
    if config is None:
        if not DEFAULT_CONFIG.is_file():
            return Policy()  # no YAML to read: the parser is not even imported
        config = DEFAULT_CONFIG
    if not config.is_file():
        raise InputError(f"{config}: config file not found")
    from bot.config import load_policy_file

    return load_policy_file(config)


def _wants_color(args: argparse.Namespace) -> bool:
    return (
        args.format == "text"
        and args.output is None
        and sys.stdout.isatty()
        and "NO_COLOR" not in os.environ
    )


class Terminated(SystemExit):
    """SIGTERM arrived: unwind like Ctrl-C does, so every `finally` runs (the archive
    walker's spooled files are removed) before the process exits with 128 + 15."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(128 + signum)


@contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """Make SIGTERM raise `Terminated` while a scan runs (the default would kill the process
    at once and leave its temporary files behind). Only the main thread can set it."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_scan(args: argparse.Namespace) -> int:
    with _terminate_cleanly():
        return _run_scan(args)


def _run_scan(args: argparse.Namespace) -> int:
    policy = policy_from(args.config)
    bar = ProgressBar.for_stream(sys.stderr)
    count = len(args.paths)
    try:
        report = Report(
            artifacts=[
                scan_path(
                    path,
                    policy=policy,
                    progress=bar.tracker(index, count, path.name or str(path)) if bar else None,
                )
                for index, path in enumerate(args.paths, start=1)
            ]
        )
    finally:
        if bar is not None:
            bar.clear()
    text = render(report, args.format, color=_wants_color(args))
    if args.output is not None:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"{args.output}: cannot write: {exc.strerror}") from exc
    else:
        sys.stdout.write(text)
    failed = any(f.severity is Severity.ERROR for f in report.findings)
    return EXIT_FINDINGS if failed else EXIT_OK


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names (its first word that is not an option), if any."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(app_commands=_command_of(words) != "scan")
    args = parser.parse_args(words)
    try:
        code: int = args.handler(args)
    except (ConfigError, InputError) as exc:
        print(f"release-guard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return code
