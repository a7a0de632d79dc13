"""One check run per set of inputs, every artifact downloaded and scanned once (issue 15).

The handlers run against the GitHub double with the App's database as their `ScanLedger`
(SQLite and PostgreSQL); what reached the double's storage host is what was downloaded.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from bot.double.faults import SecondaryRateLimit, ServerError, too_many_requests
from bot.double.server import GitHubDouble
from bot.double.state import Repository, WorkflowRun
from bot.events import route
from bot.github import GitHubApp
from bot.handlers import verdicts
from bot.handlers.comments import RescanCommands
from bot.handlers.deployments import DeploymentGates
from bot.handlers.pull_requests import PullRequestChecks
from bot.handlers.releases import ReleaseChecks
from bot.jobs import JobHandler, RetryLater
from bot.retention import SPOOL_FOLDER, BlobStore, Retainer, RetentionPolicy
from bot.store import PostgresStore, SqliteStore
from bot.store.base import Delivery, JobState
from tests.apphelpers import examples, pull_request_payload
from tests.test_comments import HEAD, a_pull_request, comment_payload
from tests.test_deployments import LEAKY_TGZ, gate_payload, tag_run
from tests.test_deployments import SHA as TAGGED_SHA
from tests.test_releases import FakeContext, release_payload, zipped

pytest_plugins = ["tests.ghdouble.fixtures"]

REAL = Path(__file__).parent / "fixtures" / "real"
LEAKY = (REAL / "actions-artifact-leaky.zip").read_bytes()
CLEAN = zipped({"clean-esbuild-1.0.0.tgz": (REAL / "clean-esbuild-1.0.0.tgz").read_bytes()})
SHA = "5ca" + "1" * 37
OTHER_SHA = "5cb" + "2" * 37
CONFIG = ".github/release-guard.yml"

Ledger = SqliteStore | PostgresStore


@pytest.fixture
def ledger(any_store: Ledger) -> Ledger:
    """The store, on each backend (`tests/pgtest.py`), as the verdict and coverage ledger."""
    return any_store


@pytest.fixture
def retainer(ledger: Ledger, tmp_path: Path) -> Retainer:
    blobs = BlobStore.from_url((tmp_path / "retained").as_uri())
    return Retainer(blobs, ledger, RetentionPolicy(), spool_dir=tmp_path / SPOOL_FOLDER)


class App:
    """The handlers of one App process, sharing one database; jobs are queued and claimed
    there as the worker does (the audit trail and the retained index name them)."""

    def __init__(self, github_app: GitHubApp, ledger: Ledger, retainer: Retainer | None) -> None:
        self.store = ledger
        self.checks = PullRequestChecks(github_app, retainer=retainer, ledger=ledger)
        self.gates = DeploymentGates(github_app, retainer=retainer, ledger=ledger)
        self.releases = ReleaseChecks(github_app, retainer=retainer, ledger=ledger)
        self.rescans = RescanCommands(github_app, self.checks)
        self.retried = 0

    async def run(self, handler: JobHandler, event: str, payload: dict[str, Any]) -> str | None:
        digest = hashlib.sha256(json.dumps(payload).encode()).hexdigest()
        delivery = Delivery(str(uuid.uuid4()), event, payload.get("action"), digest)
        assert await self.store.record_delivery(delivery, route(event, payload).jobs)
        job = await self.store.claim("test-worker", 600.0)
        assert job is not None
        ctx = FakeContext()
        for attempt in range(1, 6):  # as the worker: the same job, its check run remembered
            ctx.attempt = attempt
            try:
                result = await handler.run(job, ctx)
                break
            except RetryLater:
                self.retried += 1
        else:
            raise AssertionError("the job did not finish in five attempts")
        await self.store.complete(job, JobState.DONE, result or "done")
        return result

    async def opened(self, repo: Repository, sha: str = SHA) -> str | None:
        payload = pull_request_payload(sha=sha, repository=repo.full_name)
        payload["installation"] = {"id": repo.installation_id}
        return await self.run(self.checks, "pull_request", payload)

    async def completed(self, repo: Repository, run: WorkflowRun) -> str | None:
        return await self.run(self.checks, "workflow_run", run_payload(repo, run))


@pytest.fixture
def app(github_app: GitHubApp, ledger: Ledger, retainer: Retainer) -> App:
    return App(github_app, ledger, retainer)


def run_payload(repo: Repository, run: WorkflowRun) -> dict[str, Any]:
    """GitHub's example `workflow_run.completed`, for a run of the double."""
    example = next(e.payload for e in examples() if e.event == "workflow_run")
    payload = copy.deepcopy(example)
    payload["action"] = "completed"
    payload["installation"] = {"id": repo.installation_id}
    payload["repository"]["full_name"] = repo.full_name
    payload["workflow_run"].update(
        id=run.id,
        run_attempt=run.run_attempt,
        name=run.name,
        head_sha=run.head_sha,
        head_branch=run.head_branch,
        conclusion=run.conclusion,
    )
    return payload


