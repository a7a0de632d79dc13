"""bot.github.client: requests, pagination, retries, rate limits, downloads and errors."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest

from bot.double.faults import (
    ConnectionReset,
    PrimaryRateLimit,
    SecondaryRateLimit,
    ServerError,
    Slow,
    too_many_requests,
)
from bot.double.helpers import SleepRecorder
from bot.double.server import GitHubDouble
from bot.double.state import Repository, WorkflowRun
from bot.github import (
    ArtifactGone,
    DownloadTooLarge,
    GitHubApp,
    GitHubClient,
    GitHubError,
    GitHubUnavailable,
    NotFound,
    PermissionMissing,
    RateLimited,
    RetryPolicy,
    ValidationFailed,
)
from bot.github import permissions as github_permissions
from bot.github.retry import Transient, Trouble, backoff, classify

pytest_plugins = ["tests.ghdouble.fixtures"]

RUN_ROUTE = "/repos/{owner}/{repo}/actions/runs/{run_id}"
ARTIFACTS_ROUTE = "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts"


def make_app(
    ghdouble: GitHubDouble,
    session: aiohttp.ClientSession,
    sleep: SleepRecorder,
    policy: RetryPolicy,
) -> GitHubApp:
    return GitHubApp(
        app_id=ghdouble.app_id,
        private_key=ghdouble.private_key,
        api_url=ghdouble.api_url,
        session=session,
        sleep=sleep,
        policy=policy,
    )


async def setup_run(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> tuple[GitHubClient, Repository, WorkflowRun]:
    repo = ghdouble.add_repo("octo-org/octo-repo")
    run = ghdouble.add_run(repo, head_sha="a" * 40)
    gh = await github_app.installation(repo.installation_id or 0)
    return gh, repo, run


# --- requests and pagination --------------------------------------------------------------


@pytest.mark.asyncio
async def test_getitem_with_uri_template(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    ghdouble.add_run(repo, head_sha="b" * 40)
    data = await gh.getitem(
        "/repos/{owner}/{repo}/actions/runs{?head_sha}",
        {"owner": "octo-org", "repo": "octo-repo", "head_sha": "a" * 40},
    )
    assert [r["id"] for r in data["workflow_runs"]] == [run.id]
    (sent,) = ghdouble.requests_to("GET", "/repos/{owner}/{repo}/actions/runs")
    assert sent.query == {"head_sha": "a" * 40}
    assert sent.headers["x-github-api-version"] == "2022-11-28"
    assert sent.headers["Authorization"] == "<redacted>"


@pytest.mark.asyncio
async def test_getiter_follows_link_headers(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    for index in range(5):
        ghdouble.add_artifact(repo, run, name=f"dist-{index}", data=b"PK")
    names = [
        artifact["name"]
        async for artifact in gh.getiter(
            f"/repos/{repo.full_name}/actions/runs/{run.id}/artifacts?per_page=2",
            iterable_key="artifacts",
        )
    ]
    assert names == [f"dist-{i}" for i in range(5)]
    pages = [r.query.get("page") for r in ghdouble.requests_to("GET", ARTIFACTS_ROUTE)]
    assert pages == [None, "2", "3"]


@pytest.mark.asyncio
async def test_post_and_patch_a_check_run(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    created = await gh.post(
        "/repos/{owner}/{repo}/check-runs",
        {"owner": repo.owner, "repo": repo.name},
        data={"name": "release-guard", "head_sha": run.head_sha, "status": "in_progress"},
    )
    annotation = {
        "path": "dist/app.js.map",
        "start_line": 1,
        "end_line": 1,
        "annotation_level": "failure",
        "message": "source map with sources",
    }
    updated = await gh.patch(
        f"/repos/{repo.full_name}/check-runs/{created['id']}",
        data={
            "conclusion": "failure",
            "output": {"title": "1 error", "summary": "…", "annotations": [annotation]},
        },
    )
    assert updated["status"] == "completed"
    assert updated["output"]["annotations_count"] == 1
    assert repo.check_runs[created["id"]].annotations == [annotation]


# --- errors by type -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_missing_resource_is_not_found(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    gh, repo, _ = await setup_run(ghdouble, github_app)
    with pytest.raises(NotFound) as caught:
        await gh.getitem(f"/repos/{repo.full_name}/actions/runs/999999")
    assert caught.value.status_code == 404
    assert caught.value.path == f"/repos/{repo.full_name}/actions/runs/999999"


@pytest.mark.asyncio
async def test_missing_permission_is_named(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    installation = ghdouble.add_installation(permissions={"actions": "read", "checks": "read"})
    repo = ghdouble.add_repo("octo-org/locked", installation=installation)
    gh = await github_app.installation(installation.id)
    with pytest.raises(PermissionMissing) as caught:
        await gh.post(
            f"/repos/{repo.full_name}/check-runs", data={"name": "release-guard", "head_sha": "a"}
        )
    assert caught.value.permission == "checks: write"
    assert "checks: write" in str(caught.value)
    assert "Resource not accessible by integration" in str(caught.value)


def test_permission_guess_without_the_header() -> None:
    guess = github_permissions.required_permission
    assert guess("POST", "/repos/o/r/check-runs", {}) == "checks: write"
    assert guess("GET", "/repos/o/r/actions/runs/1/artifacts", {}) == "actions: read"
    assert guess("GET", "/repos/o/r/contents/a/b.yml", {}) == "contents: read"
    assert guess("PATCH", "/repos/o/r/releases/5", {}) == "contents: write"
    assert guess("GET", "/somewhere/else", {}) is None
    header = {"x-accepted-github-permissions": "issues=write; pull_requests=write"}
    assert guess("POST", "/x", header) == "issues: write or pull_requests: write"


@pytest.mark.asyncio
async def test_unprocessable_is_validation_failed(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    with pytest.raises(ValidationFailed) as caught:
        await gh.post(
            f"/repos/{repo.full_name}/check-runs",
            data={"name": "release-guard", "head_sha": run.head_sha, "status": "completed"},
        )
    assert caught.value.status_code == 422
    assert "conclusion" in str(caught.value)


@pytest.mark.asyncio
async def test_credentials_never_leave_the_api_host(github_app: GitHubApp) -> None:
    gh = github_app.installation_client(1)
    with pytest.raises(GitHubError, match="refusing to send"):
        await gh.getitem("http://203.0.113.9/repos/o/r")


@pytest.mark.asyncio
async def test_a_session_with_its_own_credentials_is_refused(
    ghdouble: GitHubDouble,
) -> None:
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer nope"}) as session:
        with pytest.raises(ValueError, match="credentials"):
            GitHubApp(
                app_id=1, private_key=ghdouble.private_key, api_url="http://x", session=session
            )


# --- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
@pytest.mark.asyncio
async def test_server_errors_are_retried_with_backoff(
    ghdouble: GitHubDouble, github_app: GitHubApp, recorded_sleep: SleepRecorder, status: int
) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    ghdouble.faults.add("GET", RUN_ROUTE, ServerError(status), times=2)
    assert (await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}"))["id"] == run.id
    assert [r.status for r in ghdouble.requests_to("GET", RUN_ROUTE)] == [status, status, 200]
    assert len(recorded_sleep.delays) == 2
    policy = RetryPolicy()
    assert 0 <= recorded_sleep.delays[0] <= policy.backoff_base
    assert 0 <= recorded_sleep.delays[1] <= policy.backoff_base * 2


@pytest.mark.asyncio
async def test_server_errors_give_up_after_max_attempts(
    ghdouble: GitHubDouble, github_app: GitHubApp, recorded_sleep: SleepRecorder
) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    ghdouble.faults.add("GET", RUN_ROUTE, ServerError(502), times=10)
    with pytest.raises(GitHubUnavailable) as caught:
        await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}")
    assert caught.value.status_code == 502
    assert "5 attempts" in str(caught.value)
    assert len(ghdouble.requests_to("GET", RUN_ROUTE)) == 5
    assert len(recorded_sleep.delays) == 4


def test_backoff_is_exponential_capped_and_jittered() -> None:
    import random

    policy = RetryPolicy(backoff_base=1.0, backoff_max=5.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        delays = {backoff(attempt, policy, rng) for _ in range(50)}
        assert all(0 <= d <= ceiling for d in delays)
        assert len(delays) > 40  # jittered


@pytest.mark.asyncio
async def test_connection_resets_are_retried(
    ghdouble: GitHubDouble, github_app: GitHubApp, recorded_sleep: SleepRecorder
) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    ghdouble.faults.add("POST", "/repos/{owner}/{repo}/check-runs", ConnectionReset())
    created = await gh.post(
        f"/repos/{repo.full_name}/check-runs",
        data={"name": "release-guard", "head_sha": run.head_sha},
    )
    assert created["name"] == "release-guard"
    assert len(ghdouble.requests_to("POST", "/repos/{owner}/{repo}/check-runs")) == 2
    assert len(recorded_sleep.delays) == 1


@pytest.mark.asyncio
async def test_connection_resets_give_up_as_unavailable(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession, recorded_sleep: SleepRecorder
) -> None:
    app = make_app(ghdouble, github_session, recorded_sleep, RetryPolicy(max_attempts=3))
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo)
    gh = await app.installation(repo.installation_id or 0)
    ghdouble.faults.add("POST", "/repos/{owner}/{repo}/check-runs", ConnectionReset(), times=3)
    with pytest.raises(GitHubUnavailable, match="connection error") as caught:
        await gh.post(
            f"/repos/{repo.full_name}/check-runs",
            data={"name": "release-guard", "head_sha": run.head_sha},
        )
    assert isinstance(caught.value.__cause__, aiohttp.ClientConnectionError)
    assert caught.value.status_code is None
    assert len(recorded_sleep.delays) == 2


@pytest.mark.asyncio
async def test_slow_answers_time_out_and_are_retried(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession, recorded_sleep: SleepRecorder
) -> None:
    app = make_app(
        ghdouble, github_session, recorded_sleep, RetryPolicy(timeout=0.2, max_attempts=2)
    )
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo)
    gh = await app.installation(repo.installation_id or 0)
    ghdouble.faults.add("GET", RUN_ROUTE, Slow(0.6))
    assert (await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}"))["id"] == run.id
    ghdouble.faults.add("GET", RUN_ROUTE, Slow(0.6), times=2)
    with pytest.raises(GitHubUnavailable, match="timeout"):
        await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}")


# --- rate limits --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (SecondaryRateLimit(retry_after=7), [7.0]),
        (too_many_requests(retry_after=3), [3.0]),
        (SecondaryRateLimit(retry_after=None), [60.0]),  # "wait at least one minute"
    ],
)
@pytest.mark.asyncio
async def test_secondary_rate_limit_waits_as_asked(
    ghdouble: GitHubDouble,
    github_app: GitHubApp,
    recorded_sleep: SleepRecorder,
    fault: SecondaryRateLimit,
    expected: list[float],
) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    ghdouble.faults.add("GET", RUN_ROUTE, fault)
    assert (await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}"))["id"] == run.id
    assert recorded_sleep.delays == expected


@pytest.mark.asyncio
async def test_repeated_secondary_limits_back_off_then_give_up(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession, recorded_sleep: SleepRecorder
) -> None:
    app = make_app(ghdouble, github_session, recorded_sleep, RetryPolicy(max_wait=200.0))
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo)
    gh = await app.installation(repo.installation_id or 0)
    ghdouble.faults.add("GET", RUN_ROUTE, SecondaryRateLimit(retry_after=None), times=5)
    with pytest.raises(RateLimited) as caught:
        await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}")
    assert recorded_sleep.delays == [60.0, 120.0]  # the third would be 240 s > max_wait
    assert caught.value.retry_after == 240.0
    assert caught.value.status_code == 403


@pytest.mark.asyncio
async def test_rate_limit_retries_are_bounded_by_max_attempts(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession, recorded_sleep: SleepRecorder
) -> None:
    app = make_app(ghdouble, github_session, recorded_sleep, RetryPolicy(max_attempts=3))
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo)
    gh = await app.installation(repo.installation_id or 0)
    ghdouble.faults.add("GET", RUN_ROUTE, too_many_requests(retry_after=1), times=3)
    with pytest.raises(RateLimited, match="after 3 attempts") as caught:
        await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}")
    assert caught.value.retry_after == 1.0
    assert recorded_sleep.delays == [1.0, 1.0]
    assert len(ghdouble.requests_to("GET", RUN_ROUTE)) == 3


@pytest.mark.asyncio
async def test_retry_after_beyond_the_cap_is_raised_at_once(
    ghdouble: GitHubDouble, github_app: GitHubApp, recorded_sleep: SleepRecorder
) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    ghdouble.faults.add("GET", RUN_ROUTE, SecondaryRateLimit(retry_after=3600))
    with pytest.raises(RateLimited) as caught:
        await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}")
    assert caught.value.retry_after == 3600.0
    assert recorded_sleep.delays == []


@pytest.mark.asyncio
async def test_primary_rate_limit_waits_until_reset(
    ghdouble: GitHubDouble, github_app: GitHubApp, recorded_sleep: SleepRecorder
) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    ghdouble.faults.add("GET", RUN_ROUTE, PrimaryRateLimit(reset_in=30))
    assert (await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}"))["id"] == run.id
    (delay,) = recorded_sleep.delays
    assert 29.0 <= delay <= 32.0


@pytest.mark.asyncio
async def test_primary_rate_limit_far_away_is_raised(
    ghdouble: GitHubDouble, github_app: GitHubApp, recorded_sleep: SleepRecorder
) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    ghdouble.faults.add("GET", RUN_ROUTE, PrimaryRateLimit(reset_in=1800))
    with pytest.raises(RateLimited, match="primary rate limit") as caught:
        await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}")
    assert 1790 <= caught.value.retry_after <= 1802
    assert recorded_sleep.delays == []
    assert github_app.rate_limits.remaining(repo.installation_id) == 0


def test_classify_reads_github_signals() -> None:
    now = 1000.0
    assert classify(200, {}, None, now=now) is None
    assert classify(404, {}, None, now=now) is None
    assert classify(403, {}, "Resource not accessible by integration", now=now) is None
    assert classify(501, {}, None, now=now) is None
    assert classify(503, {}, None, now=now) == Transient(Trouble.SERVER_ERROR)
    primary = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1010"}
    assert classify(403, primary, None, now=now) == Transient(Trouble.PRIMARY_RATE_LIMIT, 11.0)
    assert classify(429, {"retry-after": "5"}, None, now=now) == Transient(
        Trouble.SECONDARY_RATE_LIMIT, 5.0
    )
    message = "You have exceeded a SECONDARY RATE LIMIT."
    assert classify(403, {}, message, now=now) == Transient(Trouble.SECONDARY_RATE_LIMIT)


@pytest.mark.asyncio
async def test_rate_limit_headers_are_tracked_per_installation(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}")
    await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}")
    state = github_app.rate_limits.get(repo.installation_id)
    assert state is not None
    assert (state.limit, state.remaining, state.resource) == (5000, 4998, "core")
    app_state = github_app.rate_limits.get(None)  # the JWT call that minted the token
    assert app_state is not None and app_state.remaining == 4999
    assert set(github_app.rate_limits.snapshot()) == {None, repo.installation_id}


# --- downloads ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_download_follows_the_redirect_without_authorization(
    ghdouble: GitHubDouble, github_app: GitHubApp, tmp_path: Path
) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    payload = b"PK\x03\x04" + bytes(range(256)) * 400
    artifact = ghdouble.add_artifact(repo, run, name="dist", data=payload)
    dest = tmp_path / "dist.zip"
    size = await gh.download(
        f"/repos/{repo.full_name}/actions/artifacts/{artifact.id}/zip", dest, max_bytes=1 << 20
    )
    assert size == len(payload)
    assert dest.read_bytes() == payload
    (api,) = ghdouble.requests_to("GET", "/repos/*/zip")
    (stored,) = ghdouble.requests_to("GET", "*", host="storage")
    assert api.status == 302 and api.had_authorization
    assert stored.status == 200 and not stored.had_authorization
    assert list(tmp_path.iterdir()) == [dest]


@pytest.mark.asyncio
async def test_storage_host_refuses_a_forwarded_token(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession
) -> None:
    repo = ghdouble.add_repo()
    artifact = ghdouble.add_artifact(repo, ghdouble.add_run(repo), name="dist", data=b"PK")
    url = ghdouble.storage.signed_url(f"artifact-{artifact.id}")
    headers = {"Authorization": "Bearer ghs_whatever"}
    async with github_session.get(url, headers=headers) as response:
        assert response.status == 400
        assert "Only one auth mechanism allowed" in await response.text()
    async with github_session.get(url) as response:
        assert response.status == 200


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.asyncio
async def test_download_over_max_bytes_leaves_nothing(
    ghdouble: GitHubDouble, github_app: GitHubApp, tmp_path: Path, chunked: bool
) -> None:
    ghdouble.storage.chunked = chunked  # without Content-Length, the stream itself is cut
    gh, repo, run = await setup_run(ghdouble, github_app)
    artifact = ghdouble.add_artifact(repo, run, name="big", data=b"x" * 200_000)
    dest = tmp_path / "big.zip"
    with pytest.raises(DownloadTooLarge) as caught:
        await gh.download(
            f"/repos/{repo.full_name}/actions/artifacts/{artifact.id}/zip", dest, max_bytes=50_000
        )
    assert caught.value.max_bytes == 50_000
    assert "50000-byte limit" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("expired", [True, False])
@pytest.mark.asyncio
async def test_gone_artifact_is_artifact_gone(
    ghdouble: GitHubDouble, github_app: GitHubApp, tmp_path: Path, expired: bool
) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    artifact = ghdouble.add_artifact(repo, run, name="old", data=b"PK", expired=expired)
    if not expired:
        del repo.artifacts[artifact.id]  # deleted: 404
    with pytest.raises(ArtifactGone) as caught:
        await gh.download(
            f"/repos/{repo.full_name}/actions/artifacts/{artifact.id}/zip",
            tmp_path / "old.zip",
            max_bytes=1000,
        )
    assert caught.value.status_code == (410 if expired else 404)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.asyncio
async def test_download_retries_a_failing_storage_host(
    ghdouble: GitHubDouble, github_app: GitHubApp, recorded_sleep: SleepRecorder, tmp_path: Path
) -> None:
    gh, repo, run = await setup_run(ghdouble, github_app)
    artifact = ghdouble.add_artifact(repo, run, name="dist", data=b"PK-bytes")
    ghdouble.storage_faults.add("GET", "/blobs/*", ServerError(503))
    ghdouble.faults.add("GET", "/repos/*/zip", ServerError(502))
    size = await gh.download(
        f"/repos/{repo.full_name}/actions/artifacts/{artifact.id}/zip",
        tmp_path / "d.zip",
        max_bytes=100,
    )
    assert size == len(b"PK-bytes")
    assert len(recorded_sleep.delays) == 2


@pytest.mark.asyncio
async def test_download_a_release_asset(
    ghdouble: GitHubDouble, github_app: GitHubApp, tmp_path: Path
) -> None:
    gh, repo, _ = await setup_run(ghdouble, github_app)
    release = ghdouble.add_release(repo, tag_name="v1.0.0")
    asset = ghdouble.add_asset(repo, release, name="pkg.tgz", data=b"\x1f\x8b tarball")
    dest = tmp_path / "pkg.tgz"
    await gh.download(f"/repos/{repo.full_name}/releases/assets/{asset.id}", dest, max_bytes=100)
    assert dest.read_bytes() == b"\x1f\x8b tarball"
    with pytest.raises(GitHubError, match="application/octet-stream"):
        await gh.download(
            f"/repos/{repo.full_name}/releases/assets/{asset.id}",
            tmp_path / "meta",
            max_bytes=100_000,
            accept="application/vnd.github+json",
        )


# --- secrets stay secret ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_no_secret_reaches_a_log_record_or_an_error(
    ghdouble: GitHubDouble,
    github_app: GitHubApp,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    gh, repo, run = await setup_run(ghdouble, github_app)
    errors: list[Exception] = []
    ghdouble.faults.add("GET", RUN_ROUTE, ServerError(502), SecondaryRateLimit(retry_after=1))
    await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}")
    ghdouble.revoke_tokens()  # forces a 401 and a refresh
    await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}")
    artifact = ghdouble.add_artifact(repo, run, name="a", data=b"x" * 1000)
    for call in (
        gh.getitem(f"/repos/{repo.full_name}/actions/runs/424242"),
        gh.download(
            f"/repos/{repo.full_name}/actions/artifacts/{artifact.id}/zip",
            tmp_path / "a",
            max_bytes=10,
        ),
    ):
        try:
            await call
        except GitHubError as exc:
            errors.append(exc)
    ghdouble.clock_skew = -600
    try:
        await github_app.tokens.get(ghdouble.add_repo("x/y").installation_id or 0)
    except GitHubError as exc:
        errors.append(exc)
    assert len(errors) == 3

    secrets = [*ghdouble.state.tokens, ghdouble.private_key.reveal().decode()]
    assert len(secrets) >= 3
    texts = [str(e) for e in errors] + [repr(e) for e in errors]
    for record in caplog.records:
        texts.append(record.getMessage())
        texts.extend(str(value) for value in vars(record).values())
    assert any("retrying" in t for t in texts)
    for text in texts:
        for secret in secrets:
            assert secret not in text
        assert "eyJ" not in text  # no JWT (base64 of '{"')
        assert "ghs_" not in text
        assert "PRIVATE KEY" not in text
