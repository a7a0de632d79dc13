"""Guard a release: scan its assets and move a published release that fails back to draft.

Runs the `release` jobs (`release` published, prereleased, or created as a draft;
https://docs.github.com/webhooks/webhook-events-and-payloads#release):

1. the release is read again (the job may run a while after the event) and its tag resolved
   to the commit it points to (`target_commitish` is often a branch that has moved on);
2. every asset is downloaded (`Accept: application/octet-stream`) and scanned, and so are the
   workflow-run artifacts of that commit when `release.scan_workflow_artifacts` asks for them;
3. a `release-guard` check run on that commit reports the verdict and what was done;
4. a published release that fails is edited back to a draft (`release.on_failure: draft`, the
   default; https://docs.github.com/en/rest/releases/releases#update-a-release), so it is no
   longer public while its assets stay as they were. The App never deletes a release or an
   asset; `on_failure: none` only reports. A release whose assets could not be checked at
   all (`give_up`) is treated as failing: it fails closed.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from bot.checks import output
from bot.engine.model import Conclusion, Report
from bot.engine.policy import OnFailure
from bot.github import (
    GitHubApp,
    GitHubClient,
    GitHubError,
    NotFound,
    PermissionMissing,
    ValidationFailed,
)
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
from bot.handlers.check_runs import ensure_check_run, publish
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
from bot.jobs import JobContext, RetryLater
from bot.retention import Retainer
from bot.store.base import Job

log = logging.getLogger(__name__)

_SHA: Final = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_MAX_TAG_DEPTH: Final = 4
"""Annotated tags may point at other tags; this many are followed before giving up."""
_TAG_SHOWN: Final = 60


@dataclass(frozen=True, slots=True)
class ReleaseOptions:
    """How releases are checked (tests and settings set these)."""

    max_download: int = DEFAULT_MAX_DOWNLOAD
    workdir: Path | None = None
    upload_wait: float = 30.0
    """Seconds before looking again when an asset is still being uploaded."""


@dataclass(frozen=True, slots=True)
class ReleaseInfo:
    """The fields of a release the App uses, as GitHub shows it now."""

    id: int
    tag_name: str
    target_commitish: str | None
    draft: bool
    prerelease: bool
    html_url: str | None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ReleaseInfo:
        return cls(
            id=int(data["id"]),
            tag_name=str(data["tag_name"]),
            target_commitish=data.get("target_commitish"),
            draft=bool(data.get("draft")),
            prerelease=bool(data.get("prerelease")),
            html_url=data.get("html_url"),
        )

    @property
    def state(self) -> str:
        if self.draft:
            return "draft"
        return "published prerelease" if self.prerelease else "published"

    @property
    def shown_tag(self) -> str:
        tag = self.tag_name
        return tag if len(tag) <= _TAG_SHOWN else tag[: _TAG_SHOWN - 1] + "…"


async def get_release(gh: GitHubClient, repository: str, release_id: int) -> ReleaseInfo | None:
    """https://docs.github.com/en/rest/releases/releases#get-a-release (None: deleted)."""
    try:
        return ReleaseInfo.from_api(await gh.getitem(f"/repos/{repository}/releases/{release_id}"))
    except NotFound:
        return None


async def resolve_tag(gh: GitHubClient, repository: str, tag: str) -> str | None:
    """Return the commit a tag points to, peeling annotated tags; None when there is no tag.

    https://docs.github.com/en/rest/git/refs#get-a-reference and
    https://docs.github.com/en/rest/git/tags#get-a-tag (an annotated tag is an object of its
    own whose `object` is the commit, or another tag).
    """
    try:
        ref = await gh.getitem(f"/repos/{repository}/git/ref/tags/{quote(tag, safe='/')}")
    except NotFound:
        return None
    target = ref.get("object") or {}
    for _ in range(_MAX_TAG_DEPTH):
        kind, sha = target.get("type"), str(target.get("sha") or "")
        if not _SHA.fullmatch(sha):
            return None
        if kind == "commit":
            return sha
        if kind != "tag":
            return None  # a tag on a tree or a blob: no commit to report on
        tag_object = await gh.getitem(f"/repos/{repository}/git/tags/{sha}")
        target = tag_object.get("object") or {}
    return None


async def resolve_commitish(gh: GitHubClient, repository: str, commitish: str) -> str | None:
    """Return the commit a draft's `target_commitish` names (a SHA or a branch), or None."""
    if _SHA.fullmatch(commitish):
        return commitish
    try:
        ref = await gh.getitem(f"/repos/{repository}/git/ref/heads/{quote(commitish, safe='/')}")
    except NotFound:
        return None
    sha = str((ref.get("object") or {}).get("sha") or "")
    return sha if _SHA.fullmatch(sha) else None


async def release_commit(gh: GitHubClient, repository: str, release: ReleaseInfo) -> str | None:
    """The commit to report on: the tag's, else (a draft's tag may not exist yet) the target's."""
    sha = await resolve_tag(gh, repository, release.tag_name)
    if sha is None and release.target_commitish:
        sha = await resolve_commitish(gh, repository, release.target_commitish)
    return sha


