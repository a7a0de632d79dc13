"""Guard a commit: scan what its workflow runs built and report a `release-guard` check run.

Runs the `check` jobs (a pull request opened, synchronized or reopened; a check suite or check
run requested again) and the `workflow_run` jobs (a run completed). Both end the same way:
the commit's completed workflow runs are listed, their artifacts that the repository config
names are downloaded and scanned, and the check run is completed with the verdict. A `check`
job whose builds are still running leaves the check run queued with a plain message; the
`workflow_run` job of each run that completes scans again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from bot.checks import output
from bot.checks.hints import Hints
from bot.engine.model import Report
from bot.events import JobKind
from bot.github import (
    AuthenticationFailed,
    GitHubApp,
    GitHubClient,
    GitHubError,
    GitHubUnavailable,
    RateLimited,
)
from bot.handlers.artifacts import (
    DEFAULT_MAX_DOWNLOAD,
    ArtifactInfo,
    RunInfo,
    ScanOutcome,
    name_patterns,
    run_artifacts,
    select,
    workflow_runs,
)
from bot.handlers.check_runs import RESCAN_BUTTON, ensure_check_run, publish
from bot.handlers.repo_config import CONFIG_PATH, RepoConfig, load_repo_config
from bot.handlers.reporting import hint_files, shown_runs, unscanned, with_lead
from bot.handlers.retaining import scan_and_keep
from bot.jobs import JobContext, RetryLater
from bot.retention import Retainer
from bot.store.base import Job

log = logging.getLogger(__name__)

_HINT_FETCHES: Final = 4
"""Repository files fetched at once to point annotations at their cause."""
MAX_ANNOTATIONS: Final = 500
"""Annotations sent for one scan (most serious first): ten update requests. The summary and
the audit trail count every finding."""


@dataclass(frozen=True, slots=True)
class CheckOptions:
    """How the pull-request checks run (tests and settings set these)."""

    max_download: int = DEFAULT_MAX_DOWNLOAD
    workdir: Path | None = None
    """Where artifacts are downloaded (a private temporary folder inside it); None: the
    system's temporary folder."""


