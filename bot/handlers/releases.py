"""Guard a release: scan its assets and hold back a published release that fails.

Runs the `release` jobs (`release` published, prereleased, or created as a draft;
https://docs.github.com/webhooks/webhook-events-and-payloads#release):

1. the release is read again (the job may run a while after the event) and its tag resolved
   to the commit it points to (`target_commitish` is often a branch that has moved on);
2. every asset is downloaded (`Accept: application/octet-stream`) and scanned, and so are the
   workflow-run artifacts of that commit when `release.scan_workflow_artifacts` asks for them;
3. a `release-guard` check run on that commit reports the verdict and what was done;
4. a published release that fails is dealt with as `release.on_failure` says
   (`release_blocking`): back to draft (the default), or, where that cannot be done (an
   immutable release, a refused edit), one issue in the repository; `issue`, `delete` (once
   the failing assets are retained) and `none` on request. A release whose assets could not
   be checked at all (`give_up`) is treated as failing: it fails closed.

This is the after-the-fact backstop: between publication and the verdict the assets are
public. The gate that holds is before publication (a draft published from a job in an
environment release-guard protects: `deployments.py`).
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from bot.checks import output
from bot.engine.model import Conclusion, Report, Severity
from bot.engine.policy import OnFailure
from bot.github import GitHubApp, GitHubClient, GitHubError
from bot.handlers.artifacts import (
    DEFAULT_MAX_DOWNLOAD,
    ArtifactInfo,
    AssetInfo,
    RunInfo,
    ScanOutcome,
    release_assets,
    run_artifacts,
    scan_artifacts,
    scan_assets,
    select,
    workflow_runs,
)
from bot.handlers.check_runs import ensure_check_run, progress_update, publish
from bot.handlers.release_blocking import Blocked, Blocker, Failing
from bot.handlers.release_info import (
    ReleaseInfo,
    get_release,
    release_commit,
    resolve_commitish,
    resolve_tag,
)
from bot.handlers.repo_config import RepoConfig, load_repo_config
from bot.handlers.reporting import (
    TRANSIENT,
    hint_files,
    retry_later,
    shown_runs,
    unscanned,
    verdict,
    with_lead,
)
from bot.handlers.retaining import Keeper, scan_progress
from bot.handlers.verdicts import VerdictCache
from bot.jobs import JobContext, RetryLater
from bot.retention import Retainer
from bot.store.base import Job, ScanLedger

log = logging.getLogger(__name__)

__all__ = ["ReleaseChecks", "ReleaseOptions", "resolve_commitish", "resolve_tag"]

_FINDINGS_IN_ISSUE: Final = 10


@dataclass(frozen=True, slots=True)
class ReleaseOptions:
    """How releases are checked (tests and settings set these)."""

    max_download: int = DEFAULT_MAX_DOWNLOAD
    workdir: Path | None = None
    upload_wait: float = 30.0
    """Seconds before looking again when an asset is still being uploaded."""
    tag_wait: float = 30.0
    """Seconds before looking again when a published release's tag cannot be found yet."""


@dataclass(slots=True)
class _Scanned:
    """Everything scanned for one release, and the notes on what was not."""

    report: Report
    skipped: tuple[output.SkippedArtifact, ...]
    runs: list[RunInfo] = field(default_factory=list)
    retained_id: str | None = None
    note: str | None = None
    """Said in the check run when keeping a failing asset did not succeed."""
    check_run_url: str | None = None
    retained_all: bool = False
    """Every artifact with an error-level finding was kept (what `on_failure: delete` needs)."""


