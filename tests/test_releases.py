"""Releases, from the `release` payload to what the GitHub double received."""

from __future__ import annotations

import copy
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
from bot.double.state import Release, Repository
from bot.events import route
from bot.github import GitHubApp
from bot.handlers.releases import ReleaseChecks, resolve_tag
from bot.jobs import RetryLater
from bot.store.base import Job, JobState
from tests.apphelpers import examples

pytest_plugins = ["tests.ghdouble.fixtures"]

REAL = Path(__file__).parent / "fixtures" / "real"
LEAKY_TGZ = (REAL / "leaky-esbuild-1.0.0.tgz").read_bytes()
CLEAN_TGZ = (REAL / "clean-esbuild-1.0.0.tgz").read_bytes()
TAGGED = "7a9" + "0" * 37
"""The commit the tag points to; the release's `target_commitish` (main) has moved on."""
RELEASE = "/repos/{owner}/{repo}/releases/{release_id}"
ASSET = "/repos/{owner}/{repo}/releases/assets/{asset_id}"


# --- helpers shared with the deployment and comment tests ------------------------------------


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

    def events(self, stage: str) -> list[tuple[str, dict[str, Any]]]:
        return [(message, data) for s, message, data in self.stages if s == stage]


def job_from(
    event: str, payload: dict[str, Any], *, job_id: int = 7, created_at: float | None = None
) -> Job:
    """Route `payload` as the ingest does and return its job as the worker would claim it."""
    (spec,) = route(event, payload).jobs
    now = time.time() if created_at is None else created_at
    return Job(
        id=job_id,
        delivery_id=f"delivery-{job_id}",
        kind=spec.kind,
        installation_id=spec.installation_id,
        repository=spec.repository,
        head_sha=spec.head_sha,
        details=json.loads(json.dumps(spec.details)),  # as the store keeps them
        dedupe_key=spec.dedupe_key,
        state=JobState.RUNNING,
        attempts=1,
        not_before=now,
        lease_owner="worker",
        lease_expires=now + 60,
        check_run_id=None,
        created_at=now,
        updated_at=now,
        result_summary=None,
    )