class PullRequestChecks:
    """The `JobHandler` for `check` and `workflow_run` jobs."""

    def __init__(
        self,
        app: GitHubApp,
        options: CheckOptions | None = None,
        *,
        retainer: Retainer | None = None,
    ) -> None:
        self._app = app
        self._options = options or CheckOptions()
        self._retainer = retainer

    # --- JobHandler ---------------------------------------------------------------------------

    async def run(self, job: Job, ctx: JobContext) -> str | None:
        head_sha = _head_sha(job)
        try:
            gh = await self._app.installation(job.installation_id)
            check_run_id = await ensure_check_run(
                gh,
                job.repository,
                head_sha,
                ctx,
                app_id=self._app.app_id,
                external_id=f"release-guard-job-{job.id}",
            )
            return await self._check(gh, job, ctx, head_sha, check_run_id)
        except (GitHubUnavailable, RateLimited, AuthenticationFailed) as exc:
            delay = exc.retry_after if isinstance(exc, RateLimited) else None
            raise RetryLater(f"GitHub: {exc}", delay=delay) from exc

    async def give_up(self, job: Job, ctx: JobContext, reason: str) -> None:
        """Complete the check run with an explicit failure: never leave it in progress."""
        head_sha = job.head_sha
        if head_sha is None:
            return
        try:
            gh = await self._app.installation(job.installation_id)
            check_run_id = await ensure_check_run(
                gh,
                job.repository,
                head_sha,
                ctx,
                app_id=self._app.app_id,
                external_id=f"release-guard-job-{job.id}",
            )
            update = output.could_not_finish(
                reason=reason,
                attempts=ctx.attempt,
                context=output.SummaryContext(head_sha=head_sha, job_id=str(job.id)),
            )
            await publish(gh, job.repository, check_run_id, update)
            await ctx.audit("reporting", "check run completed with the failure", reason=reason)
        except GitHubError as exc:
            # Nothing more can be done from here; the audit trail keeps both reasons.
            await ctx.audit("reporting", f"could not report the failure to GitHub: {exc}")

    # --- the check ----------------------------------------------------------------------------

    async def _check(
        self, gh: GitHubClient, job: Job, ctx: JobContext, head_sha: str, check_run_id: int
    ) -> str:
        repository = job.repository
        context = output.SummaryContext(head_sha=head_sha, job_id=str(job.id))
        config = await load_repo_config(gh, repository, head_sha)
        if config.error is not None:
            await ctx.audit("reporting", f"invalid configuration: {config.error}")
            await publish(
                gh, repository, check_run_id, output.invalid_config(config.error, context=context)
            )
            return f"failure: invalid configuration ({config.error.path})"

        runs = await workflow_runs(gh, repository, head_sha)
        completed = [run for run in runs if run.completed]
        running = [run for run in runs if not run.completed]
        if job.kind is JobKind.CHECK and running and not completed:
            await ctx.audit("queued", f"waiting for {len(running)} workflow run(s) to complete")
            await publish(
                gh, repository, check_run_id, output.waiting_for_builds(runs=shown_runs(running))
            )
            return "waiting for builds"

        found: list[ArtifactInfo] = []
        for run in completed:
            found.extend(await run_artifacts(gh, repository, run))
        chosen = select(config.policy, found)
        await ctx.audit(
            "downloading",
            f"{len(chosen)} of {len(found)} artifact(s) from {len(completed)} run(s) to scan",
            artifacts=[a.name for a in chosen],
        )
        if not chosen:
            update = output.nothing_uploaded(
                head_sha=head_sha,
                patterns=name_patterns(config.policy),
                runs=shown_runs(completed),
                other_artifacts=sorted({a.name for a in found}),
            )
            await publish(gh, repository, check_run_id, update)
            return "neutral: no artifact to scan"

        outcome, keeper = await scan_and_keep(
            gh,
            job,
            ctx,
            check_run_id,
            chosen,
            config.policy,
            commit=head_sha,
            retainer=self._retainer,
            workdir=self._options.workdir,
            max_bytes=self._options.max_download,
        )
        context = replace(context, retained_id=keeper.retained_id)
        return await self._report(
            gh, job, ctx, check_run_id, config, outcome, completed, context, lead=keeper.note
        )

    async def _report(
        self,
        gh: GitHubClient,
        job: Job,
        ctx: JobContext,
        check_run_id: int,
        config: RepoConfig,
        outcome: ScanOutcome,
        runs: list[RunInfo],
        context: output.SummaryContext,
        *,
        lead: str | None = None,
    ) -> str:
        repository = job.repository
        report = outcome.report
        if not outcome.scanned and outcome.expired and not outcome.too_large:
            update = output.artifacts_expired(
                names=[a.name for a in outcome.expired], runs=shown_runs(runs)
            )
            await ctx.audit("reporting", "every artifact had expired")
            await publish(gh, repository, check_run_id, update)
            return "neutral: artifacts expired"
        skipped = tuple(
            [
                output.SkippedArtifact(a.name, "expired before it could be downloaded")
                for a in outcome.expired
            ]
            + [
                output.SkippedArtifact(a.name, "larger than release-guard downloads (fails closed)")
                for a in outcome.too_large
            ]
        )
        context = output.SummaryContext(
            head_sha=context.head_sha,
            job_id=context.job_id,
            retained_id=context.retained_id,
            skipped=skipped,
            run=shown_runs(runs)[0] if len(runs) == 1 else None,
        )
        files = await hint_files(gh, repository, _head_sha(job), report)
        update = output.scan_result(
            _failing_if_too_large(report, outcome),
            locate=Hints(files),
            fallback_path=CONFIG_PATH if config.present else _fallback_path(files),
            context=context,
        )
        if len(update.annotations) > MAX_ANNOTATIONS:
            update = replace(update, annotations=update.annotations[:MAX_ANNOTATIONS])
        if lead is not None:
            update = with_lead(update, lead)
        await ctx.audit(
            "reporting",
            f"{update.conclusion}: {update.output.title}",
            summary=report.summary,
            annotations=len(update.annotations),
            findings_by_rule=report.findings_by_rule(),
        )
        await publish(gh, repository, check_run_id, update, actions=(RESCAN_BUTTON,))
        return f"{update.conclusion}: {update.output.title}"


def _head_sha(job: Job) -> str:
    if job.head_sha is None:
        raise ValueError(f"job {job.id} has no commit to check")
    return job.head_sha


def _fallback_path(files: dict[str, str]) -> str:
    """Where an annotation goes when no repository line explains its finding."""
    return "package.json" if "package.json" in files else CONFIG_PATH


def _failing_if_too_large(report: Report, outcome: ScanOutcome) -> Report:
    """An artifact too large to download fails the check: nothing unscanned passes."""
    if not outcome.too_large:
        return report
    extra = [
        unscanned(
            a.name,
            f"workflow run {a.run.id}, artifact {a.id}",
            a.size,
            f"the artifact is {a.size:,} bytes, more than release-guard downloads",
        )
        for a in outcome.too_large
    ]
    return Report(artifacts=[*report.artifacts, *extra])
