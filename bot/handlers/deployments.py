"""Gate a deployment: scan the waiting workflow run's artifacts, then approve or reject it.

A GitHub App can be a custom deployment protection rule of an environment
(https://docs.github.com/en/actions/managing-workflow-runs-and-deployments/managing-deployments/creating-custom-deployment-protection-rules).
When a job that deploys to that environment is about to start, GitHub sends
`deployment_protection_rule` `requested` with a `deployment_callback_url` and holds the job
until the App answers there with `approved` or `rejected`
(https://docs.github.com/en/rest/actions/workflow-runs#review-custom-deployment-protection-rules-for-a-workflow-run).

The artifacts scanned are the waiting run's own: those its earlier jobs uploaded (the build),
which is what the held job will publish. When the run was started by a tag (a tag push, a
release), the assets of that tag's draft release are scanned too: in the draft-first recipe the
held job publishes that draft, so a leaky asset in it rejects the deployment even when the
run's artifacts are clean. Drafts are found in `GET .../releases` only
(`release_info.draft_of_tag`); an asset still being uploaded is waited for, never passed.
The answer's comment says what was scanned.

The gate fails closed: nothing to scan, an expired or oversized artifact, an invalid config, or
a scan that cannot finish (GitHub down after the retries) all reject, with the reason in the
answer's comment.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from yarl import URL

from bot.checks import output
from bot.engine.model import ArtifactReport, Conclusion, Report, Severity
from bot.engine.policy import Policy
from bot.errors import ReleaseGuardError
from bot.github import GitHubApp, GitHubClient, GitHubError, ValidationFailed
from bot.handlers.artifacts import (
    DEFAULT_MAX_DOWNLOAD,
    AssetInfo,
    AssetOutcome,
    RunInfo,
    get_run,
    name_patterns,
    release_assets,
    run_artifacts,
    scan_assets,
    select,
)
from bot.handlers.check_runs import ensure_check_run, publish
from bot.handlers.release_info import ReleaseInfo, draft_of_tag, resolve_tag
from bot.handlers.repo_config import load_repo_config
from bot.handlers.reporting import (
    TRANSIENT,
    hint_files,
    retry_later,
    shown_runs,
    unscanned,
    verdict,
    with_lead,
)
from bot.handlers.retaining import Keeper, scan_and_keep, scan_progress
from bot.handlers.verdicts import VerdictCache
from bot.jobs import JobContext, RetryLater
from bot.retention import Retainer
from bot.store.base import Job, ScanLedger

log = logging.getLogger(__name__)

State = Literal["approved", "rejected"]

_CALLBACK_PATH: Final = re.compile(
    r"/repos/(?P<repository>[^/]+/[^/]+)/actions/runs/(?P<run_id>[0-9]{1,19})"
    r"/deployment_protection_rule"
)
MAX_GATE_COMMENT: Final = 1000
"""The answer's comment is shown on the run's page; the summary of findings is kept short and
the check run holds the rest."""
_FINDINGS_SHOWN: Final = 3
_TAG_EVENTS: Final = frozenset({"push", "release"})
"""Events whose run names a tag in `head_branch` when a tag started it."""


class UntrustedCallback(ReleaseGuardError):
    """The `deployment_callback_url` does not point at this repository on the configured API."""


@dataclass(frozen=True, slots=True)
class GateOptions:
    """How deployment gates scan (tests and settings set these)."""

    max_download: int = DEFAULT_MAX_DOWNLOAD
    workdir: Path | None = None
    upload_wait: float = 30.0
    """Seconds before looking again when a draft's asset is still being uploaded."""


@dataclass(frozen=True, slots=True)
class _Draft:
    """The tag that started the run, its draft release if any, and the draft's assets."""

    tag: str
    release: ReleaseInfo | None
    assets: list[AssetInfo]


@dataclass(frozen=True, slots=True)
class Callback:
    """Where to answer a gate: the callback URL, checked, and the run id it names."""

    url: str
    run_id: int


