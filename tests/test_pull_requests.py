"""The pull-request check, from a job to what the GitHub double received."""

from __future__ import annotations

import io
import json
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.double.faults import Respond, ServerError
from bot.double.server import GitHubDouble
from bot.events import JobKind
from bot.github import GitHubApp
from bot.handlers.pull_requests import CheckOptions, PullRequestChecks
from bot.jobs import RetryLater
from bot.store.base import Job, JobState

pytest_plugins = ["tests.ghdouble.fixtures"]

REAL = Path(__file__).parent / "fixtures" / "real"
SHA = "c0ffee" + "0" * 34
CHECK_RUNS = "/repos/{owner}/{repo}/check-runs"
CHECK_RUN = "/repos/{owner}/{repo}/check-runs/{check_run_id}"


@dataclass
class FakeContext:
    """A JobContext that records what the handler told the worker."""

    attempt: int = 1
    last_attempt: bool = False
    check_run_id: int | None = None
    stages: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def audit(self, stage: str, message: str, **data: Any) -> None:
        self.stages.append((stage, message, data))

    async def set_check_run(self, check_run_id: int) -> None:
        self.check_run_id = check_run_id


def make_job(repo: Any, *, kind: JobKind = JobKind.CHECK, sha: str = SHA, job_id: int = 7) -> Job:
    now = time.time()
    return Job(
        id=job_id,
        delivery_id="d-1",
        kind=kind,
        installation_id=repo.installation_id,
        repository=repo.full_name,
        head_sha=sha,
        details={},
        dedupe_key=f"check:{repo.full_name}:{sha}",
        state=JobState.RUNNING,
        attempts=1,
        not_before=now,
        lease_owner="w",
        lease_expires=now + 60,
        check_run_id=None,
        created_at=now,
        updated_at=now,
        result_summary=None,
    )


def artifact_zip(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return raw.getvalue()


LEAKY = (REAL / "actions-artifact-leaky.zip").read_bytes()
CLEAN = artifact_zip({"clean-esbuild-1.0.0.tgz": (REAL / "clean-esbuild-1.0.0.tgz").read_bytes()})


def the_check_run(repo: Any) -> Any:
    [check] = [c for c in repo.check_runs.values() if c.name == "release-guard"]
    return check


@pytest.mark.asyncio
async def test_leaky_artifact_fails_the_check(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo("octo-org/octo-repo")
    run = ghdouble.add_run(repo, head_sha=SHA, name="build")
    ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)
    ctx = FakeContext()
    result = await PullRequestChecks(github_app).run(make_job(repo), ctx)

    check = the_check_run(repo)
    assert check.status == "completed" and check.conclusion == "failure"
    assert result == f"failure: {check.output['title']}"
    assert check.output["title"].startswith("1 error")
    assert "sourcemap/embedded-sources" in check.output["summary"]
    levels = {a["annotation_level"] for a in check.annotations}
    assert levels == {"failure", "notice"}
    assert all(
        "npm-package!/leaky-esbuild-1.0.0.tgz!/package/dist/" in a["message"]
        for a in check.annotations
    )
    assert ctx.check_run_id == check.id
    assert [s for s, _, _ in ctx.stages][-1] == "reporting"
    # The download followed GitHub's redirect to the storage host without the token.
    [stored] = ghdouble.requests_to("GET", "*", host="storage")
    assert not stored.had_authorization


@pytest.mark.asyncio
async def test_clean_artifact_passes(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA)
    ghdouble.add_artifact(repo, run, name="npm-package", data=CLEAN)
    await PullRequestChecks(github_app).run(make_job(repo), FakeContext())
    check = the_check_run(repo)
    assert (check.status, check.conclusion) == ("completed", "success")
    assert check.annotations == []


@pytest.mark.asyncio
async def test_no_workflow_run_is_neutral_and_says_what_to_upload(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    result = await PullRequestChecks(github_app).run(make_job(repo), FakeContext())
    check = the_check_run(repo)
    assert check.conclusion == "neutral"
    assert "actions/upload-artifact" in check.output["summary"]
    assert result == "neutral: no artifact to scan"


@pytest.mark.asyncio
async def test_running_builds_leave_the_check_queued_until_a_run_completes(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA, status="in_progress", conclusion=None)
    handler = PullRequestChecks(github_app)
    assert await handler.run(make_job(repo), FakeContext()) == "waiting for builds"
    check = the_check_run(repo)
    assert check.status == "queued"
    assert check.output["title"] == "Waiting for builds"

    # The run completes: its workflow_run job takes the queued check run over.
    run.status, run.conclusion = "completed", "success"
    ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)
    await handler.run(make_job(repo, kind=JobKind.WORKFLOW_RUN, job_id=8), FakeContext())
    assert the_check_run(repo).conclusion == "failure"
    assert len(ghdouble.requests_to("POST", CHECK_RUNS)) == 1


@pytest.mark.asyncio
async def test_expired_artifact_is_neutral(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA)
    ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY, expired=True)
    assert await PullRequestChecks(github_app).run(make_job(repo), FakeContext()) == (
        "neutral: artifacts expired"
    )
    check = the_check_run(repo)
    assert check.conclusion == "neutral"
    assert "Re-run" in check.output["summary"]


