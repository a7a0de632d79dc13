"""bot.github.auth: the App's JWT, and installation tokens cached, shared and refreshed."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import jwt
import pytest

from bot.double.faults import Respond, ServerError, Slow
from bot.double.helpers import SleepRecorder
from bot.double.server import GitHubDouble
from bot.github import (
    AuthenticationFailed,
    GitHubApp,
    GitHubError,
    GitHubUnavailable,
    InstallationToken,
    NotFound,
    RetryPolicy,
    TokenCache,
    app_jwt,
)
from bot.github.auth import JWT_BACKDATE, JWT_LIFETIME
from bot.secrets import PrivateKey, Secret

pytest_plugins = ["tests.ghdouble.fixtures"]


def decode(token: str, public_key: bytes) -> dict[str, int | str]:
    claims: dict[str, int | str] = jwt.decode(
        token, public_key, algorithms=["RS256"], options={"verify_exp": False}
    )
    return claims


# --- the App's JWT -----------------------------------------------------------------------


def test_jwt_claims_are_backdated_and_inside_ten_minutes(
    app_keypair: tuple[PrivateKey, bytes],
) -> None:
    private_key, public_key = app_keypair
    now = 1_700_000_000.0
    token = app_jwt(app_id=4242, private_key=private_key, now=now)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = decode(token, public_key)
    assert claims == {"iat": 1_700_000_000 - 60, "exp": 1_700_000_000 - 60 + 540, "iss": "4242"}
    assert JWT_BACKDATE == 60
    assert int(claims["exp"]) - now <= 600


def test_jwt_uses_the_real_clock_by_default(app_keypair: tuple[PrivateKey, bytes]) -> None:
    private_key, public_key = app_keypair
    before = int(time.time())
    claims = decode(app_jwt(app_id=1, private_key=private_key), public_key)
    issued, expires = int(claims["iat"]), int(claims["exp"])
    assert before - JWT_BACKDATE <= issued <= int(time.time()) - JWT_BACKDATE
    assert expires == issued + JWT_LIFETIME


@pytest.mark.asyncio
@pytest.mark.parametrize("skew", [-55.0, 0.0, 55.0, 300.0])
async def test_backdated_jwt_survives_clock_drift(
    ghdouble: GitHubDouble, github_app: GitHubApp, skew: float
) -> None:
    """GitHub's clock may be behind ours by up to the 60 s backdating, or ahead by minutes."""
    ghdouble.clock_skew = skew
    assert await github_app.slug() == ghdouble.app_slug


@pytest.mark.asyncio
async def test_jwt_without_backdating_fails_when_github_is_behind(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession
) -> None:
    """What the 60 s buys: an `iat` of "now" is in GitHub's future when its clock lags."""
    ghdouble.clock_skew = -30.0
    now = int(time.time())
    naive = jwt.encode(
        {"iat": now, "exp": now + 540, "iss": str(ghdouble.app_id)},
        ghdouble.private_key.reveal(),
        algorithm="RS256",
    )
    async with github_session.get(
        f"{ghdouble.api_url}/app", headers={"Authorization": f"Bearer {naive}"}
    ) as response:
        assert response.status == 401
        assert "'Issued at' claim ('iat')" in (await response.json())["message"]
    backdated = app_jwt(app_id=ghdouble.app_id, private_key=ghdouble.private_key)
    async with github_session.get(
        f"{ghdouble.api_url}/app", headers={"Authorization": f"Bearer {backdated}"}
    ) as response:
        assert response.status == 200


@pytest.mark.asyncio
async def test_jwt_refused_is_authentication_failed_without_retry(
    ghdouble: GitHubDouble, github_app: GitHubApp, recorded_sleep: SleepRecorder
) -> None:
    ghdouble.clock_skew = -120.0  # our clock two minutes ahead of GitHub's
    with pytest.raises(AuthenticationFailed) as caught:
        await github_app.slug()
    assert caught.value.status_code == 401
    assert "clock" in str(caught.value)
    assert len(ghdouble.requests_to("GET", "/app")) == 1
    assert recorded_sleep.delays == []


# --- installation tokens -----------------------------------------------------------------


