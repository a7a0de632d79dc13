"""Deployment gates, from the `deployment_protection_rule` payload to what the double received."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from bot.double.faults import ServerError
from bot.double.server import GitHubDouble
from bot.double.state import Repository, WorkflowRun
from bot.errors import ReleaseGuardError
from bot.github import GitHubApp
from bot.handlers.deployments import DeploymentGates, UntrustedCallback, parse_callback
from bot.jobs import RetryLater
from tests.apphelpers import examples
from tests.test_releases import FakeContext, job_from, the_check_run, zipped

pytest_plugins = ["tests.ghdouble.fixtures"]

REAL = Path(__file__).parent / "fixtures" / "real"
LEAKY = (REAL / "actions-artifact-leaky.zip").read_bytes()
CLEAN = zipped({"clean-esbuild-1.0.0.tgz": (REAL / "clean-esbuild-1.0.0.tgz").read_bytes()})
SHA = "de9" + "1" * 37
REVIEW = "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule"


def gate_payload(
    ghdouble: GitHubDouble, repo: Repository, run: WorkflowRun, *, callback: str | None = None
) -> dict[str, Any]:
    """GitHub's example `deployment_protection_rule.requested`, for a waiting run of the double."""
    [example] = [e.payload for e in examples() if e.event == "deployment_protection_rule"]
    payload = copy.deepcopy(example)
    payload["installation"] = {"id": repo.installation_id}
    payload["repository"]["full_name"] = repo.full_name
    payload["environment"] = "npm"
    payload["event"] = "push"
    payload["deployment"]["sha"] = run.head_sha
    payload["deployment_callback_url"] = callback or (
        f"{ghdouble.api_url}/repos/{repo.full_name}/actions/runs/{run.id}/deployment_protection_rule"
    )
    return payload


def waiting_run(
    ghdouble: GitHubDouble, artifact: bytes | None, **kwargs: Any
) -> tuple[Repository, WorkflowRun]:
    repo = ghdouble.add_repo("octo-org/octo-cli")
    run = ghdouble.add_run(repo, head_sha=SHA, name="release", status="waiting", conclusion=None)
    if artifact is not None:
        ghdouble.add_artifact(repo, run, name="npm-package", data=artifact, **kwargs)
    return repo, run


async def gate(
    ghdouble: GitHubDouble, github_app: GitHubApp, repo: Repository, run: WorkflowRun
) -> tuple[str | None, FakeContext]:
    ctx = FakeContext()
    job = job_from("deployment_protection_rule", gate_payload(ghdouble, repo, run))
    return await DeploymentGates(github_app).run(job, ctx), ctx


# --- Done means -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_clean_build_is_approved(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    repo, run = waiting_run(ghdouble, CLEAN)
    result, ctx = await gate(ghdouble, github_app, repo, run)

    [review] = run.deployment_reviews
    assert review["environment_name"] == "npm" and review["state"] == "approved"
    check = the_check_run(repo)
    assert review["comment"].startswith("Approved: No findings in 1 artifact.")
    assert review["comment"].endswith(
        f"Details: https://github.com/{repo.full_name}/runs/{check.id}"
    )
    assert (check.head_sha, check.conclusion) == (SHA, "success")
    assert check.output["title"] == "Deployment to npm approved: No findings in 1 artifact"
    assert "**Deployment to `npm` approved**" in check.output["summary"]
    assert result == f"approved: {check.output['title']}"
    assert any("approved the deployment to 'npm'" in m for m, _ in ctx.events("gate"))
    [posted] = ghdouble.requests_to("POST", REVIEW)
    assert posted.auth == "token"