def zipped(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return raw.getvalue()


def the_check_run(repo: Repository, sha: str | None = None) -> Any:
    found = [c for c in repo.check_runs.values() if c.name == "release-guard"]
    if sha is not None:
        found = [c for c in found if c.head_sha == sha]
    [check] = found
    return check


# --- release helpers ------------------------------------------------------------------------


def _example(action: str) -> dict[str, Any]:
    return next(
        e.payload for e in examples() if e.event == "release" and e.payload.get("action") == action
    )


def release_payload(repo: Repository, release: Release, action: str) -> dict[str, Any]:
    """GitHub's published example for `action`, pointed at a release of the double."""
    payload = copy.deepcopy(_example(action))
    payload["installation"] = {"id": repo.installation_id}
    payload["repository"]["full_name"] = repo.full_name
    payload["release"].update(
        id=release.id,
        tag_name=release.tag_name,
        target_commitish=release.target_commitish,
        draft=release.draft,
        prerelease=release.prerelease,
    )
    return payload


def published(
    ghdouble: GitHubDouble,
    asset: bytes | None,
    *,
    tag: str = "v1.0.0",
    annotated: bool = True,
    repo: Repository | None = None,
    draft: bool = False,
    prerelease: bool = False,
) -> tuple[Repository, Release]:
    repo = repo or ghdouble.add_repo("octo-org/octo-lib")
    repo.refs["heads/main"] = "9" * 40  # main has moved on since the tag
    if not draft:
        ghdouble.add_tag(repo, tag, commit=TAGGED, annotated=annotated)
    release = ghdouble.add_release(repo, tag_name=tag, draft=draft, prerelease=prerelease)
    if asset is not None:
        ghdouble.add_asset(repo, release, name="octo-lib-1.0.0.tgz", data=asset)
    return repo, release


async def guard(
    github_app: GitHubApp, repo: Repository, release: Release, action: str = "published"
) -> tuple[str | None, FakeContext]:
    ctx = FakeContext()
    job = job_from("release", release_payload(repo, release, action))
    return await ReleaseChecks(github_app).run(job, ctx), ctx


def no_deletes(ghdouble: GitHubDouble) -> bool:
    return not ghdouble.requests_to("DELETE", "*")


# --- Done means -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_failing_published_release_goes_back_to_draft(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ)
    result, ctx = await guard(github_app, repo, release)

    assert release.draft is True
    [edit] = ghdouble.requests_to("PATCH", RELEASE)
    assert edit.json == {"draft": True}
    assert no_deletes(ghdouble) and len(repo.assets) == 1
    # The check run is on the commit the annotated tag points to, not on main.
    check = the_check_run(repo)
    assert check.head_sha == TAGGED
    assert (check.status, check.conclusion) == ("completed", "failure")
    assert check.output["title"].startswith("v1.0.0 moved back to draft: 1 error")
    assert (
        "was moved back to draft** because its assets have 1 error-level finding"
        in (check.output["summary"])
    )
    assert any(a["title"] == "sourcemap/embedded-sources" for a in check.annotations)
    assert result == f"failure: {check.output['title']}"
    # The audit trail says what was done and why.
    [(message, data)] = [e for e in ctx.events("blocking")]
    assert "moved back to draft" in message and "1 error-level finding" in message
    assert data["action"] == "draft"
    # The tag was resolved through the annotated tag object; the asset was downloaded as bytes,
    # and the storage host never saw the token.
    assert ghdouble.requests_to("GET", "/repos/octo-org/octo-lib/git/ref/tags/v1.0.0")
    assert ghdouble.requests_to("GET", "/repos/{owner}/{repo}/git/tags/{tag_sha}")
    [download] = ghdouble.requests_to("GET", ASSET)
    headers = {k.lower(): v for k, v in download.headers.items()}
    assert headers["accept"] == "application/octet-stream"
    [stored] = ghdouble.requests_to("GET", "*", host="storage")
    assert not stored.had_authorization


@pytest.mark.asyncio
async def test_a_clean_release_is_left_untouched(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, CLEAN_TGZ, annotated=False)
    result, ctx = await guard(github_app, repo, release)
    assert release.draft is False
    assert not ghdouble.requests_to("PATCH", RELEASE) and no_deletes(ghdouble)
    check = the_check_run(repo)
    assert (check.head_sha, check.conclusion) == (TAGGED, "success")
    assert check.output["title"] == "v1.0.0 (published): No findings in 1 artifact"
    assert "left it as it is" in check.output["summary"]
    assert result == "success: v1.0.0 (published): No findings in 1 artifact"
    assert ctx.events("blocking")[0][1]["action"] == "none"


@pytest.mark.asyncio
async def test_a_draft_is_scanned_and_left_a_draft(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    # A draft's tag does not exist yet: the check run goes on its target branch's commit.
    repo, release = published(ghdouble, LEAKY_TGZ, draft=True)
    _, ctx = await guard(github_app, repo, release, action="created")
    assert release.draft is True
    assert not ghdouble.requests_to("PATCH", RELEASE) and no_deletes(ghdouble)
    check = the_check_run(repo)
    assert (check.head_sha, check.conclusion) == ("9" * 40, "failure")
    assert check.output["title"].startswith("v1.0.0 (draft): 1 error")
    assert "It is a draft and stays one" in check.output["summary"]
    assert "left a draft" in ctx.events("blocking")[0][0]


@pytest.mark.asyncio
async def test_a_release_with_no_assets_is_neutral_and_untouched(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, None)
    result, _ = await guard(github_app, repo, release)
    assert result == "neutral: the release has no assets"
    assert release.draft is False and not ghdouble.requests_to("PATCH", RELEASE)
    check = the_check_run(repo)
    assert (check.head_sha, check.conclusion) == (TAGGED, "neutral")
    assert check.output["title"] == "v1.0.0: no assets to scan"
    assert "has no assets" in check.output["summary"]
    assert not ghdouble.requests_to("GET", "*", host="storage")


# --- configuration and edges ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_on_failure_none_only_reports(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ)
    ghdouble.add_file(
        repo, ".github/release-guard.yml", "release:\n  on_failure: none\n", ref=TAGGED
    )
    _, ctx = await guard(github_app, repo, release)
    assert release.draft is False and not ghdouble.requests_to("PATCH", RELEASE)
    check = the_check_run(repo)
    assert check.conclusion == "failure"
    assert "`release.on_failure: none` asks release-guard only to report" in check.output["summary"]
    assert "release.on_failure is none" in ctx.events("blocking")[0][0]


@pytest.mark.asyncio
async def test_a_prerelease_that_fails_goes_back_to_draft(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ, prerelease=True)
    _, ctx = await guard(github_app, repo, release, action="prereleased")
    assert release.draft is True and release.prerelease is True
    assert "(it was published prerelease)" in ctx.events("blocking")[0][0]


@pytest.mark.asyncio
async def test_the_tagged_commits_workflow_artifacts_when_the_config_asks(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, CLEAN_TGZ)
    run = ghdouble.add_run(repo, head_sha=TAGGED, name="build")
    ghdouble.add_artifact(repo, run, name="site", data=zipped({"dist/.env": b"TOKEN=x"}))
    ghdouble.add_file(
        repo, ".github/release-guard.yml", "release:\n  scan_workflow_artifacts: true\n", ref=TAGGED
    )
    await guard(github_app, repo, release)
    check = the_check_run(repo)
    assert check.conclusion == "failure" and release.draft is True
    assert any(a["title"] == "files/forbidden" for a in check.annotations)
    assert len(ghdouble.requests_to("GET", "*", host="storage")) == 2


@pytest.mark.asyncio
async def test_workflow_artifacts_are_not_scanned_unless_asked(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, CLEAN_TGZ)
    run = ghdouble.add_run(repo, head_sha=TAGGED)
    ghdouble.add_artifact(repo, run, name="site", data=zipped({"dist/.env": b"TOKEN=x"}))
    await guard(github_app, repo, release)
    assert the_check_run(repo).conclusion == "success"
    assert not ghdouble.requests_to("GET", "/repos/*/actions/runs")


@pytest.mark.asyncio
async def test_an_invalid_config_fails_closed(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, CLEAN_TGZ)
    ghdouble.add_file(
        repo, ".github/release-guard.yml", "release:\n  on_failure: maybe\n", ref=TAGGED
    )
    result, _ = await guard(github_app, repo, release)
    assert result == "failure: invalid configuration (.github/release-guard.yml)"
    assert release.draft is True
    check = the_check_run(repo)
    assert check.conclusion == "failure"
    assert "configuration is invalid" in check.output["summary"]


@pytest.mark.asyncio
async def test_without_contents_write_the_check_run_says_what_to_do(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    permissions = {"actions": "read", "checks": "write", "contents": "read", "metadata": "read"}
    installation = ghdouble.add_installation(account="octo-org", permissions=permissions)
    repo = ghdouble.add_repo("octo-org/octo-lib", installation=installation)
    repo, release = published(ghdouble, LEAKY_TGZ, repo=repo)
    _, ctx = await guard(github_app, repo, release)
    assert release.draft is False
    summary = the_check_run(repo).output["summary"]
    assert "could not move it back to draft" in summary and "contents: write" in summary
    assert ctx.events("blocking")[0][1]["action"] == "failed"


@pytest.mark.asyncio
async def test_an_asset_still_uploading_is_waited_for(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ)
    [asset] = repo.assets.values()
    listing = [
        {**ghdouble.payloads.asset(repo, release, asset), "state": "open"},
    ]
    ghdouble.faults.add("GET", "/repos/*/releases/*/assets", Respond(200, listing))
    with pytest.raises(RetryLater, match="still uploading"):
        await guard(github_app, repo, release)
    assert release.draft is False
    # The next attempt finds it uploaded.
    await guard(github_app, repo, release)
    assert release.draft is True


@pytest.mark.asyncio
async def test_github_down_retries_then_fails_closed_and_drafts_the_release(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ)
    ghdouble.faults.add("GET", "/repos/*/releases/*/assets", ServerError(502), times=50)
    handler = ReleaseChecks(github_app)
    job = job_from("release", release_payload(repo, release, "published"))
    ctx = FakeContext()
    with pytest.raises(RetryLater):
        await handler.run(job, ctx)
    await handler.give_up(job, ctx, "GitHub answered 502 five times")
    check = the_check_run(repo)
    assert (check.head_sha, check.conclusion) == (TAGGED, "failure")
    summary = check.output["summary"]
    assert "502" in summary and "moved back to draft" in summary
    assert "its assets could not be checked" in summary
    # Unchecked is treated as failing: the release is no longer public.
    assert release.draft is True
    assert [e for e in ctx.events("blocking")]


@pytest.mark.asyncio
async def test_an_unchecked_release_stays_published_when_the_config_says_none(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ)
    ghdouble.add_file(
        repo, ".github/release-guard.yml", "release:\n  on_failure: none\n", ref=TAGGED
    )
    job = job_from("release", release_payload(repo, release, "published"))
    await ReleaseChecks(github_app).give_up(job, FakeContext(), "GitHub answered 502 five times")
    check = the_check_run(repo)
    assert check.conclusion == "failure" and "on_failure: none" in check.output["summary"]
    assert release.draft is False and not ghdouble.requests_to("PATCH", RELEASE)


@pytest.mark.asyncio
async def test_when_the_release_cannot_be_edited_either_the_check_run_says_so(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ)
    ghdouble.faults.add("PATCH", RELEASE, ServerError(502), times=50)
    job = job_from("release", release_payload(repo, release, "published"))
    await ReleaseChecks(github_app).give_up(job, FakeContext(), "GitHub answered 502 five times")
    check = the_check_run(repo)
    assert check.conclusion == "failure"
    assert "could neither check its assets nor act on the release" in check.output["summary"]
    assert release.draft is False


@pytest.mark.asyncio
async def test_give_up_before_any_check_run_opens_one_on_the_tag(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ)
    job = job_from("release", release_payload(repo, release, "published"))
    await ReleaseChecks(github_app).give_up(job, FakeContext(), "the worker died three times")
    check = the_check_run(repo)
    assert (check.head_sha, check.conclusion) == (TAGGED, "failure")
    assert release.draft is True


@pytest.mark.asyncio
async def test_a_deleted_release_is_nothing_to_do(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ)
    payload = release_payload(repo, release, "published")
    del repo.releases[release.id]
    result = await ReleaseChecks(github_app).run(job_from("release", payload), FakeContext())
    assert result == "release deleted: nothing to scan"
    assert not repo.check_runs


@pytest.mark.asyncio
async def test_tags_pointing_at_tags_are_peeled(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    inner = ghdouble.add_tag(repo, "inner", commit=TAGGED, annotated=True)
    outer_sha = ghdouble.add_tag(repo, "release/v2", commit=inner, annotated=True)
    repo.tags[outer_sha].object_type = "tag"
    gh = await github_app.installation(repo.installation_id)
    assert await resolve_tag(gh, repo.full_name, "release/v2") == TAGGED
    assert await resolve_tag(gh, repo.full_name, "missing") is None