@pytest.mark.asyncio
async def test_token_is_minted_once_and_reused(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo("octo-org/octo-repo")
    run = ghdouble.add_run(repo)
    for _ in range(3):
        gh = await github_app.installation(repo.installation_id or 0)
        await gh.getitem(f"/repos/octo-org/octo-repo/actions/runs/{run.id}")
    assert ghdouble.tokens_issued == [repo.installation_id]
    mint = ghdouble.requests_to("POST", "/app/installations/{installation_id}/access_tokens")
    assert [r.auth for r in mint] == ["jwt"]
    assert mint[0].json == {}


@pytest.mark.asyncio
async def test_token_is_refreshed_shortly_before_it_expires(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession
) -> None:
    fake_now = [time.time()]
    app = GitHubApp(
        app_id=ghdouble.app_id,
        private_key=ghdouble.private_key,
        api_url=ghdouble.api_url,
        session=github_session,
        clock=lambda: fake_now[0],
    )
    repo = ghdouble.add_repo()
    installation_id = repo.installation_id or 0
    first = await app.tokens.get(installation_id)
    fake_now[0] += 3600 - 300 - 5  # 5 s before the 5-minute margin: still reused
    assert await app.tokens.get(installation_id) == first
    fake_now[0] += 10  # inside the margin: a new token
    second = await app.tokens.get(installation_id)
    assert second != first
    assert ghdouble.tokens_issued == [installation_id, installation_id]


@pytest.mark.asyncio
async def test_twenty_concurrent_callers_share_one_refresh(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo)
    ghdouble.faults.add("POST", "/app/installations/*/access_tokens", Slow(0.2))
    gh = github_app.installation_client(repo.installation_id or 0)
    results = await asyncio.gather(
        *(gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}") for _ in range(20))
    )
    assert {r["id"] for r in results} == {run.id}
    assert ghdouble.tokens_issued == [repo.installation_id]
    assert len(ghdouble.requests_to("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}")) == 20


@pytest.mark.asyncio
async def test_a_failed_refresh_fails_its_waiters_without_a_stampede(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession, recorded_sleep: SleepRecorder
) -> None:
    app = GitHubApp(
        app_id=ghdouble.app_id,
        private_key=ghdouble.private_key,
        api_url=ghdouble.api_url,
        session=github_session,
        sleep=recorded_sleep,
        policy=RetryPolicy(max_attempts=3),
    )
    repo = ghdouble.add_repo()
    ghdouble.faults.add("POST", "/app/installations/*/access_tokens", ServerError(503), times=3)
    outcomes = await asyncio.gather(
        *(app.tokens.get(repo.installation_id or 0) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(o, GitHubUnavailable) for o in outcomes)
    assert len(ghdouble.requests_to("POST", "/app/installations/*/access_tokens")) == 3
    # The next caller, after the failure, tries again (and now succeeds).
    assert await app.tokens.get(repo.installation_id or 0)


@pytest.mark.asyncio
async def test_401_refreshes_the_token_and_retries_once(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo)
    gh = await github_app.installation(repo.installation_id or 0)
    ghdouble.revoke_tokens()  # revoked (or expired early) on GitHub's side
    data = await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}")
    assert data["id"] == run.id
    assert len(ghdouble.tokens_issued) == 2
    statuses = [r.status for r in ghdouble.requests_to("GET", "/repos/*")]
    assert statuses == [401, 200]


@pytest.mark.asyncio
async def test_token_expired_at_github_is_replaced(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession
) -> None:
    """A token GitHub already let expire (margin 0, 1-second TTL) costs one 401, no error."""
    ghdouble.token_ttl = 1.0
    app = GitHubApp(
        app_id=ghdouble.app_id,
        private_key=ghdouble.private_key,
        api_url=ghdouble.api_url,
        session=github_session,
        token_margin=0.0,
    )
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo)
    gh = await app.installation(repo.installation_id or 0)
    ghdouble.token_ttl = 3600.0
    ghdouble.clock_skew = 2.0  # on GitHub's side the first token is now expired
    assert (await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}"))["id"] == run.id
    assert len(ghdouble.tokens_issued) == 2


@pytest.mark.asyncio
async def test_second_401_gives_up(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    repo = ghdouble.add_repo()
    run = ghdouble.add_run(repo)
    bad = Respond(401, {"message": "Bad credentials", "documentation_url": "x"})
    ghdouble.faults.add("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", bad, times=3)
    gh = github_app.installation_client(repo.installation_id or 0)
    with pytest.raises(AuthenticationFailed) as caught:
        await gh.getitem(f"/repos/{repo.full_name}/actions/runs/{run.id}")
    assert caught.value.status_code == 401
    assert len(ghdouble.requests_to("GET", "/repos/*")) == 2
    assert len(ghdouble.tokens_issued) == 2


@pytest.mark.asyncio
async def test_a_token_is_only_used_for_its_installation(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    mine = ghdouble.add_repo("alpha/app")
    theirs = ghdouble.add_repo("beta/app")
    run = ghdouble.add_run(theirs)
    gh = await github_app.installation(mine.installation_id or 0)
    with pytest.raises(NotFound):
        await gh.getitem(f"/repos/beta/app/actions/runs/{run.id}")
    sent = ghdouble.requests_to("GET", "/repos/beta/app/*")
    assert [r.installation_id for r in sent] == [mine.installation_id]
    assert ghdouble.tokens_issued == [mine.installation_id]


# --- the cache on its own ----------------------------------------------------------------


def token(installation_id: int, value: str, expires_at: float) -> InstallationToken:
    return InstallationToken(installation_id, Secret(value), expires_at)


@pytest.mark.asyncio
async def test_invalidate_ignores_a_stale_token() -> None:
    minted: list[str] = []

    async def mint(installation_id: int) -> InstallationToken:
        minted.append(f"t{len(minted)}")
        return token(installation_id, minted[-1], time.time() + 3600)

    cache = TokenCache(mint)
    old = await cache.get(7)
    cache.invalidate(7)
    new = await cache.get(7)
    assert (old, new) == (Secret("t0"), Secret("t1"))
    cache.invalidate(7, token=old)  # a late 401 for the old token
    assert await cache.get(7) == new
    cache.invalidate(7, token=new)
    assert await cache.get(7) == Secret("t2")


@pytest.mark.asyncio
async def test_cache_refuses_a_token_minted_for_another_installation() -> None:
    async def mint(installation_id: int) -> InstallationToken:
        return token(installation_id + 1, "x", time.time() + 3600)

    with pytest.raises(GitHubError, match="installation 8"):
        await TokenCache(mint).get(7)


def test_token_answer_without_expiry_is_an_error() -> None:
    with pytest.raises(GitHubError):
        InstallationToken.from_response(1, {"token": "ghs_x"})
    with pytest.raises(GitHubError):
        InstallationToken.from_response(1, {"token": "", "expires_at": "2030-01-01T00:00:00Z"})
    parsed = InstallationToken.from_response(
        1, {"token": "ghs_x", "expires_at": "2030-01-01T00:00:00Z", "permissions": {"a": "read"}}
    )
    assert parsed.expires_at == 1893456000.0
    assert "ghs_x" not in repr(parsed)