def parse_callback(url: str, *, api_url: str, repository: str) -> Callback:
    """Check that `url` is this repository's review endpoint on the configured API host.

    The App's token is sent to that URL, so it must be GitHub's own endpoint for the run of
    this repository, at the API base the App is configured with (GitHub Enterprise Server
    included); anything else raises `UntrustedCallback` and is never called.
    """
    target, base = URL(url), URL(api_url)
    if (
        target.scheme not in ("https", "http")
        or target.origin() != base.origin()
        or target.query_string
        or target.fragment
    ):
        raise UntrustedCallback(
            f"the deployment callback URL is not on the configured GitHub API host "
            f"({base.origin()}): not answered"
        )
    prefix = base.path.rstrip("/")
    path = target.path
    match = _CALLBACK_PATH.fullmatch(path[len(prefix) :]) if path.startswith(prefix) else None
    if match is None or match["repository"].lower() != repository.lower():
        raise UntrustedCallback(
            f"the deployment callback URL is not {repository}'s deployment protection rule "
            "endpoint: not answered"
        )
    return Callback(url=str(target), run_id=int(match["run_id"]))


async def answer(
    gh: GitHubClient, callback: Callback, *, environment: str, state: State, comment: str
) -> None:
    """Approve or reject the waiting deployment (the callback URL, checked beforehand)."""
    if len(comment) > MAX_GATE_COMMENT:
        comment = comment[: MAX_GATE_COMMENT - 1] + "…"
    await gh.post(
        callback.url,
        data={"environment_name": environment, "state": state, "comment": comment},
    )


@dataclass(frozen=True, slots=True)
class _Decision:
    """A gate's answer and the check run that explains it."""

    state: State
    comment: str
    update: output.CheckRunUpdate