@pytest.mark.asyncio
async def test_a_leaky_build_is_rejected_with_its_findings(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, run = waiting_run(ghdouble, LEAKY)
    result, _ = await gate(ghdouble, github_app, repo, run)

    [review] = run.deployment_reviews
    assert review["state"] == "rejected"
    assert review["comment"].startswith("Rejected: 1 error, 1 notice in 1 artifact: ")
    assert "sourcemap/embedded-sources at `" in review["comment"]
    assert "Details: https://github.com/" in review["comment"]
    check = the_check_run(repo)
    assert check.conclusion == "failure"
    assert check.output["title"].startswith("Deployment to npm rejected: 1 error")
    assert any(a["title"] == "sourcemap/embedded-sources" for a in check.annotations)
    assert result is not None and result.startswith("rejected: ")


@pytest.mark.asyncio
async def test_an_expired_artifact_rejects_the_gate(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, run = waiting_run(ghdouble, CLEAN, expired=True)
    await gate(ghdouble, github_app, repo, run)
    [review] = run.deployment_reviews
    assert review["state"] == "rejected"
    assert "expired before they could be scanned (npm-package)" in review["comment"]
    assert "fails closed" in review["comment"]
    check = the_check_run(repo)
    assert check.output["title"] == "Build artifacts expired"
    assert "rejected**: the artifacts expired" in check.output["summary"]


@pytest.mark.asyncio
async def test_github_down_after_the_retries_rejects_the_gate(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, run = waiting_run(ghdouble, CLEAN)
    ghdouble.faults.add("GET", "/repos/*/actions/runs/*/artifacts", ServerError(502), times=50)
    handler = DeploymentGates(github_app)
    job = job_from("deployment_protection_rule", gate_payload(ghdouble, repo, run))
    ctx = FakeContext()
    with pytest.raises(RetryLater, match=r"502|gave up"):
        await handler.run(job, ctx)
    assert not run.deployment_reviews  # a retry may still approve it
    await handler.give_up(job, ctx, "gave up after 5 attempts: GitHub answered 502")
    [review] = run.deployment_reviews
    assert review["state"] == "rejected"
    assert "could not finish scanning" in review["comment"] and "502" in review["comment"]
    check = the_check_run(repo)
    assert check.conclusion == "failure" and "rejected" in check.output["summary"]


# --- fail closed, and never send the token elsewhere ----------------------------------------


@pytest.mark.asyncio
async def test_nothing_uploaded_rejects(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    repo, run = waiting_run(ghdouble, None)
    await gate(ghdouble, github_app, repo, run)
    [review] = run.deployment_reviews
    assert review["state"] == "rejected" and "uploaded no artifact" in review["comment"]
    assert the_check_run(repo).conclusion == "neutral"


@pytest.mark.asyncio
async def test_an_invalid_config_rejects(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    repo, run = waiting_run(ghdouble, CLEAN)
    ghdouble.add_file(repo, ".github/release-guard.yml", "rules: [\n", ref=SHA)
    await gate(ghdouble, github_app, repo, run)
    [review] = run.deployment_reviews
    assert review["state"] == "rejected" and "configuration is invalid" in review["comment"]


@pytest.mark.asyncio
async def test_warnings_alone_approve(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    repo, run = waiting_run(
        ghdouble, zipped({"dist/app.js.map": b'{"version":3,"sources":[],"mappings":""}'})
    )
    await gate(ghdouble, github_app, repo, run)
    [review] = run.deployment_reviews
    assert review["state"] == "approved"


@pytest.mark.asyncio
async def test_a_callback_elsewhere_is_never_called(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, run = waiting_run(ghdouble, CLEAN)
    evil = f"https://evil.example/repos/{repo.full_name}/actions/runs/{run.id}/deployment_protection_rule"
    job = job_from("deployment_protection_rule", gate_payload(ghdouble, repo, run, callback=evil))
    handler = DeploymentGates(github_app)
    ctx = FakeContext()
    with pytest.raises(UntrustedCallback):
        await handler.run(job, ctx)
    await handler.give_up(job, ctx, "UntrustedCallback")
    assert not ghdouble.requests and not run.deployment_reviews
    assert "not answered" in ctx.events("gate")[0][0]


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/repos/o/r/actions/runs/1/deployment_protection_rule",
        "https://api.github.com/repos/o/other/actions/runs/1/deployment_protection_rule",
        "https://api.github.com/repos/o/r/actions/runs/1/approve",
        "https://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule?x=1",
        "https://api.github.com/../repos/o/r/actions/runs/x/deployment_protection_rule",
        "http://api.github.com/repos/o/r/actions/runs/1/deployment_protection_rule",
        "https://api.github.com:8443/repos/o/r/actions/runs/1/deployment_protection_rule",
    ],
)
def test_untrusted_callbacks_are_refused(url: str) -> None:
    with pytest.raises(UntrustedCallback):
        parse_callback(url, api_url="https://api.github.com", repository="o/r")


def test_callbacks_of_the_configured_api_are_accepted() -> None:
    url = "https://api.github.com/repos/O/R/actions/runs/42/deployment_protection_rule"
    assert parse_callback(url, api_url="https://api.github.com", repository="o/r").run_id == 42
    ghes = "https://ghe.example/api/v3/repos/o/r/actions/runs/7/deployment_protection_rule"
    assert parse_callback(ghes, api_url="https://ghe.example/api/v3/", repository="o/r").run_id == 7
    with pytest.raises(ReleaseGuardError):
        parse_callback(
            "https://ghe.example/repos/o/r/actions/runs/7/deployment_protection_rule",
            api_url="https://ghe.example/api/v3",
            repository="o/r",
        )


# --- the draft-first release: the tag's draft release is scanned too --------------------------


LEAKY_TGZ = (REAL / "leaky-esbuild-1.0.0.tgz").read_bytes()
CLEAN_TGZ = (REAL / "clean-esbuild-1.0.0.tgz").read_bytes()


def tag_run(
    ghdouble: GitHubDouble, artifact: bytes, draft_asset: bytes | None, *, state: str = "uploaded"
) -> tuple[Repository, WorkflowRun]:
    """A run started by pushing tag v1.0.0, waiting to publish the draft release of v1.0.0."""
    repo = ghdouble.add_repo("octo-org/octo-cli")
    ghdouble.add_tag(repo, "v1.0.0", commit=SHA, annotated=True)
    run = ghdouble.add_run(
        repo,
        head_sha=SHA,
        head_branch="v1.0.0",
        name="release",
        status="waiting",
        conclusion=None,
    )
    ghdouble.add_artifact(repo, run, name="npm-package", data=artifact)
    ghdouble.add_release(repo, tag_name="v0.9.0")  # an older, published release
    if draft_asset is not None:
        draft = ghdouble.add_release(repo, tag_name="v1.0.0", draft=True, target_commitish=SHA)
        ghdouble.add_asset(repo, draft, name="octo-cli-1.0.0.tgz", data=draft_asset, state=state)
    return repo, run


@pytest.mark.asyncio
async def test_a_leaky_draft_asset_rejects_even_with_clean_run_artifacts(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, run = tag_run(ghdouble, CLEAN, LEAKY_TGZ)
    result, ctx = await gate(ghdouble, github_app, repo, run)

    [review] = run.deployment_reviews
    assert review["state"] == "rejected"
    assert "sourcemap/embedded-sources at `" in review["comment"]
    assert (
        f"Scanned: 1 artifact(s) of workflow run {run.id} and 1 of the 1 asset(s) of draft "
        "release v1.0.0." in review["comment"]
    )
    check = the_check_run(repo)
    assert check.conclusion == "failure"
    assert "draft release v1.0.0, asset" in check.output["summary"]
    assert result is not None and result.startswith("rejected: ")
    # The draft was found through the listing: the by-tag endpoint never shows drafts.
    assert ghdouble.requests_to("GET", "/repos/{owner}/{repo}/releases")
    gh = await github_app.installation(repo.installation_id)
    with pytest.raises(ReleaseGuardError):
        await gh.getitem(f"/repos/{repo.full_name}/releases/tags/v1.0.0")
    assert "and 1 asset(s) of draft release v1.0.0" in ctx.events("downloading")[0][0]


@pytest.mark.asyncio
async def test_clean_run_artifacts_and_a_clean_draft_are_approved(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, run = tag_run(ghdouble, CLEAN, CLEAN_TGZ)
    await gate(ghdouble, github_app, repo, run)
    [review] = run.deployment_reviews
    assert review["state"] == "approved"
    assert review["comment"].startswith("Approved: No findings in 2 artifacts.")
    assert "and 1 of the 1 asset(s) of draft release v1.0.0." in review["comment"]
    summary = the_check_run(repo).output["summary"]
    assert "nor in the assets of draft release `v1.0.0` blocks it" in summary


@pytest.mark.asyncio
async def test_a_tag_without_a_draft_is_said_in_the_answer(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, run = tag_run(ghdouble, CLEAN, None)
    await gate(ghdouble, github_app, repo, run)
    [review] = run.deployment_reviews
    assert review["state"] == "approved"
    assert "tag v1.0.0 has no draft release the App can see" in review["comment"]


@pytest.mark.asyncio
async def test_a_draft_asset_still_uploading_is_waited_for_never_passed(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, run = tag_run(ghdouble, CLEAN, CLEAN_TGZ, state="open")
    ctx = FakeContext()
    job = job_from("deployment_protection_rule", gate_payload(ghdouble, repo, run))
    with pytest.raises(RetryLater, match=r"still uploading: octo-cli-1\.0\.0\.tgz"):
        await DeploymentGates(github_app).run(job, ctx)
    assert not run.deployment_reviews
    # Still uploading on the last attempt: rejected, never approved.
    ctx.attempt, ctx.last_attempt = 2, True
    await DeploymentGates(github_app).run(job, ctx)
    [review] = run.deployment_reviews
    assert review["state"] == "rejected"
    check = the_check_run(repo)
    assert check.conclusion == "failure"
    assert "still being uploaded" in check.output["summary"]


@pytest.mark.asyncio
async def test_a_branch_run_does_not_look_for_drafts(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, run = waiting_run(ghdouble, CLEAN)
    draft = ghdouble.add_release(repo, tag_name="main", draft=True)
    ghdouble.add_asset(repo, draft, name="x.tgz", data=LEAKY_TGZ)
    await gate(ghdouble, github_app, repo, run)
    [review] = run.deployment_reviews
    assert review["state"] == "approved"
    assert not ghdouble.requests_to("GET", "/repos/{owner}/{repo}/releases")