def downloads(ghdouble: GitHubDouble) -> int:
    """Artifacts and assets fetched from the storage host (a refused try is not one)."""
    return len([r for r in ghdouble.requests_to("GET", "*", host="storage") if r.status == 200])


def check_runs(repo: Repository, sha: str = SHA) -> list[Any]:
    return sorted(
        (c for c in repo.check_runs.values() if c.head_sha == sha and c.name == "release-guard"),
        key=lambda c: c.id,
    )


# --- no second check run for the same inputs --------------------------------------------------


@pytest.mark.asyncio
async def test_opened_then_workflow_run_of_a_finished_build_one_check_run_one_download(
    ghdouble: GitHubDouble, app: App, ledger: Ledger
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)

    first = await app.opened(repo)
    second = await app.completed(repo, run)

    [check] = check_runs(repo)
    assert (check.status, check.conclusion) == ("completed", "failure")
    assert first is not None and first.startswith("failure")
    assert second == f"nothing new since check run {check.id}"
    assert downloads(ghdouble) == 1
    assert ghdouble.requests_to("POST", "/repos/{owner}/{repo}/check-runs").__len__() == 1
    covered = await ledger.get_coverage(repo.full_name, SHA)
    assert covered is not None and covered.check_run_id == check.id and covered.job_id == 1


@pytest.mark.asyncio
async def test_the_same_delivery_order_reversed_is_the_same(
    ghdouble: GitHubDouble, app: App
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(repo, run, name="npm-package", data=CLEAN)
    await app.completed(repo, run)
    assert (await app.opened(repo) or "").startswith("nothing new since check run")
    [check] = check_runs(repo)
    assert check.conclusion == "success"
    assert downloads(ghdouble) == 1


@pytest.mark.asyncio
async def test_two_workflows_finishing_apart_the_latest_check_run_covers_both(
    ghdouble: GitHubDouble, app: App
) -> None:
    repo = ghdouble.add_repo()
    build = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(repo, build, name="npm-package", data=LEAKY)
    await app.completed(repo, build)
    docs = ghdouble.add_run(repo, head_sha=SHA, name="docs")
    ghdouble.add_artifact(repo, docs, name="site", data=CLEAN)
    await app.completed(repo, docs)
    # GitHub sends the second run's completion again (a redelivery): nothing new.
    assert (await app.completed(repo, docs) or "").startswith("nothing new")

    first, latest = check_runs(repo)
    assert first.status == latest.status == "completed"
    assert "npm-package" in first.output["summary"] and "site" not in first.output["summary"]
    # The latest covers both runs' artifacts: the first run's verdict, reused, fails it still.
    assert latest.conclusion == "failure"
    assert "npm-package" in latest.output["summary"] and "site" in latest.output["summary"]
    assert any("npm-package!/" in a["message"] for a in latest.annotations)
    assert downloads(ghdouble) == 2  # each artifact once
    [npm, site] = [a for a in repo.artifacts.values()]
    fetched = [r.path for r in ghdouble.requests_to("GET", "*/zip")]
    assert sorted(fetched) == sorted(
        f"/repos/{repo.full_name}/actions/artifacts/{a.id}/zip" for a in (npm, site)
    )


@pytest.mark.asyncio
async def test_a_re_run_attempt_is_something_new(ghdouble: GitHubDouble, app: App) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)
    await app.completed(repo, run)
    run.run_attempt = 2
    ghdouble.add_artifact(repo, run, name="npm-package", data=CLEAN)  # the fixed build
    await app.completed(repo, run)
    first, latest = check_runs(repo)
    assert (first.conclusion, latest.conclusion) == ("failure", "success")
    assert downloads(ghdouble) == 2


