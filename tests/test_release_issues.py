"""Failing releases that cannot be taken back: immutable releases, `on_failure: issue|delete`.

Exactly one issue per release, whatever happens to the job; never a claim of a revert that did
not happen; `delete` only once the failing assets are retained.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from bot.double.faults import Respond, ServerError, ServerErrorAfter
from bot.double.routes import IMMUTABLE_STATE
from bot.double.server import GitHubDouble
from bot.double.state import Release, Repository
from bot.engine.policy import OnFailure
from bot.events import route
from bot.github import GitHubApp
from bot.handlers.release_blocking import Blocker, Failing
from bot.handlers.release_info import get_release
from bot.handlers.release_issues import MARKER
from bot.handlers.releases import ReleaseChecks
from bot.jobs import RetryLater
from bot.retention import Retainer
from bot.retention.blobs import BlobStore
from bot.retention.policy import RetentionPolicy
from bot.store.base import Delivery, Job, RetainedFilter, RetainedState
from bot.store.sqlite import SqliteStore
from tests.test_releases import (
    LEAKY_TGZ,
    RELEASE,
    TAGGED,
    FakeContext,
    job_from,
    published,
    release_payload,
    the_check_run,
)

pytest_plugins = ["tests.ghdouble.fixtures"]

ISSUES = "/repos/{owner}/{repo}/issues"


def immutable_release(ghdouble: GitHubDouble) -> tuple[Repository, Release]:
    repo = ghdouble.add_repo("octo-org/octo-lib")
    repo.immutable_releases = True
    repo, release = published(ghdouble, LEAKY_TGZ, repo=repo)
    assert release.immutable
    return repo, release


def configure(ghdouble: GitHubDouble, repo: Repository, on_failure: str) -> None:
    ghdouble.add_file(
        repo, ".github/release-guard.yml", f"release:\n  on_failure: {on_failure}\n", ref=TAGGED
    )


async def run_job(
    github_app: GitHubApp,
    repo: Repository,
    release: Release,
    *,
    ctx: FakeContext | None = None,
    kept: Kept | None = None,
) -> tuple[str | None, FakeContext]:
    ctx = ctx or FakeContext()
    if kept is None:
        job = job_from("release", release_payload(repo, release, "published"))
        return await ReleaseChecks(github_app).run(job, ctx), ctx
    job = await kept.job(repo, release)
    return await ReleaseChecks(github_app, retainer=kept.retainer).run(job, ctx), ctx


def opened(repo: Repository) -> list[int]:
    return sorted(repo.issues)


@dataclass
class Kept:
    """A store that holds the jobs and the retention index, and its Retainer."""

    store: SqliteStore
    retainer: Retainer

    async def job(self, repo: Repository, release: Release) -> Job:
        """The release's job as the worker claims it from the store (retention needs it)."""
        (spec,) = route("release", release_payload(repo, release, "published")).jobs
        delivery = Delivery(f"delivery-{release.id}", "release", "published", "0" * 64)
        await self.store.record_delivery(delivery, [spec])
        job = await self.store.claim("worker-1", 60)
        assert job is not None
        return job


@pytest_asyncio.fixture
async def kept(tmp_path: Path) -> AsyncIterator[Kept]:
    store = SqliteStore(tmp_path / "data" / "release-guard.sqlite3")
    await store.open()
    try:
        yield Kept(
            store,
            Retainer(
                BlobStore.from_url(f"file://{tmp_path / 'blobs'}", {}),
                store,
                RetentionPolicy(),
                spool_dir=tmp_path / "data" / "spool",
            ),
        )
    finally:
        await store.close()


# --- immutable releases ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_immutable_failing_release_gets_one_issue_and_an_honest_check_run(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = immutable_release(ghdouble)
    result, ctx = await run_job(github_app, repo, release)

    # Nothing was written to the release: no edit, no delete.
    assert not ghdouble.requests_to("PATCH", RELEASE)
    assert not ghdouble.requests_to("DELETE", "*")
    assert release.draft is False and len(repo.assets) == 1
    check = the_check_run(repo)
    assert (check.head_sha, check.conclusion) == (TAGGED, "failure")
    summary = check.output["summary"]
    assert check.output["title"].startswith("v1.0.0 is public and immutable: 1 error")
    assert "is public and immutable, and it fails** because its assets have 1 error" in summary
    assert "moved back to draft**" not in summary and "Grant the App" not in summary
    assert "publish a fixed version" in summary and "deprecate or yank" in summary
    assert "tag name can then never be used" in summary
    [number] = opened(repo)
    issue = repo.issues[number]
    assert f"[Issue {number}](https://github.com/octo-org/octo-lib/issues/{number})" in summary
    assert issue.title == "release-guard: release v1.0.0 is public and fails its scan"
    assert issue.user == f"{ghdouble.app_slug}[bot]"
    body = issue.body or ""
    assert body.startswith(MARKER.format(release_id=release.id))
    assert "`sourcemap/embedded-sources`" in body
    assert f"https://github.com/octo-org/octo-lib/runs/{check.id}" in body
    assert "published, immutable" in body
    assert result is not None and result.startswith("failure: v1.0.0 is public and immutable")
    [(message, data)] = ctx.events("blocking")
    assert "it is immutable" in message and data["action"] == "immutable"
    assert ctx.events("issue")[0][0].startswith(f"issue #{number} opened")


