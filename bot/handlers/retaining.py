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
from bot.jobs import JobContext
from bot.retention import RetainedRef, Retainer, RetentionMeta, retained_ids, retention_note
from bot.store.base import Job


class Keeper:
    """Retains what one job scanned; `retained_id` and `note` go into its check run."""

    def __init__(
        self,
        retainer: Retainer | None,
        job: Job,
        *,
        commit: str,
        rules: RetentionRules | None,
    ) -> None:
        self._retainer = retainer
        self._job = job
        self._commit = commit
        self._rules = rules
        self.check_run_url: str | None = None
        """Set by the handler once it knows the check run's page (for the metadata)."""
        self.refs: list[RetainedRef] = []

    async def artifact(self, artifact: ArtifactInfo, path: Path, report: ArtifactReport) -> None:
        """`scan_artifacts`' `on_scanned`: a workflow-run artifact."""
        await self._keep(
            path,
            report,
            workflow_run_id=artifact.run.id,
            artifact_id=artifact.id,
            artifact_name=artifact.name,
        )

    async def asset(self, asset: AssetInfo, path: Path, report: ArtifactReport) -> None:
        """`scan_assets`' `on_scanned`: a release asset."""
        await self._keep(path, report, artifact_id=asset.id, artifact_name=asset.name)

    async def _keep(
        self,
        path: Path,
        report: ArtifactReport,
        *,
        artifact_id: int,
        artifact_name: str,
        workflow_run_id: int | None = None,
    ) -> None:
        if self._retainer is None:
            return
        meta = RetentionMeta.for_job(
            self._job,
            commit=self._commit,
            workflow_run_id=workflow_run_id,
            artifact_id=artifact_id,
            artifact_name=artifact_name,
            check_run_url=self.check_run_url,
        )
        ref = await self._retainer.retain(
            path, artifact_report=report, meta=meta, rules=self._rules
        )
        if ref is not None:
            self.refs.append(ref)

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
        await ctx.audit("scanning" if message.startswith("scanning") else "downloading", message)
        url = await publish(gh, repository, check_run_id, progress_update(message))
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
) -> tuple[ScanOutcome, Keeper]:
    """Scan workflow-run artifacts in a private temporary folder inside `workdir`, keeping
    the failing ones and saying on the check run which one is being scanned."""
    keeper = Keeper(retainer, job, commit=commit, rules=policy.retention)
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
        )
    return outcome, keeper