@pytest.mark.asyncio
async def test_a_persons_rescan_is_a_new_visible_scan(ghdouble: GitHubDouble, app: App) -> None:
    repo = a_pull_request(ghdouble)
    ghdouble.set_permission(repo, "mona", "write")
    [run] = repo.runs.values()
    await app.opened(repo, HEAD)
    payload = comment_payload(ghdouble, repo, "/release-guard rescan")
    result = await app.run(app.rescans, "issue_comment", payload)

    first, rescanned = check_runs(repo, HEAD)
    assert result is not None and result.startswith("rescanned")
    assert rescanned.conclusion == "failure" and rescanned.id > first.id
    assert downloads(ghdouble) == 2  # a person's rescan downloads and scans again
    # ...and what it reported is now what the commit's latest check run covers.
    assert (await app.completed(repo, run) or "").startswith(
        f"nothing new since check run {rescanned.id}"
    )


# --- scan each artifact once ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_gate_then_release_of_the_same_bytes_download_once(
    ghdouble: GitHubDouble, app: App
) -> None:
    repo = ghdouble.add_repo("octo-org/octo-cli")
    ghdouble.add_file(repo, CONFIG, "release:\n  scan_workflow_artifacts: true\n", ref=SHA)
    run = ghdouble.add_run(repo, head_sha=SHA, name="release", status="waiting", conclusion=None)
    ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)
    gate = await app.run(app.gates, "deployment_protection_rule", gate_payload(ghdouble, repo, run))
    assert gate is not None and gate.startswith("rejected")

    run.status, run.conclusion = "completed", "success"
    ghdouble.add_tag(repo, "v1.0.0", commit=SHA)
    release = ghdouble.add_release(repo, tag_name="v1.0.0")
    result = await app.run(app.releases, "release", release_payload(repo, release, "published"))

    assert downloads(ghdouble) == 1
    assert result is not None and "failure" in result
    assert release.draft  # the reused failing verdict still holds the release back
    gate_check, release_check = check_runs(repo)
    assert gate_check.conclusion == release_check.conclusion == "failure"
    assert any("npm-package!/" in a["message"] for a in release_check.annotations)


@pytest.mark.asyncio
async def test_the_same_bytes_in_another_commit_are_not_downloaded_again(
    ghdouble: GitHubDouble, app: App
) -> None:
    repo = ghdouble.add_repo()
    for sha in (SHA, OTHER_SHA):
        run = ghdouble.add_run(repo, head_sha=sha, name="build")
        ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)  # same digest
        await app.opened(repo, sha)
    assert downloads(ghdouble) == 1
    assert check_runs(repo, OTHER_SHA)[0].conclusion == "failure"


@pytest.mark.asyncio
async def test_a_changed_config_scans_again(ghdouble: GitHubDouble, app: App) -> None:
    repo = ghdouble.add_repo()
    ghdouble.add_file(
        repo, CONFIG, "rules:\n  sourcemap/embedded-sources: warning\n", ref=OTHER_SHA
    )
    for sha in (SHA, OTHER_SHA):
        run = ghdouble.add_run(repo, head_sha=sha, name="build")
        ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)
        await app.opened(repo, sha)
    assert downloads(ghdouble) == 2
    assert check_runs(repo, SHA)[0].conclusion == "failure"
    assert check_runs(repo, OTHER_SHA)[0].conclusion == "success"


@pytest.mark.asyncio
async def test_an_engine_upgrade_scans_again(
    ghdouble: GitHubDouble, app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)
    await app.opened(repo)
    monkeypatch.setattr(verdicts, "engine_version", lambda: "99.0.0+upgraded")
    monkeypatch.setattr("bot.handlers.pull_requests.engine_version", lambda: "99.0.0+upgraded")
    result = await app.completed(repo, run)
    assert result is not None and result.startswith("failure")
    assert len(check_runs(repo)) == 2
    assert downloads(ghdouble) == 2


