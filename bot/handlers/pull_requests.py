"""Guard a commit: scan what its workflow runs built and report a `release-guard` check run.

Runs the `check` jobs (a pull request opened, synchronized or reopened; a check suite or check
run requested again) and the `workflow_run` jobs (a run completed). Both end the same way:
the commit's completed workflow runs are listed, their artifacts that the repository config
names are downloaded and scanned, and the check run is completed with the verdict. A `check`
job whose builds are still running leaves the check run queued with a plain message; the
`workflow_run` job of each run that completes scans again.

One check run per set of inputs. The inputs of a check are the commit's completed workflow
runs (id and attempt), the artifacts it scans (ids), the effective policy and the engine
version; what the commit's latest check run covers is kept in the App's database
(`ScanLedger`, under the commit lock every job of the commit holds). A job that finds nothing
new (the `pull_request.opened` and `workflow_run.completed` of a build that had finished
already) adds no check run, downloads nothing and audits "nothing new since check run N".
When something new arrives (another workflow finished, a re-run attempt, a rescan a person
asked for) a new check run covers every completed run's artifacts, those scanned before
reused from their kept verdicts (`bot.handlers.verdicts`). A new check run rather than the
old one updated: GitHub does not let a completed check run go back to in progress, and the
Checks API's own answer to a re-run is that the App decides ("Rerequest a check run",
https://docs.github.com/en/rest/checks/runs#rerequest-a-check-run: "The check run itself is
not updated"); the pull request shows the newest run of a name
(`filter=latest`, https://docs.github.com/en/rest/checks/runs#list-check-runs-for-a-git-reference).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from bot.checks import output
from bot.checks.hints import Hints
from bot.engine.model import Report
from bot.engine.policy import Policy
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
from bot.handlers.verdicts import VerdictCache, engine_version, policy_digest
from bot.jobs import JobContext, RetryLater
from bot.retention import Retainer
from bot.store.base import CheckCoverage, Job, ScanLedger, StoreError

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
    """The `JobHandler` for `check` and `workflow_run` jobs.

    Without a `ledger` nothing is remembered between jobs: every job reports on a check run
    and scans what it finds (tests of one job, and the CLI's demo, use that).
    """

    def __init__(
        self,
        app: GitHubApp,
        options: CheckOptions | None = None,
        *,
        retainer: Retainer | None = None,
        ledger: ScanLedger | None = None,
    ) -> None:
        self._app = app
        self._options = options or CheckOptions()
        self._retainer = retainer
        self._ledger = ledger

    # --- JobHandler ---------------------------------------------------------------------------

    async def run(self, job: Job, ctx: JobContext) -> str | None:
        return await self._run(job, ctx, rescan=_rerequested(job))

    async def rescan(self, job: Job, ctx: JobContext) -> str | None:
        """Check the commit again because a person asked: always a new scan on a check run of
        its own, every artifact downloaded and scanned again (`bot.handlers.comments`)."""
        return await self._run(job, ctx, rescan=True)

    async def _run(self, job: Job, ctx: JobContext, *, rescan: bool) -> str | None:
        head_sha = _head_sha(job)
        try:
            gh = await self._app.installation(job.installation_id)
            return await self._check(gh, job, ctx, head_sha, rescan=rescan)
        except (GitHubUnavailable, RateLimited, AuthenticationFailed) as exc:
            delay = exc.retry_after if isinstance(exc, RateLimited) else None
            raise RetryLater(f"GitHub: {exc}", delay=delay) from exc

    async def _check_run(self, gh: GitHubClient, job: Job, ctx: JobContext, head_sha: str) -> int:
        return await ensure_check_run(
            gh,
            job.repository,
            head_sha,
            ctx,
            app_id=self._app.app_id,
            external_id=f"release-guard-job-{job.id}",
        )

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
        self, gh: GitHubClient, job: Job, ctx: JobContext, head_sha: str, *, rescan: bool
    ) -> str:
        repository = job.repository
        context = output.SummaryContext(head_sha=head_sha, job_id=str(job.id))
        if rescan:
            # Asked by a person: a check run of its own at once, whatever happens next (any
            # other job decides only once it knows whether there is anything new).
            await self._check_run(gh, job, ctx, head_sha)
        config = await load_repo_config(gh, repository, head_sha)
        if config.error is not None:
            inputs = check_inputs(error=str(config.error))
            if (nothing := await self._nothing_new(job, ctx, head_sha, inputs, rescan)) is not None:
                return nothing
            check_run_id = await self._check_run(gh, job, ctx, head_sha)
            await ctx.audit("reporting", f"invalid configuration: {config.error}")
            await publish(
                gh, repository, check_run_id, output.invalid_config(config.error, context=context)
            )
            await self._covered(job, head_sha, check_run_id, inputs)
            return f"failure: invalid configuration ({config.error.path})"

        runs = await workflow_runs(gh, repository, head_sha)
        completed = [run for run in runs if run.completed]
        running = [run for run in runs if not run.completed]
        if job.kind is JobKind.CHECK and running and not completed:
            check_run_id = await self._check_run(gh, job, ctx, head_sha)
            await ctx.audit("queued", f"waiting for {len(running)} workflow run(s) to complete")
            await publish(
                gh, repository, check_run_id, output.waiting_for_builds(runs=shown_runs(running))
            )
            return "waiting for builds"

        found: list[ArtifactInfo] = []
        for run in completed:
            found.extend(await run_artifacts(gh, repository, run))
        chosen = select(config.policy, found)
        inputs = check_inputs(policy=config.policy, runs=completed, artifacts=chosen)
        if (nothing := await self._nothing_new(job, ctx, head_sha, inputs, rescan)) is not None:
            return nothing
        check_run_id = await self._check_run(gh, job, ctx, head_sha)
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
            await self._covered(job, head_sha, check_run_id, inputs)
            return "neutral: no artifact to scan"

        verdicts = (
            VerdictCache(self._ledger, repository, config.policy, refresh=rescan)
            if self._ledger is not None
            else None
        )
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
            verdicts=verdicts,
        )
        if outcome.reused:
            await ctx.audit(
                "scanning",
                f"{len(outcome.reused)} artifact(s) scanned before under the same policy and "
                "engine: their verdicts reused, nothing downloaded again",
                artifacts=[a.name for a in outcome.reused],
            )
        context = replace(context, retained_id=keeper.retained_id)
        result = await self._report(
            gh, job, ctx, check_run_id, config, outcome, completed, context, lead=keeper.note
        )
        await self._covered(job, head_sha, check_run_id, inputs)
        return result

    # --- one check run per set of inputs ------------------------------------------------------

    async def _nothing_new(
        self, job: Job, ctx: JobContext, head_sha: str, inputs: str, rescan: bool
    ) -> str | None:
        """The job's result when the commit's latest check run covers `inputs`, else None.

        A rescan always scans. A job that opened a check run of its own in an earlier
        attempt, other than the one that covers these inputs, completes it (from the kept
        verdicts) rather than leave it open. A store that cannot answer means "report".
        """
        if self._ledger is None or rescan:
            return None
        try:
            covered = await self._ledger.get_coverage(job.repository, head_sha)
        except StoreError as exc:
            log.warning("cannot read what the check runs cover (%s); checking anyway", exc)
            return None
        if covered is None or covered.inputs != inputs:
            return None
        if ctx.check_run_id not in (None, covered.check_run_id):
            return None
        await ctx.audit(
            "reporting",
            f"nothing new since check run {covered.check_run_id}: the same completed workflow "
            "runs and artifacts were scanned and reported (no check run added, nothing "
            "downloaded)",
            check_run_id=covered.check_run_id,
            reported_by_job=covered.job_id,
        )
        return f"nothing new since check run {covered.check_run_id}"

    async def _covered(self, job: Job, head_sha: str, check_run_id: int, inputs: str) -> None:
        """Record that `check_run_id`, now completed, covers `inputs` (never fails the job)."""
        if self._ledger is None:
            return
        try:
            await self._ledger.put_coverage(
                CheckCoverage(job.repository, head_sha, check_run_id, inputs, job.id, time.time())
            )
        except StoreError as exc:
            log.warning("cannot record what check run %d covers (%s)", check_run_id, exc)

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


def _rerequested(job: Job) -> bool:
    """Whether a person asked GitHub to run the check again ("Re-run" on the check run or the
    suite: `check_run`/`check_suite` `rerequested`): that is a rescan, never "nothing new"."""
    details = job.details
    return details.get("action") == "rerequested" and details.get("event") in (
        "check_run",
        "check_suite",
    )


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


def check_inputs(
    *,
    policy: Policy | None = None,
    runs: Sequence[RunInfo] = (),
    artifacts: Sequence[ArtifactInfo] = (),
    error: str | None = None,
) -> str:
    """A digest of what a check reports on: the completed runs (id and attempt), the artifacts
    it scans (ids), the policy (or the config's error) and the engine."""
    data = {
        "policy": policy_digest(policy) if policy is not None else None,
        "error": error,
        "engine": engine_version(),
        "runs": sorted([run.id, run.attempt] for run in runs),
        "artifacts": sorted(artifact.id for artifact in artifacts),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
