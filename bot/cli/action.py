"""release-guard's GitHub Action (`action.yml`), one scan for everything a workflow step shows.

`action.yml` runs ``python -m bot.cli.action`` from the release-guard it installed out of its
own checkout. One scan, the engine and config reading of `release-guard scan`, gives:

- the findings as workflow-command annotations on stdout (``--format github``'s renderer);
- the SARIF report in a file, for `github/codeql-action/upload-sarif`;
- the Markdown summary in ``$GITHUB_STEP_SUMMARY``: the check run's own renderer
  (`bot.checks.output.render_summary`), so the job page and the App's check run read alike;
- step outputs in ``$GITHUB_OUTPUT``: ``conclusion``, ``errors``, ``warnings``, ``notices``,
  ``sarif-file``.

Exit status as `release-guard scan`: 0, 1 when an error-level finding fails the job (unless
``--fail-on-findings false``), 2 for a usage, config or unreadable-input error, a pattern that
matches nothing, or an Actions file that cannot be written. Nothing is left unsaid on failure:
an error is an ``::error::`` line and a line of the step summary too.

The Actions files and variables are GitHub's "Workflow commands for GitHub Actions"
(docs.github.com/actions/reference/workflow-commands-for-github-actions): "Setting an output
parameter" (``{name}={value}`` lines appended to ``GITHUB_OUTPUT``, a delimiter for a value
over several lines) and "Adding a job summary" (Markdown appended to ``GITHUB_STEP_SUMMARY``,
"up to 1MiB" per step); the run's address and commit come from the default environment
variables (docs.github.com/actions/reference/variables-reference).
"""

from __future__ import annotations

import argparse
import glob
import os
import secrets
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final, TextIO

from bot.checks.output import SummaryContext, WorkflowRun, md_code, render_summary, title_for
from bot.cli.main import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, policy_from
from bot.engine.model import Report, Severity
from bot.engine.scan import scan_path
from bot.errors import ConfigError, InputError
from bot.report import render
from bot.report.github import escape_data
from bot.report.text import neutralize

STEP_SUMMARY_LIMIT: Final = 1024 * 1024
"""GitHub's limit on one step's summary: "up to 1MiB" ("Adding a job summary")."""
_GLOB_CHARS: Final = frozenset("*?[")
_TRUE: Final = frozenset({"true", "yes", "1", "on"})
_FALSE: Final = frozenset({"false", "no", "0", "off", ""})


class ActionError(InputError):
    """The action's own inputs or files are unusable; the message says which."""


def parse_flag(name: str, value: str) -> bool:
    """Read a boolean input the way a workflow author writes one (``true``, ``false``…)."""
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ActionError(f"input {name}: expected true or false, got {value!r}")


def expand_paths(text: str) -> list[Path]:
    """Return the paths the `paths` input names: one per line, each a path or a glob pattern.

    Blank lines are skipped. A pattern (``*``, ``?``, ``[…]``; ``**`` crosses folders) stands
    for the files and folders it matches, sorted; one that matches nothing is an error, as is
    an input with no paths at all: scanning nothing must not pass a release gate.
    """
    found: list[Path] = []
    for line in text.splitlines():
        entry = line.strip()
        if not entry:
            continue
        if _GLOB_CHARS & set(entry):
            matches = sorted(glob.glob(entry, recursive=True))
            if not matches:
                raise ActionError(
                    f"input paths: {entry!r} matches nothing in the working directory"
                )
            found.extend(Path(match) for match in matches)
        else:
            found.append(Path(entry))
    if not found:
        raise ActionError("input paths: no path to scan")
    return found


def summary_context(environ: Mapping[str, str]) -> SummaryContext:
    """The workflow run and commit of this job, from the runner's default variables."""
    server = environ.get("GITHUB_SERVER_URL", "").rstrip("/")
    repository = environ.get("GITHUB_REPOSITORY", "")
    run_id = environ.get("GITHUB_RUN_ID", "")
    url = f"{server}/{repository}/actions/runs/{run_id}" if server and repository else None
    name = environ.get("GITHUB_WORKFLOW")
    run = WorkflowRun(name=name, url=url if run_id.isdigit() else None) if name else None
    return SummaryContext(run=run, head_sha=environ.get("GITHUB_SHA") or None)


def step_summary(report: Report, environ: Mapping[str, str]) -> str:
    """The step summary: the check run's title as a heading, then its summary."""
    body = render_summary(report, context=summary_context(environ))
    return f"## release-guard: {title_for(report)}\n\n{body}\n"