@pytest.mark.asyncio
async def test_config_selects_artifacts_by_name(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA)
    ghdouble.add_artifact(repo, run, name="coverage-report", data=LEAKY)
    ghdouble.add_artifact(repo, run, name="npm-package", data=CLEAN)
    ghdouble.add_file(repo, ".github/release-guard.yml", 'artifacts:\n  - name: "npm-*"\n', ref=SHA)
    await PullRequestChecks(github_app).run(make_job(repo), FakeContext())
    assert the_check_run(repo).conclusion == "success"
    assert len(ghdouble.requests_to("GET", "*", host="storage")) == 1


@pytest.mark.asyncio
async def test_invalid_config_fails_with_an_annotation_on_its_line(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    ghdouble.add_run(repo, head_sha=SHA)
    ghdouble.add_file(
        repo, ".github/release-guard.yml", "rules:\n  sourcemap/embedded-sources: loud\n", ref=SHA
    )
    await PullRequestChecks(github_app).run(make_job(repo), FakeContext())
    check = the_check_run(repo)
    assert check.conclusion == "failure"
    [annotation] = check.annotations
    assert (annotation["path"], annotation["start_line"]) == (".github/release-guard.yml", 2)


@pytest.mark.asyncio
async def test_a_rerun_after_a_crash_updates_the_same_check_run(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA)
    ghdouble.add_artifact(repo, run, name="npm-package", data=CLEAN)
    handler = PullRequestChecks(github_app)
    ctx = FakeContext()
    await handler.run(make_job(repo), ctx)
    # The worker died after the check run was recorded; the job runs again.
    await handler.run(make_job(repo), FakeContext(attempt=2, check_run_id=ctx.check_run_id))
    assert len(ghdouble.requests_to("POST", CHECK_RUNS)) == 1
    assert the_check_run(repo).conclusion == "success"


@pytest.mark.asyncio
async def test_github_down_retries_then_gives_up_with_an_explicit_failure(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA)
    ghdouble.add_artifact(repo, run, name="npm-package", data=CLEAN)
    ghdouble.faults.add("GET", "/repos/*/actions/runs", ServerError(502), times=50)
    handler = PullRequestChecks(github_app)
    ctx = FakeContext()
    with pytest.raises(RetryLater):
        await handler.run(make_job(repo), ctx)
    # No check run yet: one is opened only once the job knows there is something new.
    assert not repo.check_runs
    await handler.give_up(make_job(repo), ctx, "GitHub answered 502 five times")
    check = the_check_run(repo)
    assert (check.status, check.conclusion) == ("completed", "failure")
    assert "502" in check.output["summary"]


@pytest.mark.asyncio
async def test_more_than_fifty_annotations_are_sent_in_batches(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA)
    files = {f"dist/.env.{i}": b"TOKEN=x" for i in range(120)}
    ghdouble.add_artifact(repo, run, name="site", data=artifact_zip(files))
    await PullRequestChecks(github_app).run(make_job(repo), FakeContext())
    check = the_check_run(repo)
    assert check.conclusion == "failure"
    assert len(check.annotations) == 120
    patches = [
        r
        for r in ghdouble.requests_to("PATCH", CHECK_RUN)
        if "annotations" in r.json.get("output", {})
    ]
    assert [len(r.json["output"]["annotations"]) for r in patches] == [50, 50, 20]


@pytest.mark.asyncio
async def test_annotation_points_at_the_option_that_embeds_sources(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA)
    tsc = (REAL / "localpath-tsc-1.0.0.tgz").read_bytes()
    ghdouble.add_artifact(
        repo, run, name="npm-package", data=artifact_zip({"range-lib-1.0.0.tgz": tsc})
    )
    tsconfig = json.dumps(
        {"compilerOptions": {"outDir": "dist", "sourceMap": True, "inlineSources": True}}, indent=2
    )
    ghdouble.add_file(repo, "tsconfig.json", tsconfig, ref=SHA)
    await PullRequestChecks(github_app, CheckOptions()).run(make_job(repo), FakeContext())
    check = the_check_run(repo)
    embedded = [a for a in check.annotations if a["title"] == "sourcemap/embedded-sources"]
    assert embedded
    inline_sources_line = tsconfig.splitlines().index('    "inlineSources": true') + 1
    assert {(a["path"], a["start_line"]) for a in embedded} == {
        ("tsconfig.json", inline_sources_line)
    }
    # The commit's root was listed once; of the candidate files only those there were read.
    assert len(ghdouble.requests_to("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}")) == 1
    read = {r.path.rsplit("/contents/", 1)[1] for r in ghdouble.requests_to("GET", "*/contents/*")}
    assert (
        "tsconfig.json" in read and "webpack.config.js" not in read and "package.json" not in read
    )


@pytest.mark.asyncio
async def test_without_the_tree_every_candidate_file_is_asked_for(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo, head_sha=SHA)
    tsc = (REAL / "localpath-tsc-1.0.0.tgz").read_bytes()
    ghdouble.add_artifact(
        repo, run, name="npm-package", data=artifact_zip({"range-lib-1.0.0.tgz": tsc})
    )
    ghdouble.add_file(
        repo, "tsconfig.json", '{"compilerOptions": {"inlineSources": true}}', ref=SHA
    )
    ghdouble.faults.add("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}", Respond(404))
    await PullRequestChecks(github_app, CheckOptions()).run(make_job(repo), FakeContext())
    check = the_check_run(repo)
    assert any(a["path"] == "tsconfig.json" for a in check.annotations)
    read = {r.path.rsplit("/contents/", 1)[1] for r in ghdouble.requests_to("GET", "*/contents/*")}
    assert {"tsconfig.json", "webpack.config.js", "package.json"} <= read