class ReleaseChecks:
    """The `JobHandler` for `release` jobs."""

    def __init__(
        self,
        app: GitHubApp,
        options: ReleaseOptions | None = None,
        *,
        retainer: Retainer | None = None,
        ledger: ScanLedger | None = None,
    ) -> None:
        self._app = app
        self._options = options or ReleaseOptions()
        self._retainer = retainer
        self._ledger = ledger
        """Verdicts of earlier scans: bytes a gate or a check scanned are not downloaded
        again (`bot.handlers.verdicts`)."""

    # --- JobHandler ---------------------------------------------------------------------------

    async def run(self, job: Job, ctx: JobContext) -> str | None:
        try:
            gh = await self._app.installation(job.installation_id)
            return await self._guard(gh, job, ctx)
        except TRANSIENT as exc:
            raise retry_later(exc) from exc

    async def give_up(self, job: Job, ctx: JobContext, reason: str) -> None:
        """Complete the check run with the failure, and fail closed on the release.

        Assets that could not be checked are treated as assets that fail: a published release
        is held back as `release.on_failure` says (unless `none`), as a failing one is, so an
        outage never lets an unchecked release stay public unnoticed. When GitHub does not let
        the release be edited either, the check run says so and a maintainer decides.
        """
        try:
            gh = await self._app.installation(job.installation_id)
            release = await get_release(gh, job.repository, _release_id(job))
            check_run_id = ctx.check_run_id
            sha: str | None = None
            if check_run_id is None:
                sha = await release_commit(gh, job.repository, release) if release else None
                if sha is None or release is None:
                    await ctx.audit("reporting", f"no commit to report the failure on: {reason}")
                    return
                check_run_id = await self._check_run(gh, job, ctx, sha, release)
            lead = await self._block_unchecked(gh, job, ctx, release, sha, check_run_id)
            update = with_lead(
                output.could_not_finish(
                    reason=reason,
                    attempts=ctx.attempt,
                    context=output.SummaryContext(head_sha=sha, job_id=str(job.id)),
                ),
                lead,
            )
            await publish(gh, job.repository, check_run_id, update)
            await ctx.audit("reporting", "check run completed with the failure", reason=reason)
        except GitHubError as exc:
            await ctx.audit("reporting", f"could not report the failure to GitHub: {exc}")

    async def _block_unchecked(
        self,
        gh: GitHubClient,
        job: Job,
        ctx: JobContext,
        release: ReleaseInfo | None,
        sha: str | None,
        check_run_id: int,
    ) -> str:
        """Hold back an unchecked release as the config says; return the lead."""
        tag = output.md_code(str(job.details.get("tag_name")))
        if release is None:
            return f"Release {tag} has been deleted since: nothing is left to hold back."
        on_failure = OnFailure.DRAFT  # fail closed when the config cannot be read either
        try:
            if sha is None:
                sha = await release_commit(gh, job.repository, release)
            if sha is not None:
                config = await load_repo_config(gh, job.repository, sha)
                if config.error is None:
                    on_failure = config.policy.release.on_failure
            why = "its assets could not be checked"
            failing = Failing(
                why=why,
                findings=f"- {why}: release-guard could not finish scanning them.",
                check_run_url=await self._check_run_url(gh, job, check_run_id, None),
            )
            blocked = await self._block(gh, job, ctx, release, on_failure, failing)
        except GitHubError as exc:
            await ctx.audit(
                "blocking", f"the release could not be held back either: {exc}", action="failed"
            )
            return (
                f"Release {tag} was left as it is: release-guard could neither check its assets "
                f"nor act on the release ({output.md_escape(str(exc), limit=300)}). If it is "
                "published and must not stay public unchecked, edit it to a draft."
            )
        return blocked.lead

    # --- the guard ----------------------------------------------------------------------------

    async def _guard(self, gh: GitHubClient, job: Job, ctx: JobContext) -> str:
        repository = job.repository
        release = await get_release(gh, repository, _release_id(job))
        if release is None:
            await ctx.audit("resolving", "the release was deleted before it could be scanned")
            if ctx.check_run_id is not None:  # an earlier attempt had begun: finish its run
                await publish(gh, repository, ctx.check_run_id, _deleted(job))
            return "release deleted: nothing to scan"
        sha = await release_commit(gh, repository, release)
        if sha is None and not release.draft and not ctx.last_attempt:
            # GitHub creates the tag when it publishes; a moment later it may not be seen yet.
            raise RetryLater(
                f"the tag {release.tag_name!r} of the published release is not found yet",
                delay=self._options.tag_wait,
            )
        if sha is None:
            await ctx.audit(
                "resolving",
                f"tag {release.tag_name!r} and target {release.target_commitish!r} name no "
                "commit: no check run can be reported",
            )
            return "no commit to report on"
        await ctx.audit(
            "resolving",
            f"release {release.tag_name} ({release.state}) points at commit {sha}",
            release_id=release.id,
            tag=release.tag_name,
            commit=sha,
        )
        check_run_id = await self._check_run(gh, job, ctx, sha, release)
        config = await load_repo_config(gh, repository, sha)
        context = output.SummaryContext(head_sha=sha, job_id=str(job.id))
        if config.error is not None:
            # Fail closed: a config that cannot be read cannot say `on_failure: none`.
            why = "its release-guard configuration is invalid"
            failing = Failing(
                why=why,
                findings=f"- {output.md_escape(str(config.error), limit=500)}",
                check_run_url=await self._check_run_url(gh, job, check_run_id, None),
            )
            blocked = await self._block(gh, job, ctx, release, OnFailure.DRAFT, failing)
            await ctx.audit("reporting", f"invalid configuration: {config.error}")
            update = with_lead(output.invalid_config(config.error, context=context), blocked.lead)
            await publish(gh, repository, check_run_id, update)
            return f"failure: invalid configuration ({config.error.path})"

        assets = await release_assets(gh, repository, release.id)
        uploading = [a for a in assets if not a.uploaded]
        if uploading and not ctx.last_attempt:
            raise RetryLater(
                f"{len(uploading)} asset(s) still uploading: {uploading[0].name}",
                delay=self._options.upload_wait,
            )
        chosen, runs, found = await self._workflow_artifacts(gh, repository, sha, config)
        await ctx.audit(
            "downloading",
            f"{len(assets)} release asset(s) and {len(chosen)} workflow artifact(s) to scan",
            assets=[a.name for a in assets],
            artifacts=[a.name for a in chosen],
        )
        if not assets and not chosen:
            update = _no_assets(release, config, found)
            await ctx.audit("reporting", "the release has no assets: nothing to scan, left as is")
            await publish(gh, repository, check_run_id, update)
            return "neutral: the release has no assets"

        verdicts = VerdictCache(self._ledger, repository, config.policy) if self._ledger else None
        keeper = Keeper(
            self._retainer, job, commit=sha, rules=config.policy.retention, verdicts=verdicts
        )
        scanned = await self._scan(
            gh, job, ctx, check_run_id, release, config, assets, chosen, keeper
        )
        scanned.runs = runs
        return await self._report(gh, job, ctx, check_run_id, release, sha, config, scanned)

    async def _check_run(
        self,
        gh: GitHubClient,
        job: Job,
        ctx: JobContext,
        sha: str,
        release: ReleaseInfo | None,
    ) -> int:
        html_url = release.html_url if release else None
        tag = output.md_code(release.tag_name if release else str(job.details.get("tag_name")))
        return await ensure_check_run(
            gh,
            job.repository,
            sha,
            ctx,
            app_id=self._app.app_id,
            external_id=f"release-guard-job-{job.id}",
            take_over=False,
            details_url=html_url if html_url and html_url.startswith("https://") else None,
            queued=output.CheckOutput(
                title="Queued", summary=f"release-guard is about to scan the assets of {tag}."
            ),
        )

    async def _workflow_artifacts(
        self, gh: GitHubClient, repository: str, sha: str, config: RepoConfig
    ) -> tuple[list[ArtifactInfo], list[RunInfo], list[ArtifactInfo]]:
        """The tagged commit's workflow-run artifacts to scan, when the config asks for them."""
        if not config.policy.release.scan_workflow_artifacts:
            return [], [], []
        runs = [run for run in await workflow_runs(gh, repository, sha) if run.completed]
        found: list[ArtifactInfo] = []
        for run in runs:
            found.extend(await run_artifacts(gh, repository, run))
        return select(config.policy, found), runs, found

    async def _scan(
        self,
        gh: GitHubClient,
        job: Job,
        ctx: JobContext,
        check_run_id: int,
        release: ReleaseInfo,
        config: RepoConfig,
        assets: list[AssetInfo],
        chosen: list[ArtifactInfo],
        keeper: Keeper,
    ) -> _Scanned:
        repository = job.repository

        progress = scan_progress(gh, repository, check_run_id, ctx, keeper)

        label = f"release {release.tag_name}"
        ready = [a for a in assets if a.uploaded]
        with tempfile.TemporaryDirectory(
            prefix="release-guard-job-", dir=self._options.workdir
        ) as workdir:
            found = await scan_assets(
                gh,
                repository,
                ready,
                config.policy,
                workdir=Path(workdir),
                label=label,
                max_bytes=self._options.max_download,
                progress=progress,
                on_scanned=keeper.asset,
                memo=keeper.memo,
            )
            built = (
                await scan_artifacts(
                    gh,
                    chosen,
                    config.policy,
                    workdir=Path(workdir),
                    max_bytes=self._options.max_download,
                    progress=progress,
                    on_scanned=keeper.artifact,
                    memo=keeper.memo,
                )
                if chosen
                else ScanOutcome()
            )
        report = Report(
            artifacts=[
                *found.report.artifacts,
                *(
                    unscanned(a.name, f"{label}, asset {a.id}", a.size, "still being uploaded")
                    for a in assets
                    if not a.uploaded
                ),
                *(
                    unscanned(
                        a.name,
                        f"{label}, asset {a.id}",
                        a.size,
                        f"the asset is {a.size:,} bytes, more than release-guard downloads",
                    )
                    for a in found.too_large
                ),
                *built.report.artifacts,
                *(
                    unscanned(
                        a.name,
                        f"workflow run {a.run.id}, artifact {a.id}",
                        a.size,
                        f"the artifact is {a.size:,} bytes, more than release-guard downloads",
                    )
                    for a in built.too_large
                ),
            ]
        )
        skipped = tuple(
            [output.SkippedArtifact(a.name, "deleted from the release") for a in found.gone]
            + [output.SkippedArtifact(a.name, "expired (workflow artifact)") for a in built.expired]
        )
        failing_names = {
            a.name
            for a in report.artifacts
            if any(f.severity is Severity.ERROR for f in a.findings)
        }
        return _Scanned(
            report=report,
            skipped=skipped,
            retained_id=keeper.retained_id,
            note=keeper.note,
            check_run_url=keeper.check_run_url,
            retained_all=bool(failing_names) and failing_names <= keeper.kept_names,
        )

    async def _report(
        self,
        gh: GitHubClient,
        job: Job,
        ctx: JobContext,
        check_run_id: int,
        release: ReleaseInfo,
        sha: str,
        config: RepoConfig,
        scanned: _Scanned,
    ) -> str:
        repository = job.repository
        report = scanned.report
        if report.conclusion is Conclusion.FAILURE:
            errors = report.summary["error"]
            why = f"its assets have {errors} error-level finding{'s' if errors != 1 else ''}"
            failing = Failing(
                why=why,
                findings=_findings_markdown(report),
                retained_id=scanned.retained_id,
                fully_retained=scanned.retained_all,
                check_run_url=await self._check_run_url(
                    gh, job, check_run_id, scanned.check_run_url
                ),
            )
            blocked = await self._block(
                gh, job, ctx, release, config.policy.release.on_failure, failing
            )
        else:
            blocked = Blocked(
                f"Release {output.md_code(release.tag_name)} ({release.state}): nothing in its "
                "assets blocks it; release-guard left it as it is.",
                f"{release.shown_tag} ({release.state}): ",
            )
            await ctx.audit("blocking", "the release passes: left as it is", action="none")
        context = output.SummaryContext(
            head_sha=sha,
            job_id=str(job.id),
            retained_id=scanned.retained_id,
            skipped=scanned.skipped,
            run=shown_runs(scanned.runs)[0] if len(scanned.runs) == 1 else None,
        )
        files = await hint_files(gh, repository, sha, report)
        update = verdict(
            report,
            lead=blocked.lead + ("\n\n" + output.md_escape(scanned.note) if scanned.note else ""),
            title_prefix=blocked.title_prefix,
            files=files,
            config=config,
            context=context,
        )
        await ctx.audit(
            "reporting",
            f"{update.conclusion}: {update.output.title}",
            summary=report.summary,
            annotations=len(update.annotations),
            findings_by_rule=report.findings_by_rule(),
        )
        await publish(gh, repository, check_run_id, update)
        return f"{update.conclusion}: {update.output.title}"

    async def _block(
        self,
        gh: GitHubClient,
        job: Job,
        ctx: JobContext,
        release: ReleaseInfo,
        on_failure: OnFailure,
        failing: Failing,
    ) -> Blocked:
        """Do what the config says with a failing release (`release_blocking`)."""
        creator = f"{await self._app.slug()}[bot]"
        return await Blocker(gh, job, ctx, creator=creator).block(release, on_failure, failing)

    async def _check_run_url(
        self, gh: GitHubClient, job: Job, check_run_id: int, known: str | None
    ) -> str | None:
        """The check run's page, for the issue: known from the scan, else from an update."""
        if known:
            return known
        return await publish(
            gh, job.repository, check_run_id, progress_update("deciding what to do")
        )