def output_lines(name: str, value: str) -> str:
    """One output in `GITHUB_OUTPUT`'s syntax: ``name=value``, or a delimited block when the
    value spans lines (the delimiter is random, so no value can end the block early)."""
    if "\n" not in value and "\r" not in value:
        return f"{name}={value}\n"
    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    return f"{name}<<{delimiter}\n{value}\n{delimiter}\n"


def _append(variable: str, environ: Mapping[str, str], text: str) -> None:
    """Append `text` to the file an Actions variable names; an error when it is not set."""
    where = environ.get(variable)
    if not where:
        raise ActionError(f"{variable} is not set: run this as a GitHub Actions step")
    try:
        with open(where, "a", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        raise ActionError(f"{variable} ({where}): cannot write: {exc.strerror}") from exc


def _sarif_target(requested: str | None, environ: Mapping[str, str]) -> Path:
    if requested:
        return Path(requested)
    folder = environ.get("RUNNER_TEMP") or tempfile.gettempdir()
    descriptor, name = tempfile.mkstemp(prefix="release-guard-", suffix=".sarif", dir=folder)
    os.close(descriptor)
    return Path(name)


def run_action(args: argparse.Namespace, environ: Mapping[str, str], out: TextIO) -> int:
    """Scan, then write the annotations, the SARIF file, the summary and the outputs."""
    fail_on_findings = parse_flag("fail-on-findings", args.fail_on_findings)
    paths = expand_paths(args.paths)
    policy = policy_from(Path(args.config) if args.config else None)
    report = Report(artifacts=[scan_path(path, policy=policy) for path in paths])

    out.write(render(report, "github"))
    sarif = _sarif_target(args.sarif, environ)
    try:
        sarif.write_text(render(report, "sarif"), encoding="utf-8")
    except OSError as exc:
        raise ActionError(f"{sarif}: cannot write the SARIF report: {exc.strerror}") from exc
    summary = step_summary(report, environ)
    if len(summary.encode("utf-8")) > STEP_SUMMARY_LIMIT:  # render_summary keeps to 64 KiB
        raise ActionError("the step summary would exceed GitHub's 1 MiB")
    _append("GITHUB_STEP_SUMMARY", environ, summary)
    counts = report.summary
    outputs = {
        "conclusion": report.conclusion.value,
        "errors": str(counts[Severity.ERROR.value]),
        "warnings": str(counts[Severity.WARNING.value]),
        "notices": str(counts[Severity.NOTICE.value]),
        "sarif-file": str(sarif),
    }
    _append("GITHUB_OUTPUT", environ, "".join(output_lines(k, v) for k, v in outputs.items()))
    failed = counts[Severity.ERROR.value] > 0
    if failed and not fail_on_findings:
        out.write("release-guard: error-level findings, but fail-on-findings is false\n")
    return EXIT_FINDINGS if failed and fail_on_findings else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bot.cli.action",
        description="release-guard's GitHub Action step (action.yml): scan, annotate, "
        "summarise, write SARIF and the step outputs.",
    )
    parser.add_argument(
        "--paths", required=True, help="paths or glob patterns to scan, one per line"
    )
    parser.add_argument("--config", default="", help="repository config file (optional)")
    parser.add_argument("--sarif", default="", help="where to write the SARIF report")
    parser.add_argument(
        "--fail-on-findings", default="true", help="exit 1 on an error-level finding"
    )
    return parser


def _report_error(message: str, environ: Mapping[str, str], out: TextIO) -> None:
    """Say why nothing was scanned, in the log (an error annotation) and the step summary."""
    out.write(f"::error title=release-guard::{escape_data(neutralize(message))}\n")
    text = (
        "## release-guard: could not scan\n\n"
        f"**❌ Failing:** nothing was scanned. {_inert(message)}\n"
    )
    try:
        _append("GITHUB_STEP_SUMMARY", environ, text)
    except ActionError as exc:
        print(f"release-guard: {exc}", file=sys.stderr)


def _inert(text: str) -> str:
    """A message as a Markdown code span: no link, mention or HTML in it is rendered."""
    return md_code(text, limit=2_000)


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> int:
    environ = os.environ if environ is None else environ
    out = sys.stdout if out is None else out
    args = build_parser().parse_args(argv)
    try:
        return run_action(args, environ, out)
    except (ConfigError, InputError) as exc:
        _report_error(str(exc), environ, out)
        print(f"release-guard: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
