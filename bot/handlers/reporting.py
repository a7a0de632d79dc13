"""What the release, deployment-gate and rescan handlers share: verdicts and outages.

- A verdict is the scan's check-run update (`bot.checks.output`) with a lead paragraph on top
  that says what the App did about it (a release moved back to draft, a deployment rejected).
- Whatever could not be scanned becomes an error finding, so it fails closed.
- A GitHub outage becomes `RetryLater`, so the worker retries the job with backoff and, once
  the attempts are spent, calls the handler's `give_up`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from typing import Any, Final

from bot.checks import output
from bot.checks.hints import CANDIDATE_PATHS, Hints
from bot.engine.model import ArtifactReport, Finding, Report, Rule, Severity
from bot.errors import ConfigError
from bot.github import (
    AuthenticationFailed,
    GitHubClient,
    GitHubUnavailable,
    NotFound,
    PermissionMissing,
    RateLimited,
)
from bot.handlers.artifacts import RunInfo
from bot.handlers.repo_config import CONFIG_PATH, RepoConfig, read_text_file
from bot.jobs import RetryLater

TRANSIENT: Final = (GitHubUnavailable, RateLimited, AuthenticationFailed)
"""Failures that may pass: the job is retried rather than concluded."""

_HINT_FETCHES: Final = 4
_LEAD_SEPARATOR: Final = "\n\n---\n\n"


def retry_later(exc: GitHubUnavailable | RateLimited | AuthenticationFailed) -> RetryLater:
    """The `RetryLater` for a GitHub outage (a rate limit says how long to wait)."""
    delay = exc.retry_after if isinstance(exc, RateLimited) else None
    return RetryLater(f"GitHub: {exc}", delay=delay)


async def root_names(gh: GitHubClient, repository: str, head_sha: str) -> set[str] | None:
    """The names at the root of the commit's tree, in one request; None when not known.

    https://docs.github.com/en/rest/git/trees#get-a-tree (not recursive: the root only).
    """
    try:
        data: Any = await gh.getitem(f"/repos/{repository}/git/trees/{head_sha}")
    except (NotFound, PermissionMissing):
        return None
    if (
        not isinstance(data, dict)
        or data.get("truncated")
        or not isinstance(data.get("tree"), list)
    ):
        return None
    return {
        entry["path"]
        for entry in data["tree"]
        if isinstance(entry, dict) and isinstance(entry.get("path"), str)
    }


async def hint_files(
    gh: GitHubClient, repository: str, head_sha: str, report: Report
) -> dict[str, str]:
    """Fetch the repository files that can explain a finding (only when there is one).

    The commit's root is listed first, so only the candidates that exist are fetched: a
    failing scan costs a request or a few, not one per candidate, out of the installation's
    hourly budget. Without the listing, every candidate is asked for.
    """
    if not report.findings:
        return {}
    names = await root_names(gh, repository, head_sha)
    candidates = [
        path for path in CANDIDATE_PATHS if names is None or path.split("/", 1)[0] in names
    ]
    limit = asyncio.Semaphore(_HINT_FETCHES)

    async def fetch(path: str) -> tuple[str, str | None]:
        async with limit:
            try:
                return path, await read_text_file(gh, repository, path, head_sha)
            except (ConfigError, PermissionMissing):
                return path, None

    fetched = await asyncio.gather(*(fetch(path) for path in candidates))
    return {path: text for path, text in fetched if text is not None}


def unscanned(name: str, path: str, size: int, why: str) -> ArtifactReport:
    """An artifact or asset that could not be scanned, as an error: nothing unscanned passes."""
    return ArtifactReport(
        name=name,
        path=path,
        sha256=None,
        size=size,
        files=0,
        findings=[
            Finding(
                rule=Rule.ARCHIVE_LIMIT,
                severity=Severity.ERROR,
                path=name,
                message=f"{why}; it was not scanned, so the scan fails closed.",
            )
        ],
    )


def shown_runs(runs: Sequence[RunInfo]) -> list[output.WorkflowRun]:
    """Workflow runs as the check run's summary lists them."""
    return [
        output.WorkflowRun(name=r.name, url=r.html_url, status=r.conclusion or r.status)
        for r in runs
    ]


def verdict(
    report: Report,
    *,
    lead: str,
    title_prefix: str,
    files: dict[str, str],
    config: RepoConfig,
    context: output.SummaryContext,
) -> output.CheckRunUpdate:
    """The completed check run for `report`, with `lead` (Markdown) above the usual summary.

    `lead` is written by the handler from trusted words only (untrusted names go through
    `md_code`/`md_escape`); the summary below it keeps the budget GitHub allows.
    """
    lead_bytes = len((lead + _LEAD_SEPARATOR).encode("utf-8"))
    summary = (
        lead
        + _LEAD_SEPARATOR
        + output.render_summary(
            report, context=context, limit=output.MAX_SUMMARY_CHARS - lead_bytes
        )
    )
    title = f"{title_prefix}{output.title_for(report)}"
    if len(title) > output.MAX_TITLE_CHARS:
        title = title[: output.MAX_TITLE_CHARS - 1] + "…"
    fallback = CONFIG_PATH if config.present or "package.json" not in files else "package.json"
    return output.CheckRunUpdate(
        status="completed",
        conclusion=output.conclusion_for(report),
        output=output.CheckOutput(title=title, summary=summary),
        annotations=tuple(
            output.annotations_for(report, locate=Hints(files), fallback_path=fallback)
        ),
    )


def with_lead(update: output.CheckRunUpdate, lead: str) -> output.CheckRunUpdate:
    """`update` (a short, fixed outcome such as `invalid_config`) with `lead` above its summary."""
    return dataclasses.replace(
        update,
        output=output.CheckOutput(
            title=update.output.title,
            summary=lead + _LEAD_SEPARATOR + update.output.summary,
            text=update.output.text,
        ),
    )