@pytest.mark.asyncio
async def test_a_reused_failing_verdict_points_at_its_retained_copy(
    ghdouble: GitHubDouble, app: App, ledger: Ledger
) -> None:
    repo = ghdouble.add_repo()
    for sha in (SHA, OTHER_SHA):
        run = ghdouble.add_run(repo, head_sha=sha, name="build")
        ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)
        await app.opened(repo, sha)
    assert downloads(ghdouble) == 1
    kept = [
        await ledger.get_retained(_retained_id(c))
        for c in (*check_runs(repo), *check_runs(repo, OTHER_SHA))
    ]
    assert [r.commit for r in kept if r is not None] == [SHA, OTHER_SHA]
    assert kept[0] is not None and kept[1] is not None and kept[0].digest == kept[1].digest


@pytest.mark.asyncio
async def test_a_failing_verdict_whose_copy_is_gone_is_scanned_again(
    ghdouble: GitHubDouble, app: App, retainer: Retainer
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)
    await app.opened(repo)
    for blob in await retainer.blobs.list_blobs():
        await retainer.blobs.delete(blob.digest)
    other = ghdouble.add_run(repo, head_sha=OTHER_SHA, name="build")
    ghdouble.add_artifact(repo, other, name="npm-package", data=LEAKY)
    await app.opened(repo, OTHER_SHA)
    assert downloads(ghdouble) == 2
    assert len(await retainer.blobs.list_blobs()) == 1  # kept again from the new download


def _retained_id(check: Any) -> str:
    summary = check.output["summary"]
    marker = "release-guard retained show "
    start = summary.index(marker) + len(marker)
    return summary[start : start + 16]


# --- the same under 5xx and secondary rate limits ---------------------------------------------


def turbulence(ghdouble: GitHubDouble) -> None:
    """5xx answers and secondary rate limits on every route a scan takes, the storage host
    included; the check-run creation fails past the in-request retries, so the job itself is
    retried (with the check run it may have opened remembered)."""
    faults = ghdouble.faults
    faults.add("GET", "/repos/{owner}/{repo}/contents/{path}", ServerError(503))
    faults.add(
        "GET",
        "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts",
        SecondaryRateLimit(retry_after=2),
        ServerError(500),
    )
    faults.add("POST", "/repos/{owner}/{repo}/check-runs", ServerError(502), times=5)
    faults.add("POST", "/repos/{owner}/{repo}/check-runs", SecondaryRateLimit(retry_after=1))
    faults.add("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", ServerError(502))
    faults.add(
        "GET",
        "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}",
        too_many_requests(1),
    )
    ghdouble.storage_faults.add("GET", "*", ServerError(503))


@pytest.mark.asyncio
async def test_under_5xx_and_secondary_rate_limits_opened_then_workflow_run(
    ghdouble: GitHubDouble, app: App
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)
    turbulence(ghdouble)
    ghdouble.faults.add("GET", "/repos/{owner}/{repo}/actions/runs", ServerError(502), times=2)

    await app.opened(repo)
    assert (await app.completed(repo, run) or "").startswith("nothing new")
    assert (await app.completed(repo, run) or "").startswith("nothing new")

    assert ghdouble.faults.pending() == ghdouble.storage_faults.pending() == 0
    assert app.retried == 1
    [check] = check_runs(repo)
    assert (check.status, check.conclusion) == ("completed", "failure")
    assert downloads(ghdouble) == 1


@pytest.mark.asyncio
async def test_under_5xx_and_secondary_rate_limits_two_workflows(
    ghdouble: GitHubDouble, app: App
) -> None:
    repo = ghdouble.add_repo()
    build = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(repo, build, name="npm-package", data=LEAKY)
    turbulence(ghdouble)
    await app.completed(repo, build)
    docs = ghdouble.add_run(repo, head_sha=SHA, name="docs")
    ghdouble.add_artifact(repo, docs, name="site", data=CLEAN)
    turbulence(ghdouble)
    await app.completed(repo, docs)
    await app.opened(repo)

    assert ghdouble.faults.pending() == ghdouble.storage_faults.pending() == 0
    first, latest = check_runs(repo)
    assert "npm-package" in latest.output["summary"] and "site" in latest.output["summary"]
    assert (first.conclusion, latest.conclusion) == ("failure", "failure")
    assert downloads(ghdouble) == 2