class DeploymentGates:
    """The `JobHandler` for `deployment_gate` jobs."""

    def __init__(
        self,
        app: GitHubApp,
        options: GateOptions | None = None,
        *,
        retainer: Retainer | None = None,
        ledger: ScanLedger | None = None,
    ) -> None:
        self._app = app
        self._options = options or GateOptions()
        self._retainer = retainer
        self._ledger = ledger
        """Verdicts of earlier scans: a build the pull-request check scanned is not
        downloaded again (`bot.handlers.verdicts`)."""

    def _callback(self, job: Job) -> Callback:
        return parse_callback(
            str(job.details.get("callback_url")),
            api_url=self._app.api_url,
            repository=job.repository,
        )

    # --- JobHandler ---------------------------------------------------------------------------

    async def run(self, job: Job, ctx: JobContext) -> str | None:
        callback = self._callback(job)  # an untrusted URL fails the job: it is never called
        try:
            gh = await self._app.installation(job.installation_id)
            return await self._gate(gh, job, ctx, callback)
        except TRANSIENT as exc:
            raise retry_later(exc) from exc

    async def give_up(self, job: Job, ctx: JobContext, reason: str) -> None:
        """Fail closed: reject the deployment with the reason, then complete the check run."""
        try:
            callback = self._callback(job)
        except UntrustedCallback as exc:
            await ctx.audit("gate", f"not answered: {exc}")
            return
        environment = str(job.details.get("environment"))
        try:
            gh = await self._app.installation(job.installation_id)
            await answer(
                gh,
                callback,
                environment=environment,
                state="rejected",
                comment=(
                    f"release-guard could not finish scanning this run's artifacts ({reason}), "
                    "so the deployment is rejected: the gate fails closed. Re-run the workflow "
                    "once the cause is fixed."
                ),
            )
            await ctx.audit("gate", f"rejected: the scan could not finish ({reason})")
        except (GitHubError, ReleaseGuardError) as exc:
            await ctx.audit("gate", f"could not reject the deployment: {exc}")
        try:
            if ctx.check_run_id is None:
                return
            gh = await self._app.installation(job.installation_id)
            update = with_lead(
                output.could_not_finish(
                    reason=reason,
                    attempts=ctx.attempt,
                    context=output.SummaryContext(job_id=str(job.id)),
                ),
                f"**Deployment to {output.md_code(environment)} rejected**: the scan could "
                "not finish, and the gate fails closed.",
            )
            await publish(gh, job.repository, ctx.check_run_id, update)
        except GitHubError as exc:
            await ctx.audit("reporting", f"could not report the failure to GitHub: {exc}")

    # --- the gate -----------------------------------------------------------------------------

    async def _gate(self, gh: GitHubClient, job: Job, ctx: JobContext, callback: Callback) -> str:
        repository = job.repository
        environment = str(job.details.get("environment"))
        run = await get_run(gh, repository, callback.run_id)
        sha = run.head_sha or job.head_sha
        if sha is None:
            raise ValueError(f"workflow run {run.id} names no commit")
        await ctx.audit(
            "gate",
            f"deployment to {environment!r} waits on workflow run {run.id} ({run.name}) at {sha}",
            environment=environment,
            run_id=run.id,
        )
        check_run_id = await ensure_check_run(
            gh,
            repository,
            sha,
            ctx,
            app_id=self._app.app_id,
            external_id=f"release-guard-job-{job.id}",
            take_over=False,
            details_url=run.html_url if (run.html_url or "").startswith("https://") else None,
            queued=output.CheckOutput(
                title="Queued",
                summary=(
                    f"release-guard is about to scan the artifacts of workflow run "
                    f"{output.md_link(run.name, run.html_url)} before it deploys to "
                    f"{output.md_code(environment)}."
                ),
            ),
        )
        decision = await self._decide(gh, job, ctx, check_run_id, run, sha, environment)
        html_url = await publish(gh, repository, check_run_id, decision.update)
        comment = decision.comment + (f" Details: {html_url}" if html_url else "")
        try:
            await answer(
                gh, callback, environment=environment, state=decision.state, comment=comment
            )
        except ValidationFailed as exc:
            # The run no longer waits (answered before a crash, cancelled, timed out).
            await ctx.audit("gate", f"GitHub refused the answer {decision.state}: {exc}")
            return f"{decision.state}, but GitHub refused the answer: {exc.detail}"
        await ctx.audit(
            "gate",
            f"{decision.state} the deployment to {environment!r}: {decision.comment}",
            state=decision.state,
            environment=environment,
        )
        return f"{decision.state}: {decision.update.output.title}"

    async def _decide(
        self,
        gh: GitHubClient,
        job: Job,
        ctx: JobContext,
        check_run_id: int,
        run: RunInfo,
        sha: str,
        environment: str,
    ) -> _Decision:
        repository = job.repository
        env = output.md_code(environment)
        context = output.SummaryContext(head_sha=sha, job_id=str(job.id), run=shown_runs([run])[0])
        config = await load_repo_config(gh, repository, sha)
        if config.error is not None:
            why = f"the release-guard configuration is invalid ({config.error})"
            return _Decision(
                "rejected",
                f"Rejected: {why}.",
                with_lead(
                    output.invalid_config(config.error, context=context),
                    f"**Deployment to {env} rejected**: the configuration cannot be read.",
                ),
            )
        found = await run_artifacts(gh, repository, run)
        chosen = select(config.policy, found)
        draft = await self._draft(gh, job, ctx, run, sha)
        await ctx.audit(
            "downloading",
            f"{len(chosen)} of {len(found)} artifact(s) of run {run.id} to scan"
            + (f", and {len(draft.assets)} asset(s) of draft release {draft.tag}" if draft else ""),
            artifacts=[a.name for a in chosen],
            assets=[a.name for a in draft.assets] if draft else [],
        )
        if not chosen and not (draft and draft.assets):
            return _Decision(
                "rejected",
                "Rejected: this workflow run uploaded no artifact that release-guard scans, so "
                "there is nothing to approve. Upload the build with actions/upload-artifact in "
                "a job that runs before the deployment.",
                with_lead(
                    output.nothing_uploaded(
                        head_sha=sha,
                        patterns=name_patterns(config.policy),
                        runs=shown_runs([run]),
                        other_artifacts=sorted({a.name for a in found}),
                    ),
                    f"**Deployment to {env} rejected**: nothing to scan, and the gate fails "
                    "closed.",
                ),
            )

        outcome, keeper = await scan_and_keep(
            gh,
            job,
            ctx,
            check_run_id,
            chosen,
            config.policy,
            commit=sha,
            retainer=self._retainer,
            workdir=self._options.workdir,
            max_bytes=self._options.max_download,
            verdicts=(
                VerdictCache(self._ledger, repository, config.policy)
                if self._ledger is not None
                else None
            ),
        )
        assets, asset_keeper = await self._scan_draft(
            gh, job, ctx, check_run_id, draft, config.policy, sha
        )
        retained = " ".join(filter(None, (keeper.retained_id, asset_keeper.retained_id)))
        context = dataclasses.replace(context, retained_id=retained or None)
        scanned_note = _scanned_sentence(run, len(outcome.scanned), draft, len(assets.scanned))
        if (
            not outcome.scanned
            and outcome.expired
            and not outcome.too_large
            and not (draft and draft.assets)
        ):
            names = ", ".join(a.name for a in outcome.expired)
            return _Decision(
                "rejected",
                f"Rejected: the artifacts expired before they could be scanned ({names}); the "
                "gate fails closed. Re-run the workflow to build them again.",
                with_lead(
                    output.artifacts_expired(
                        names=[a.name for a in outcome.expired], runs=shown_runs([run])
                    ),
                    f"**Deployment to {env} rejected**: the artifacts expired before they "
                    "could be scanned, and the gate fails closed.",
                ),
            )
        report = Report(
            artifacts=[
                *outcome.report.artifacts,
                *assets.report.artifacts,
                *(
                    unscanned(
                        a.name,
                        f"workflow run {a.run.id}, artifact {a.id}",
                        a.size,
                        "the artifact expired before it could be downloaded",
                    )
                    for a in outcome.expired
                ),
                *(
                    unscanned(
                        a.name,
                        f"workflow run {a.run.id}, artifact {a.id}",
                        a.size,
                        f"the artifact is {a.size:,} bytes, more than release-guard downloads",
                    )
                    for a in outcome.too_large
                ),
                *_draft_unscanned(draft, assets),
            ]
        )
        approved = report.conclusion is Conclusion.SUCCESS
        state: State = "approved" if approved else "rejected"
        comment = _findings_comment(report, approved=approved) + " " + scanned_note
        draft_words = (
            f" nor in the assets of draft release {output.md_code(draft.tag)}"
            if draft and draft.assets
            else ""
        )
        if approved:
            lead = (
                f"**Deployment to {env} approved**: nothing in the build artifacts of "
                f"{output.md_link(run.name, run.html_url)}{draft_words} blocks it."
            )
        elif report.conclusion is Conclusion.NEUTRAL:
            lead = (
                f"**Deployment to {env} rejected**: the artifacts held nothing release-guard "
                "could read, and the gate fails closed."
            )
        else:
            lead = (
                f"**Deployment to {env} rejected**: {output.title_for(report)}. Fix what the "
                "findings below point at, push, and run the workflow again."
            )
        lead += "\n\n" + output.md_escape(scanned_note)
        for note in (keeper.note, asset_keeper.note):
            if note is not None:
                lead += "\n\n" + output.md_escape(note)
        files = await hint_files(gh, repository, sha, report)
        update = verdict(
            report,
            lead=lead,
            title_prefix=f"Deployment to {_short(environment)} {state}: ",
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
        return _Decision(state, comment, update)

    async def _draft(
        self, gh: GitHubClient, job: Job, ctx: JobContext, run: RunInfo, sha: str
    ) -> _Draft | None:
        """The draft release of the tag that started the run, with its assets; None if none.

        A run started by a tag push or a release names the tag in `head_branch`; it is taken
        for a tag only when `git/ref/tags/{name}` points at the run's commit. An asset still
        being uploaded (`state` not `uploaded`) is waited for: the job is retried later, and
        on its last attempt the asset is an unscanned error (never a pass).
        """
        tag = run.head_branch
        if run.event not in _TAG_EVENTS or not tag:
            return None
        if await resolve_tag(gh, job.repository, tag) != sha:
            return None
        release = await draft_of_tag(gh, job.repository, tag)
        if release is None:
            await ctx.audit("gate", f"run {run.id} was started by tag {tag}; it has no draft")
            return _Draft(tag, None, [])
        assets = await release_assets(gh, job.repository, release.id)
        uploading = [a for a in assets if not a.uploaded]
        if uploading and not ctx.last_attempt:
            raise RetryLater(
                f"{len(uploading)} asset(s) of draft release {tag} still uploading: "
                f"{uploading[0].name}",
                delay=self._options.upload_wait,
            )
        return _Draft(tag, release, assets)

    async def _scan_draft(
        self,
        gh: GitHubClient,
        job: Job,
        ctx: JobContext,
        check_run_id: int,
        draft: _Draft | None,
        policy: Policy,
        sha: str,
    ) -> tuple[AssetOutcome, Keeper]:
        """Scan the draft's uploaded assets, keeping the failing ones (those scanned before
        under the same policy are not downloaded again)."""
        verdicts = (
            VerdictCache(self._ledger, job.repository, policy) if self._ledger is not None else None
        )
        keeper = Keeper(self._retainer, job, commit=sha, rules=policy.retention, verdicts=verdicts)
        ready = [a for a in draft.assets if a.uploaded] if draft else []
        if draft is None or not ready:
            return AssetOutcome(), keeper
        progress = scan_progress(gh, job.repository, check_run_id, ctx, keeper)
        with tempfile.TemporaryDirectory(
            prefix="release-guard-job-", dir=self._options.workdir
        ) as folder:
            outcome = await scan_assets(
                gh,
                job.repository,
                ready,
                policy,
                workdir=Path(folder),
                label=f"draft release {draft.tag}",
                max_bytes=self._options.max_download,
                progress=progress,
                on_scanned=keeper.asset,
                memo=keeper.memo,
            )
        return outcome, keeper


def _draft_unscanned(draft: _Draft | None, outcome: AssetOutcome) -> list[ArtifactReport]:
    """The draft's assets that could not be scanned, as errors: the gate fails closed."""
    if draft is None:
        return []
    label = f"draft release {draft.tag}"
    return [
        *(
            unscanned(a.name, f"{label}, asset {a.id}", a.size, "still being uploaded")
            for a in draft.assets
            if not a.uploaded
        ),
        *(
            unscanned(
                a.name,
                f"{label}, asset {a.id}",
                a.size,
                f"the asset is {a.size:,} bytes, more than release-guard downloads",
            )
            for a in outcome.too_large
        ),
        *(
            unscanned(a.name, f"{label}, asset {a.id}", a.size, "deleted while it was scanned")
            for a in outcome.gone
        ),
    ]


def _scanned_sentence(
    run: RunInfo, artifacts: int, draft: _Draft | None, draft_scanned: int
) -> str:
    """What the gate scanned, for the answer's comment and the check run."""
    said = f"Scanned: {artifacts} artifact(s) of workflow run {run.id}"
    if draft is None:
        return said + "."
    if draft.release is None:
        # GitHub lists draft releases only to those who may push (`contents: write`), so an
        # empty answer is not proof there is none: say what was seen, not more.
        return said + (
            f"; tag {draft.tag} has no draft release the App can see"
            " (drafts are listed only with `contents: write`)."
        )
    return said + (
        f" and {draft_scanned} of the {len(draft.assets)} asset(s) of draft release {draft.tag}."
    )


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _findings_comment(report: Report, *, approved: bool) -> str:
    """One paragraph for the run's page: the verdict and the first error findings."""
    if approved:
        return f"Approved: {output.title_for(report)}."
    if report.conclusion is Conclusion.NEUTRAL:
        return (
            "Rejected: the artifacts held nothing release-guard could read; the gate fails closed."
        )
    errors = [f for f in report.findings if f.severity is Severity.ERROR]
    shown = "; ".join(
        f"{f.rule.value} at {output.md_code(f.path, limit=120)}" for f in errors[:_FINDINGS_SHOWN]
    )
    more = f" and {len(errors) - _FINDINGS_SHOWN} more" if len(errors) > _FINDINGS_SHOWN else ""
    return f"Rejected: {output.title_for(report)}: {shown}{more}."