@pytest.mark.asyncio
async def test_retries_and_redeliveries_find_the_issue_instead_of_opening_another(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = immutable_release(ghdouble)
    await run_job(github_app, repo, release)
    # The worker was killed after the issue was opened and before the job was recorded done:
    # the job runs again from the start (a new attempt, the same check run), and so does a
    # redelivery of the event (a new job).
    _, again = await run_job(github_app, repo, release, ctx=FakeContext(attempt=2))
    _, redelivered = await run_job(github_app, repo, release)
    assert len(repo.issues) == 1
    assert len(ghdouble.requests_to("POST", ISSUES)) == 1
    [number] = opened(repo)
    for ctx in (again, redelivered):
        assert ctx.events("issue")[0][0].startswith(f"issue #{number} found, opened earlier")
    # The listing reads only what changed since the release existed.
    listings = ghdouble.requests_to("GET", ISSUES)
    assert listings and all("since" in r.query and r.query["state"] == "all" for r in listings)


@pytest.mark.asyncio
async def test_a_marker_pasted_by_someone_else_does_not_silence_the_issue(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = immutable_release(ghdouble)
    ghdouble.add_issue(repo, title="nothing to see", body=MARKER.format(release_id=release.id))
    await run_job(github_app, repo, release)
    assert len(repo.issues) == 2
    assert sum(i.user.endswith("[bot]") for i in repo.issues.values()) == 1


@pytest.mark.asyncio
async def test_a_5xx_after_the_issue_was_created_opens_no_second_one(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = immutable_release(ghdouble)
    # GitHub creates the issue, then answers 502: the POST is not repeated in place...
    ghdouble.faults.add("POST", ISSUES, ServerErrorAfter(502))
    ctx = FakeContext()
    with pytest.raises(RetryLater, match="not repeated"):
        await run_job(github_app, repo, release, ctx=ctx)
    assert len(repo.issues) == 1 and len(ghdouble.requests_to("POST", ISSUES)) == 1
    # ...and the retry finds it.
    ctx.attempt = 2
    await run_job(github_app, repo, release, ctx=ctx)
    assert len(repo.issues) == 1 and len(ghdouble.requests_to("POST", ISSUES)) == 1
    assert "found, opened earlier" in ctx.events("issue")[0][0]
    assert the_check_run(repo).conclusion == "failure"


@pytest.mark.asyncio
async def test_a_5xx_before_the_issue_was_created_is_retried_by_the_job(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = immutable_release(ghdouble)
    ghdouble.faults.add("POST", ISSUES, ServerError(503))
    with pytest.raises(RetryLater):
        await run_job(github_app, repo, release)
    assert not repo.issues
    await run_job(github_app, repo, release, ctx=FakeContext(attempt=2))
    assert len(repo.issues) == 1


@pytest.mark.asyncio
async def test_without_issues_write_the_check_run_says_the_issue_could_not_be_opened(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    permissions = {
        "actions": "read",
        "checks": "write",
        "contents": "write",
        "metadata": "read",
        "issues": "read",
    }
    installation = ghdouble.add_installation(account="octo-org", permissions=permissions)
    repo = ghdouble.add_repo("octo-org/octo-lib", installation=installation)
    repo.immutable_releases = True
    repo, release = published(ghdouble, LEAKY_TGZ, repo=repo)
    _, ctx = await run_job(github_app, repo, release)
    assert not repo.issues and release.draft is False
    check = the_check_run(repo)
    assert check.conclusion == "failure"
    assert (
        "could not open an issue about it: the App lacks `issues: write`"
        in (check.output["summary"])
    )
    assert "could not open the issue" in ctx.events("issue")[0][0]


@pytest.mark.asyncio
async def test_the_422_of_an_immutable_release_is_not_taken_for_a_missing_permission(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    # The release was made immutable after it was read (its GET still says mutable).
    repo, release = published(ghdouble, LEAKY_TGZ)
    refusal = {
        "message": "Validation Failed",
        "errors": [{"resource": "Release", "code": "custom", "message": IMMUTABLE_STATE}],
        "documentation_url": "https://docs.github.com/rest/releases/releases#update-a-release",
        "status": "422",
    }
    ghdouble.faults.add("PATCH", RELEASE, Respond(422, refusal))
    _, ctx = await run_job(github_app, repo, release)
    assert release.draft is False
    summary = the_check_run(repo).output["summary"]
    assert "is public and immutable, and it fails**" in summary
    assert "contents: write" not in summary and "moved back to draft**" not in summary
    assert ctx.events("blocking")[0][1]["action"] == "immutable"
    assert len(repo.issues) == 1


@pytest.mark.asyncio
async def test_the_double_refuses_to_draft_an_immutable_release(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = immutable_release(ghdouble)
    gh = await github_app.installation(repo.installation_id)
    with pytest.raises(Exception, match=IMMUTABLE_STATE):
        await gh.patch(f"/repos/{repo.full_name}/releases/{release.id}", data={"draft": True})
    assert release.draft is False
    # Its title and notes may still change.
    await gh.patch(f"/repos/{repo.full_name}/releases/{release.id}", data={"name": "v1.0.0!"})
    assert release.name == "v1.0.0!"


# --- on_failure: issue, delete ---------------------------------------------------------------


@pytest.mark.asyncio
async def test_on_failure_issue_opens_the_issue_and_touches_nothing(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ)
    configure(ghdouble, repo, "issue")
    _, ctx = await run_job(github_app, repo, release)
    assert release.draft is False
    assert not ghdouble.requests_to("PATCH", RELEASE) and not ghdouble.requests_to("DELETE", "*")
    [number] = opened(repo)
    summary = the_check_run(repo).output["summary"]
    assert "`release.on_failure: issue` asks release-guard to open an issue" in summary
    assert f"[Issue {number}](" in summary
    assert ctx.events("blocking")[0][1]["action"] == "issue"


@pytest.mark.asyncio
async def test_on_failure_delete_retains_then_deletes_once(
    ghdouble: GitHubDouble, github_app: GitHubApp, kept: Kept
) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ)
    configure(ghdouble, repo, "delete")
    _, ctx = await run_job(github_app, repo, release, kept=kept)

    assert release.id not in repo.releases and repo.deleted_releases == [release]
    [delete] = ghdouble.requests_to("DELETE", RELEASE)
    # The failing asset was retained (stored and verified) before the delete was sent.
    [entry] = await kept.store.list_retained(RetainedFilter())
    assert (entry.artifact_name, entry.state) == ("octo-lib-1.0.0.tgz", RetainedState.KEPT)
    stages = [stage for stage, _, _ in ctx.stages]
    assert stages.index("blocking") > max(
        i for i, (stage, message, _) in enumerate(ctx.stages) if stage == "scanning"
    )
    check = the_check_run(repo)
    assert check.conclusion == "failure"
    assert check.output["title"].startswith("v1.0.0 deleted: 1 error")
    assert "was deleted** because its assets have 1 error" in check.output["summary"]
    assert "retained as `" in check.output["summary"]
    [(message, data)] = ctx.events("blocking")
    assert data["action"] == "delete" and "retained as" in message
    # A retry finds the release gone and deletes nothing more.
    result, _ = await run_job(github_app, repo, release, ctx=FakeContext(attempt=2))
    assert result == "release deleted: nothing to scan"
    assert len(ghdouble.requests_to("DELETE", RELEASE)) == 1
    assert delete.status == 204


@pytest.mark.asyncio
async def test_on_failure_delete_without_retention_deletes_nothing(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ)
    configure(ghdouble, repo, "delete")
    _, ctx = await run_job(github_app, repo, release)  # no retainer: nothing can be kept
    assert not ghdouble.requests_to("DELETE", "*") and release.id in repo.releases
    assert release.draft is True  # the default's revert instead
    summary = the_check_run(repo).output["summary"]
    assert "It was not deleted: `release.on_failure: delete` deletes a release only" in summary
    assert [d["action"] for _, d in ctx.events("blocking")] == ["none", "draft"]


@pytest.mark.asyncio
async def test_a_refused_delete_is_reported_and_falls_back(
    ghdouble: GitHubDouble, github_app: GitHubApp, kept: Kept
) -> None:
    repo, release = immutable_release(ghdouble)
    configure(ghdouble, repo, "delete")
    ghdouble.faults.add(
        "DELETE", RELEASE, Respond(403, {"message": "Resource not accessible by integration"})
    )
    _, ctx = await run_job(github_app, repo, release, kept=kept)
    assert release.id in repo.releases and release.draft is False
    assert [d["action"] for _, d in ctx.events("blocking")] == ["failed", "immutable"]
    assert "could not be deleted" in ctx.events("blocking")[0][0]
    summary = the_check_run(repo).output["summary"]
    assert "It could not be deleted (DELETE " in summary and len(repo.issues) == 1
    assert "Resource not accessible by integration" in summary


# --- faults ----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_published_release_whose_tag_is_not_seen_yet_is_retried(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo("octo-org/octo-lib")
    release = ghdouble.add_release(repo, tag_name="v2.0.0", target_commitish="no-such-branch")
    ghdouble.add_asset(repo, release, name="octo-lib-2.0.0.tgz", data=LEAKY_TGZ)
    with pytest.raises(RetryLater, match="not found yet"):
        await run_job(github_app, repo, release)
    # On the last attempt it is said in the audit trail, never passed silently.
    result, ctx = await run_job(github_app, repo, release, ctx=FakeContext(last_attempt=True))
    assert result == "no commit to report on"
    assert "name no commit" in ctx.events("resolving")[0][0]


@pytest.mark.asyncio
async def test_a_release_deleted_between_attempts_completes_the_check_run(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ)
    ghdouble.faults.add("GET", "/repos/*/releases/*/assets", ServerError(502), times=5)
    ctx = FakeContext()
    with pytest.raises(RetryLater):
        await run_job(github_app, repo, release, ctx=ctx)
    del repo.releases[release.id]
    result, _ = await run_job(github_app, repo, release, ctx=ctx)
    assert result == "release deleted: nothing to scan"
    check = the_check_run(repo)
    assert (check.status, check.conclusion) == ("completed", "neutral")
    assert check.output["title"] == "Release deleted"


@pytest.mark.asyncio
async def test_issues_turned_off_are_said_in_the_check_run(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = immutable_release(ghdouble)
    # GitHub answers 410 when the repository has issues turned off.
    ghdouble.faults.add(
        "GET", ISSUES, Respond(410, {"message": "Issues are disabled for this repo"})
    )
    _, ctx = await run_job(github_app, repo, release)
    assert not repo.issues and not ghdouble.requests_to("POST", ISSUES)
    check = the_check_run(repo)
    assert check.conclusion == "failure"
    summary = check.output["summary"]
    assert "release-guard could not open an issue about it (" in summary
    assert "Issues are disabled for this repo" in summary
    assert "is public and immutable" in summary
    assert "Issues are disabled" in ctx.events("issue")[0][0]


@pytest.mark.asyncio
async def test_a_404_on_the_draft_edit_is_reported_never_claimed(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = published(ghdouble, LEAKY_TGZ)
    ghdouble.faults.add("PATCH", RELEASE, Respond(404, {"message": "Not Found"}))
    _, ctx = await run_job(github_app, repo, release)
    assert release.draft is False
    summary = the_check_run(repo).output["summary"]
    assert "could not move it back to draft" in summary
    assert "moved back to draft**" not in summary
    assert ctx.events("blocking")[0][1]["action"] == "failed"
    assert len(repo.issues) == 1  # it stays public: the maintainers are told in an issue


@pytest.mark.asyncio
async def test_a_release_deleted_while_its_job_ran_is_left_deleted(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo, release = immutable_release(ghdouble)
    gh = await github_app.installation(repo.installation_id)
    seen = await get_release(gh, repo.full_name, release.id)  # what the job read at its start
    assert seen is not None and seen.immutable
    del repo.releases[release.id]  # deleted by a maintainer during the scan
    ctx = FakeContext()
    job = job_from("release", release_payload(repo, release, "published"))
    blocked = await Blocker(gh, job, ctx, creator="release-guard[bot]").block(
        seen, OnFailure.DRAFT, Failing(why="its assets have 1 error-level finding", findings="-")
    )
    assert "it has been deleted since" in blocked.lead
    assert not repo.issues and not ghdouble.requests_to("PATCH", RELEASE)
    assert ctx.events("blocking")[0][1]["action"] == "none"