@pytest.mark.asyncio
async def test_under_5xx_and_secondary_rate_limits_gate_then_release(
    ghdouble: GitHubDouble, app: App
) -> None:
    repo = ghdouble.add_repo("octo-org/octo-cli")
    ghdouble.add_file(repo, CONFIG, "release:\n  scan_workflow_artifacts: true\n", ref=SHA)
    run = ghdouble.add_run(repo, head_sha=SHA, name="release", status="waiting", conclusion=None)
    ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)
    turbulence(ghdouble)
    ghdouble.faults.add(
        "POST",
        "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule",
        ServerError(502),
    )
    await app.run(app.gates, "deployment_protection_rule", gate_payload(ghdouble, repo, run))
    run.status, run.conclusion = "completed", "success"
    ghdouble.add_tag(repo, "v1.0.0", commit=SHA)
    release = ghdouble.add_release(repo, tag_name="v1.0.0")
    assert ghdouble.faults.pending() == ghdouble.storage_faults.pending() == 0
    # The release downloads nothing: the faults go on the routes it takes.
    ghdouble.faults.add("GET", "/repos/{owner}/{repo}/contents/{path}", ServerError(503))
    ghdouble.faults.add("GET", "/repos/{owner}/{repo}/actions/runs", SecondaryRateLimit(1))
    ghdouble.faults.add("POST", "/repos/{owner}/{repo}/check-runs", ServerError(502), times=5)
    ghdouble.faults.add("PATCH", "/repos/{owner}/{repo}/releases/{release_id}", ServerError(500))
    await app.run(app.releases, "release", release_payload(repo, release, "published"))

    assert ghdouble.faults.pending() == 0
    [review] = run.deployment_reviews
    assert review["state"] == "rejected"
    assert downloads(ghdouble) == 1
    assert release.draft
    gate_check, release_check = check_runs(repo)
    assert gate_check.conclusion == release_check.conclusion == "failure"


# --- fewer requests ---------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_config_and_hint_files_are_asked_for_conditionally(
    ghdouble: GitHubDouble, app: App
) -> None:
    repo = ghdouble.add_repo()
    ghdouble.add_file(repo, CONFIG, "rules:\n  sourcemap/map-file: error\n", ref=SHA)
    ghdouble.add_file(repo, "package.json", '{"name": "x", "files": ["dist"]}', ref=SHA)
    run = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)
    await app.opened(repo)
    before = len(ghdouble.requests)
    run.run_attempt = 2  # something new: the same files are read again
    await app.completed(repo, run)

    again = ghdouble.requests[before:]
    contents = [
        r
        for r in again
        if r.route == "/repos/{owner}/{repo}/contents/{path}"
        and r.path.startswith(f"/repos/{repo.full_name}/")
    ]
    tree = [r for r in again if r.route == "/repos/{owner}/{repo}/git/trees/{tree_sha}"]
    assert {r.path.rsplit("/", 1)[-1] for r in contents} == {"package.json", "release-guard.yml"}
    assert tree
    assert all("if-none-match" in {k.lower() for k in r.headers} for r in contents + tree)
    assert {r.status for r in contents + tree} == {304}
    assert len(check_runs(repo)) == 2


@pytest.mark.asyncio
async def test_a_draft_asset_the_gate_scanned_is_not_downloaded_again_when_published(
    ghdouble: GitHubDouble, app: App
) -> None:
    """The draft-first release: the gate scans the run's build and the tag's draft asset;
    publishing the draft scans the same asset (same digest) without downloading it."""
    repo, run = tag_run(ghdouble, CLEAN, LEAKY_TGZ)
    [draft] = [r for r in repo.releases.values() if r.draft]
    gate = await app.run(app.gates, "deployment_protection_rule", gate_payload(ghdouble, repo, run))
    assert gate is not None and gate.startswith("rejected")
    assert downloads(ghdouble) == 2  # the run's artifact and the draft's asset

    draft.draft = False
    result = await app.run(app.releases, "release", release_payload(repo, draft, "published"))

    assert downloads(ghdouble) == 2
    assert result is not None and "failure" in result
    release_check = check_runs(repo, TAGGED_SHA)[-1]
    assert release_check.conclusion == "failure"
    assert "sourcemap/embedded-sources" in release_check.output["summary"]
