"""Find a commit's build artifacts on GitHub, download them, and scan them with the engine.

Fetch once, fan out: each artifact is downloaded once into a private temporary folder and
every rule runs over one walk of it (`bot.engine.scan.scan_path`, in a thread: the engine is
CPU-bound and knows nothing of GitHub).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import partial
from pathlib import Path
from typing import Any, Final, Protocol

from bot.engine.model import ArtifactReport, Report
from bot.engine.policy import GIB, Policy
from bot.engine.scan import scan_path
from bot.github import ArtifactGone, DownloadTooLarge, GitHubClient
from bot.handlers.verdicts import Subject

DEFAULT_MAX_DOWNLOAD: Final = 4 * GIB
"""Largest artifact zip downloaded; a larger one is an explicit result, never a silent pass."""

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

Progress = Callable[[str], Awaitable[None]]


class Memo(Protocol):
    """Verdicts of earlier scans (`bot.handlers.retaining.Keeper` with a `VerdictCache`)."""

    async def recall(self, item: ArtifactInfo | AssetInfo) -> ArtifactReport | None:
        """The verdict of an earlier scan of the same bytes under the same policy and engine,
        to use instead of downloading `item` (its retained copy checked), or None."""

    async def remember(self, item: ArtifactInfo | AssetInfo, report: ArtifactReport) -> None:
        """Keep the verdict of `item`, just scanned, for the next jobs."""


OnScanned = Callable[["ArtifactInfo", Path, ArtifactReport], Awaitable[None]]
OnScannedAsset = Callable[["AssetInfo", Path, ArtifactReport], Awaitable[None]]
"""Called with each scanned artifact, its downloaded file and its report, before the file is
deleted (retention keeps a failing artifact from there, see `bot.retention.Retainer`)."""


@dataclass(frozen=True, slots=True)
class RunInfo:
    """The fields of a workflow run the App uses."""

    id: int
    name: str
    status: str
    conclusion: str | None
    html_url: str | None
    head_sha: str | None = None
    event: str | None = None
    """What started the run (`push`, `release`, `workflow_dispatch`...)."""
    head_branch: str | None = None
    """The branch, or for a run started by a tag (a tag push, a release) the tag's name."""
    attempt: int = 1
    """`run_attempt`: a re-run keeps the run's id and counts up from 1."""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> RunInfo:
        event, head_branch = data.get("event"), data.get("head_branch")
        attempt = data.get("run_attempt")
        return cls(
            id=int(data["id"]),
            name=str(data.get("name") or data.get("display_title") or f"run {data['id']}"),
            status=str(data.get("status") or "unknown"),
            conclusion=data.get("conclusion"),
            html_url=data.get("html_url"),
            head_sha=data.get("head_sha"),
            event=event if isinstance(event, str) else None,
            head_branch=head_branch if isinstance(head_branch, str) else None,
            attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 1,
        )

    @property
    def completed(self) -> bool:
        return self.status == "completed"


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """The fields of an Actions artifact the App uses."""

    id: int
    name: str
    size: int
    expired: bool
    download_url: str
    run: RunInfo
    digest: str | None = None
    """`sha256:<hex>` of the zip, for artifacts uploaded with upload-artifact v4 or newer."""

    @classmethod
    def from_api(cls, data: dict[str, Any], run: RunInfo) -> ArtifactInfo:
        digest = data.get("digest")
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            size=int(data.get("size_in_bytes") or 0),
            expired=bool(data.get("expired")),
            download_url=str(data["archive_download_url"]),
            run=run,
            digest=digest if isinstance(digest, str) else None,
        )

    @property
    def subject(self) -> Subject:
        return Subject("artifact", self.id, self.size, self.digest)


@dataclass(slots=True)
class ScanOutcome:
    """What scanning a set of artifacts gave: the report, and what could not be scanned."""

    report: Report = field(default_factory=Report)
    expired: list[ArtifactInfo] = field(default_factory=list)
    too_large: list[ArtifactInfo] = field(default_factory=list)
    scanned: list[ArtifactInfo] = field(default_factory=list)
    reused: list[ArtifactInfo] = field(default_factory=list)
    """Those of `scanned` whose verdict was an earlier scan's: not downloaded again."""


async def workflow_runs(gh: GitHubClient, repository: str, head_sha: str) -> list[RunInfo]:
    """Return the workflow runs for a commit, newest first.

    https://docs.github.com/en/rest/actions/workflow-runs#list-workflow-runs-for-a-repository
    """
    runs = [
        RunInfo.from_api(item)
        async for item in gh.getiter(
            f"/repos/{repository}/actions/runs{{?head_sha,per_page}}",
            url_vars={"head_sha": head_sha, "per_page": "100"},
            iterable_key="workflow_runs",
        )
    ]
    return runs


