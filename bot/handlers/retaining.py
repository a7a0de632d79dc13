"""Keep the artifacts a job scanned and found failing, through the App's `Retainer`.

One `Keeper` per job run: the handlers hand its callbacks to `scan_artifacts` and
`scan_assets`, which call them with each downloaded file and its report before the file is
deleted; the Retainer decides from the policy whether to keep it (by default: an error-level
finding). Retention never costs the scan's result: `Retainer.retain` does not raise, and a
retention that failed is said in the check run (`note`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bot.engine.model import ArtifactReport
from bot.engine.policy import Policy, RetentionRules
from bot.github import GitHubClient
from bot.handlers.artifacts import ArtifactInfo, AssetInfo, Progress, ScanOutcome, scan_artifacts
from bot.handlers.check_runs import progress_update, publish
from bot.handlers.verdicts import VerdictCache
from bot.jobs import JobContext
from bot.retention import (
    MISSING,
    RetainedRef,
    Retainer,
    RetentionMeta,
    retained_ids,
    retention_note,
)
from bot.store.base import Job


class Keeper:
    """Retains what one job scanned; `retained_id` and `note` go into its check run.

    With a `VerdictCache` it is also the scans' `Memo`: an artifact scanned before (same
    bytes, policy and engine) is not downloaded again, and a failing one is retained for this
    commit from the copy already kept, which must still be there; when it is not, the
    artifact is downloaded and scanned again.
    """

    def __init__(
        self,
        retainer: Retainer | None,
        job: Job,
        *,
        commit: str,
        rules: RetentionRules | None,
        verdicts: VerdictCache | None = None,
    ) -> None:
        self._retainer = retainer
        self._job = job
        self._commit = commit
        self._rules = rules
        self._verdicts = verdicts
        self._kept: dict[tuple[str, int], str] = {}
        self.check_run_url: str | None = None
        """Set by the handler once it knows the check run's page (for the metadata)."""
        self.refs: list[RetainedRef] = []

    @property
    def memo(self) -> Keeper | None:
        """This keeper as the scans' `Memo`, or None without a verdict cache."""
        return self if self._verdicts is not None else None

    async def artifact(self, artifact: ArtifactInfo, path: Path, report: ArtifactReport) -> None:
        """`scan_artifacts`' `on_scanned`: a workflow-run artifact."""
        await self._keep(path, report, artifact)

    async def asset(self, asset: AssetInfo, path: Path, report: ArtifactReport) -> None:
        """`scan_assets`' `on_scanned`: a release asset."""
        await self._keep(path, report, asset)

    def _meta(self, item: ArtifactInfo | AssetInfo) -> RetentionMeta:
        return RetentionMeta.for_job(
            self._job,
            commit=self._commit,
            workflow_run_id=item.run.id if isinstance(item, ArtifactInfo) else None,
            artifact_id=item.id,
            artifact_name=item.name,
            check_run_url=self.check_run_url,
        )

    async def _keep(
        self, path: Path, report: ArtifactReport, item: ArtifactInfo | AssetInfo
    ) -> None:
        if self._retainer is None:
            return
        ref = await self._retainer.retain(
            path, artifact_report=report, meta=self._meta(item), rules=self._rules
        )
        if ref is not None:
            self.refs.append(ref)
            if ref.kept:
                self._kept[(item.subject.kind, item.id)] = ref.id

    # --- Memo ---------------------------------------------------------------------------------

    async def recall(self, item: ArtifactInfo | AssetInfo) -> ArtifactReport | None:
        if self._verdicts is None:
            return None
        recalled = await self._verdicts.recall(item.subject, item.name)
        if recalled is None:
            return None
        if self._retainer is not None:
            ref = await self._retainer.retain_stored(
                artifact_report=recalled.report, meta=self._meta(item), rules=self._rules
            )
            if ref is MISSING:
                return None  # the failing verdict's copy is gone: download and keep it again
            if isinstance(ref, RetainedRef):
                self.refs.append(ref)
        return recalled.report

    async def remember(self, item: ArtifactInfo | AssetInfo, report: ArtifactReport) -> None:
        if self._verdicts is not None:
            kept = self._kept.get((item.subject.kind, item.id))
            await self._verdicts.remember(item.subject, item.name, report, kept)

    @property
    def retained_id(self) -> str | None:
        """The ids to name in the check run's summary (`release-guard retained show`)."""
        return retained_ids(self.refs)

    @property
    def kept_names(self) -> set[str]:
        """The artifacts and assets stored and verified (what `on_failure: delete` needs)."""
        return {ref.artifact_name for ref in self.refs if ref.kept}

    @property
    def note(self) -> str | None:
        """A sentence for the check run when a retention failed, else None."""
        return retention_note(self.refs)


def scan_progress(
    gh: GitHubClient, repository: str, check_run_id: int, ctx: JobContext, keeper: Keeper
) -> Progress:
    """The `progress` callback of a scan: an audit event and the check run say which artifact
    is being downloaded or scanned; the check run's page is noted for the retained metadata."""

    async def progress(message: str) -> None:
        scanning = message.startswith("scanning")
        await ctx.audit("scanning" if scanning else "downloading", message)
        if scanning:
            return  # the check run said so already: one update per artifact, not two
        shown = message.replace("downloading", "downloading and scanning", 1)
        url = await publish(gh, repository, check_run_id, progress_update(shown))
        keeper.check_run_url = url or keeper.check_run_url

    return progress


async def scan_and_keep(
    gh: GitHubClient,
    job: Job,
    ctx: JobContext,
    check_run_id: int,
    artifacts: list[ArtifactInfo],
    policy: Policy,
    *,
    commit: str,
    retainer: Retainer | None,
    workdir: Path | None,
    max_bytes: int,
    verdicts: VerdictCache | None = None,
) -> tuple[ScanOutcome, Keeper]:
    """Scan workflow-run artifacts in a private temporary folder inside `workdir`, keeping
    the failing ones and saying on the check run which one is being scanned; with
    `verdicts`, those scanned before are not downloaded again."""
    keeper = Keeper(retainer, job, commit=commit, rules=policy.retention, verdicts=verdicts)
    progress = scan_progress(gh, job.repository, check_run_id, ctx, keeper)
    with tempfile.TemporaryDirectory(prefix="release-guard-job-", dir=workdir) as folder:
        outcome = await scan_artifacts(
            gh,
            artifacts,
            policy,
            workdir=Path(folder),
            max_bytes=max_bytes,
            progress=progress,
            on_scanned=keeper.artifact,
            memo=keeper.memo,
        )
    return outcome, keeper