def _release_id(job: Job) -> int:
    value = job.details.get("release_id")
    if not isinstance(value, int):
        raise ValueError(f"job {job.id} names no release")
    return value


def _deleted(job: Job) -> output.CheckRunUpdate:
    tag = output.md_code(str(job.details.get("tag_name")))
    return output.CheckRunUpdate(
        status="completed",
        conclusion="neutral",
        output=output.CheckOutput(
            title="Release deleted",
            summary=f"Release {tag} was deleted while release-guard was checking it: nothing "
            "of it is public any more, and nothing is left to scan.",
        ),
    )


def _findings_markdown(report: Report) -> str:
    """The first error findings as a Markdown list (the issue's "What was found")."""
    errors = [f for f in report.findings if f.severity is Severity.ERROR]
    lines = [
        f"- {output.md_code(f.rule.value)} in {output.md_code(f.path, limit=200)}: "
        f"{output.md_escape(f.message, limit=300)}"
        for f in errors[:_FINDINGS_IN_ISSUE]
    ]
    if len(errors) > _FINDINGS_IN_ISSUE:
        lines.append(f"- and {len(errors) - _FINDINGS_IN_ISSUE} more error-level findings")
    return "\n".join(lines) or "- no error-level finding was recorded"


def _no_assets(
    release: ReleaseInfo, config: RepoConfig, found: list[ArtifactInfo]
) -> output.CheckRunUpdate:
    tag = output.md_code(release.tag_name)
    lines = [
        f"Release {tag} ({release.state}) has no assets, so there is nothing for "
        "release-guard to scan; the release was left as it is.",
        "",
    ]
    if config.policy.release.scan_workflow_artifacts:
        lines.append(
            "`release.scan_workflow_artifacts` is on, but no workflow run of the tagged commit "
            "uploaded an artifact that release-guard scans"
            + (f" ({len(found)} uploaded under other names)." if found else ".")
        )
    else:
        lines.append(
            "Attach what you ship (the `npm pack` tarball, the built archives) to the release, "
            "or set `release.scan_workflow_artifacts: true` in "
            "`.github/release-guard.yml` to scan the tagged commit's workflow artifacts."
        )
    return output.CheckRunUpdate(
        status="completed",
        conclusion="neutral",
        output=output.CheckOutput(
            title=f"{release.shown_tag}: no assets to scan", summary="\n".join(lines)
        ),
    )