async def get_run(gh: GitHubClient, repository: str, run_id: int) -> RunInfo:
    """https://docs.github.com/en/rest/actions/workflow-runs#get-a-workflow-run"""
    data = await gh.getitem(f"/repos/{repository}/actions/runs/{run_id}")
    return RunInfo.from_api(data)


async def run_artifacts(gh: GitHubClient, repository: str, run: RunInfo) -> list[ArtifactInfo]:
    """https://docs.github.com/en/rest/actions/artifacts#list-workflow-run-artifacts"""
    return [
        ArtifactInfo.from_api(item, run)
        async for item in gh.getiter(
            f"/repos/{repository}/actions/runs/{run.id}/artifacts{{?per_page}}",
            url_vars={"per_page": "100"},
            iterable_key="artifacts",
        )
    ]


def name_patterns(policy: Policy) -> tuple[str, ...]:
    """The artifact name patterns the config declares (empty: every artifact is scanned)."""
    return tuple(rules.name for rules in policy.artifacts)


def select(policy: Policy, artifacts: Sequence[ArtifactInfo]) -> list[ArtifactInfo]:
    """Keep the artifacts the config asks for: all of them when it names no pattern.

    When two runs uploaded an artifact of the same name (a re-run), the newest is kept.
    """
    patterns = name_patterns(policy)
    chosen: dict[str, ArtifactInfo] = {}
    for artifact in artifacts:
        if patterns and not any(fnmatchcase(artifact.name, p) for p in patterns):
            continue
        kept = chosen.get(artifact.name)
        if kept is None or artifact.id > kept.id:
            chosen[artifact.name] = artifact
    return sorted(chosen.values(), key=lambda a: (a.name, a.id))


async def scan_artifacts(
    gh: GitHubClient,
    artifacts: Sequence[ArtifactInfo],
    policy: Policy,
    *,
    workdir: Path,
    max_bytes: int = DEFAULT_MAX_DOWNLOAD,
    progress: Progress | None = None,
    on_scanned: OnScanned | None = None,
    memo: Memo | None = None,
) -> ScanOutcome:
    """Download each artifact into `workdir`, scan it, delete it; return the outcome.

    Artifacts are handled one at a time, so the disk holds at most one download.
    `on_scanned`, when given, sees each scanned artifact's file and report before the file
    is deleted. With a `memo`, an artifact whose verdict it recalls is not downloaded (an
    expired one included: its bytes were scanned while they could be), and each new
    verdict is given to it.
    """
    outcome = ScanOutcome()
    for index, artifact in enumerate(artifacts, start=1):
        recalled = await _recall(memo, artifact, f"workflow run {artifact.run.id}, artifact")
        if recalled is not None:
            outcome.report.artifacts.append(recalled)
            outcome.scanned.append(artifact)
            outcome.reused.append(artifact)
            continue
        if artifact.expired:
            outcome.expired.append(artifact)
            continue
        try:
            report = await _download_and_scan(
                gh,
                artifact.download_url,
                workdir / f"{artifact.id}-{_SAFE_NAME.sub('_', artifact.name)[:80]}.zip",
                name=artifact.name,
                shown=f"{artifact.name} ({index} of {len(artifacts)})",
                report_path=f"workflow run {artifact.run.id}, artifact {artifact.id}",
                policy=policy,
                max_bytes=max_bytes,
                progress=progress,
                keep=partial(on_scanned, artifact) if on_scanned is not None else None,
            )
        except ArtifactGone:
            outcome.expired.append(artifact)
            continue
        except DownloadTooLarge:
            outcome.too_large.append(artifact)
            continue
        if memo is not None:
            await memo.remember(artifact, report)
        outcome.report.artifacts.append(report)
        outcome.scanned.append(artifact)
    return outcome


async def _recall(
    memo: Memo | None, item: ArtifactInfo | AssetInfo, where: str
) -> ArtifactReport | None:
    """An earlier verdict for `item`, shown where this job met it (`<where> <id>`)."""
    if memo is None:
        return None
    report = await memo.recall(item)
    if report is not None:
        report.name = item.name
        report.path = f"{where} {item.id}"
    return report


async def _download_and_scan(
    gh: GitHubClient,
    url: str,
    dest: Path,
    *,
    name: str,
    shown: str,
    report_path: str,
    policy: Policy,
    max_bytes: int,
    progress: Progress | None,
    keep: Callable[[Path, ArtifactReport], Awaitable[None]] | None,
) -> ArtifactReport:
    """Download one file, scan it under `name`, let `keep` see it, delete it.

    `ArtifactGone` and `DownloadTooLarge` pass through (the download leaves no file then).
    """
    if progress is not None:
        await progress(f"downloading {shown}")
    await gh.download(url, dest, max_bytes=max_bytes)
    if progress is not None:
        await progress(f"scanning {shown}")
    try:
        report = await _scan_in_thread(dest, policy, name)
        report.path = report_path
        if keep is not None:
            await keep(dest, report)
    finally:
        dest.unlink(missing_ok=True)
    return report