@dataclass(slots=True)
class _Scanned:
    """Everything scanned for one release, and the notes on what was not."""

    report: Report
    skipped: tuple[output.SkippedArtifact, ...]
    runs: list[RunInfo] = field(default_factory=list)
    retained_id: str | None = None
    note: str | None = None
    """Said in the check run when keeping a failing asset did not succeed."""


class ReleaseChecks:
    """The `JobHandler` for `release` jobs."""

    def __init__(
        self,
        app: GitHubApp,
        options: ReleaseOptions | None = None,
        *,
        retainer: Retainer | None = None,
    ) -> None:
        self._app = app
        self._options = options or ReleaseOptions()
        self._retainer = retainer

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
        goes back to draft (unless `release.on_failure: none`), as a failing one does, so an
        outage never lets an unchecked release stay public. When GitHub does not let the
        release be edited either, the check run says so and a maintainer decides.
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
            lead = await self._block_unchecked(gh, job, ctx, release, sha)
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
    ) -> str:
        """Move an unchecked release back to draft as the config says; return the lead."""
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
            blocked = await self._block(
                gh, job, ctx, release, on_failure, "its assets could not be checked"
            )
        except GitHubError as exc:
            await ctx.audit(
                "blocking", f"the release could not be held back either: {exc}", action="failed"
            )
            return (
                f"Release {tag} was left as it is: release-guard could neither check its assets "
                "nor edit it. If it is published and must not stay public unchecked, edit it "
                "to a draft."
            )
        return blocked.lead

    # --- the guard ----------------------------------------------------------------------------

    async def _guard(self, gh: GitHubClient, job: Job, ctx: JobContext) -> str:
        repository = job.repository
        release = await get_release(gh, repository, _release_id(job))
        if release is None:
            await ctx.audit("resolving", "the release was deleted before it could be scanned")
            return "release deleted: nothing to scan"
        sha = await release_commit(gh, repository, release)
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
            blocked = await self._block(
                gh, job, ctx, release, OnFailure.DRAFT, "its release-guard configuration is invalid"
            )
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

        keeper = Keeper(self._retainer, job, commit=sha, rules=config.policy.retention)
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
        return _Scanned(
            report=report, skipped=skipped, retained_id=keeper.retained_id, note=keeper.note
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
            blocked = await self._block(
                gh, job, ctx, release, config.policy.release.on_failure, why
            )
        else:
            blocked = _Blocked(
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
        why: str,
    ) -> _Blocked:
        """Do what the config says with a failing release, and say what was done."""
        tag = output.md_code(release.tag_name)
        live = await get_release(gh, job.repository, release.id)
        if live is None:
            await ctx.audit("blocking", f"the release fails ({why}) but was deleted meanwhile")
            return _Blocked(
                f"**Release {tag} fails** because {why}; it has been deleted since.",
                f"{release.shown_tag} (deleted): ",
            )
        if live.draft:
            await ctx.audit(
                "blocking", f"the release fails ({why}); it is a draft: left a draft", action="none"
            )
            return _Blocked(
                f"**Release {tag} fails** because {why}. It is a draft and stays one: fix what "
                "the findings below point at, replace the assets, and publish it once this "
                "check passes.",
                f"{live.shown_tag} (draft): ",
            )
        if on_failure is OnFailure.NONE:
            await ctx.audit(
                "blocking",
                f"the release fails ({why}); left {live.state}: release.on_failure is none",
                release_id=live.id,
                action="none",
            )
            return _Blocked(
                f"**Release {tag} fails** because {why}, and it is still {live.state}: "
                "`release.on_failure: none` asks release-guard only to report. Anyone can "
                "download these assets.",
                f"{live.shown_tag} ({live.state}): ",
            )
        try:
            # https://docs.github.com/en/rest/releases/releases#update-a-release
            await gh.patch(f"/repos/{job.repository}/releases/{live.id}", data={"draft": True})
        except (PermissionMissing, NotFound, ValidationFailed) as exc:
            await ctx.audit(
                "blocking",
                f"the release fails ({why}) but could not be moved back to draft: {exc}",
                release_id=live.id,
                action="failed",
            )
            return _Blocked(
                f"**Release {tag} fails** because {why}, and it is still {live.state}: "
                "release-guard could not move it back to draft "
                f"({output.md_escape(str(exc), limit=300)}). Grant the App `contents: write`, "
                "or edit the release to a draft yourself.",
                f"{live.shown_tag} ({live.state}): ",
            )
        await ctx.audit(
            "blocking",
            f"the release fails ({why}): moved back to draft (it was {live.state})",
            release_id=live.id,
            action="draft",
        )
        return _Blocked(
            f"**Release {tag} was moved back to draft** because {why}. It is no longer "
            "public; its assets were kept as they were (release-guard never deletes a release "
            "or an asset). Fix what the findings below point at, replace the assets, and "
            "publish it again: release-guard scans it again when it is published.",
            f"{live.shown_tag} moved back to draft: ",
        )


@dataclass(frozen=True, slots=True)
class _Blocked:
    """What was done with a release: the check run's lead paragraph and title prefix."""

    lead: str
    title_prefix: str


def _release_id(job: Job) -> int:
    value = job.details.get("release_id")
    if not isinstance(value, int):
        raise ValueError(f"job {job.id} names no release")
    return value


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