async def _scan_in_thread(path: Path, policy: Policy, name: str) -> ArtifactReport:
    """Scan in a worker thread; when the job is cancelled, stop the scan and wait for it.

    A thread cannot be cancelled from outside: the scan is told to stop (it does at its next
    read) and awaited, so its spooled files are gone and `path` is no longer read when the
    cancellation goes on up (and the downloaded file is deleted).
    """
    cancel = threading.Event()
    scan = asyncio.ensure_future(asyncio.to_thread(_scan_one, path, policy, name, cancel))
    try:
        return await asyncio.shield(scan)
    except asyncio.CancelledError:
        cancel.set()
        await asyncio.wait([scan])
        if not scan.cancelled():
            scan.exception()  # retrieved, so asyncio does not log it: the cancellation wins
        raise


def _scan_one(path: Path, policy: Policy, name: str, cancel: threading.Event) -> ArtifactReport:
    return scan_path(path, policy=policy, name=name, cancel=cancel)


# --- release assets ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AssetInfo:
    """The fields of a release asset the App uses.

    `state` is `uploaded` once the asset can be downloaded (`open` while it is being uploaded).
    """

    id: int
    name: str
    size: int
    state: str
    digest: str | None = None
    """`sha256:<hex>` of the asset, when GitHub gives it."""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> AssetInfo:
        digest = data.get("digest")
        return cls(
            id=int(data["id"]),
            name=str(data["name"]),
            size=int(data.get("size") or 0),
            state=str(data.get("state") or "uploaded"),
            digest=digest if isinstance(digest, str) else None,
        )

    @property
    def subject(self) -> Subject:
        return Subject("asset", self.id, self.size, self.digest)

    @property
    def uploaded(self) -> bool:
        return self.state == "uploaded"


@dataclass(slots=True)
class AssetOutcome:
    """What scanning a release's assets gave, and what could not be scanned."""

    report: Report = field(default_factory=Report)
    scanned: list[AssetInfo] = field(default_factory=list)
    gone: list[AssetInfo] = field(default_factory=list)
    too_large: list[AssetInfo] = field(default_factory=list)
    reused: list[AssetInfo] = field(default_factory=list)
    """Those of `scanned` whose verdict was an earlier scan's: not downloaded again."""


async def release_assets(gh: GitHubClient, repository: str, release_id: int) -> list[AssetInfo]:
    """https://docs.github.com/en/rest/releases/assets#list-release-assets"""
    return [
        AssetInfo.from_api(item)
        async for item in gh.getiter(
            f"/repos/{repository}/releases/{release_id}/assets{{?per_page}}",
            url_vars={"per_page": "100"},
        )
    ]


async def scan_assets(
    gh: GitHubClient,
    repository: str,
    assets: Sequence[AssetInfo],
    policy: Policy,
    *,
    workdir: Path,
    label: str,
    max_bytes: int = DEFAULT_MAX_DOWNLOAD,
    progress: Progress | None = None,
    on_scanned: OnScannedAsset | None = None,
    memo: Memo | None = None,
) -> AssetOutcome:
    """Download each release asset into `workdir`, scan it under its own name, delete it.

    The bytes are asked for with `Accept: application/octet-stream`; GitHub answers with a
    302 to storage, followed without the token (`GitHubClient.download`), or with the bytes
    (https://docs.github.com/en/rest/releases/assets#get-a-release-asset). The URL is built
    from the asset id, never taken from a payload. `label` names the release in each
    report's path (`release v1.2.0, asset 42`). A `memo` is used as by `scan_artifacts`.
    """
    outcome = AssetOutcome()
    for index, asset in enumerate(assets, start=1):
        recalled = await _recall(memo, asset, f"{label}, asset")
        if recalled is not None:
            outcome.report.artifacts.append(recalled)
            outcome.scanned.append(asset)
            outcome.reused.append(asset)
            continue
        try:
            report = await _download_and_scan(
                gh,
                f"/repos/{repository}/releases/assets/{asset.id}",
                workdir / f"{asset.id}-{_SAFE_NAME.sub('_', asset.name)[-80:]}",
                name=asset.name,
                shown=f"{asset.name} ({index} of {len(assets)})",
                report_path=f"{label}, asset {asset.id}",
                policy=policy,
                max_bytes=max_bytes,
                progress=progress,
                keep=partial(on_scanned, asset) if on_scanned is not None else None,
            )
        except ArtifactGone:
            outcome.gone.append(asset)
            continue
        except DownloadTooLarge:
            outcome.too_large.append(asset)
            continue
        if memo is not None:
            await memo.remember(asset, report)
        outcome.report.artifacts.append(report)
        outcome.scanned.append(asset)
    return outcome
