"""The rate-limit gate: rate limits shared between processes, so they back off together.

Two `GitHubApp`s on one gate stand for two worker processes on one shared store. Clocks are
frozen at the test's start and sleeps only record, so no test waits or measures time.
"""

from __future__ import annotations

import logging
import time

import aiohttp
import pytest

from bot.double.faults import PrimaryRateLimit, SecondaryRateLimit, too_many_requests
from bot.double.helpers import SleepRecorder
from bot.double.server import GitHubDouble
from bot.double.state import Repository, WorkflowRun
from bot.github import (
    GitHubApp,
    LocalRateLimitGate,
    RateLimited,
    RateLimitGate,
    RetryPolicy,
)

pytest_plugins = ["tests.ghdouble.fixtures"]

RUN_ROUTE = "/repos/{owner}/{repo}/actions/runs/{run_id}"


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class BrokenGate:
    """A gate whose store is down: every call raises."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def blocked_until(self, installation_id: int | None) -> float | None:
        self.calls.append("blocked_until")
        raise ConnectionError("the rate-limit store is down")

    async def block(self, installation_id: int | None, until: float, reason: str) -> None:
        self.calls.append("block")
        raise ConnectionError("the rate-limit store is down")


def make_app(
    ghdouble: GitHubDouble,
    session: aiohttp.ClientSession,
    *,
    gate: RateLimitGate | None,
    clock: FakeClock,
    sleep: SleepRecorder,
) -> GitHubApp:
    return GitHubApp(
        app_id=ghdouble.app_id,
        private_key=ghdouble.private_key,
        api_url=ghdouble.api_url,
        session=session,
        sleep=sleep,
        clock=clock,
        policy=RetryPolicy(timeout=5.0, max_wait=90.0),
        rate_limit_gate=gate,
    )


def repo_with_run(ghdouble: GitHubDouble, full_name: str) -> tuple[Repository, WorkflowRun]:
    repo = ghdouble.add_repo(full_name)
    return repo, ghdouble.add_run(repo)


def run_path(repo: Repository, run: WorkflowRun) -> str:
    return f"/repos/{repo.full_name}/actions/runs/{run.id}"


def installation_of(repo: Repository) -> int:
    assert repo.installation_id is not None
    return repo.installation_id


# --- LocalRateLimitGate -------------------------------------------------------------------


@pytest.mark.asyncio
async def test_local_gate_blocks_until_the_given_instant() -> None:
    clock = FakeClock(1000.0)
    gate = LocalRateLimitGate(clock=clock)
    assert await gate.blocked_until(7) is None
    await gate.block(7, 1060.0, "primary rate limit")
    assert await gate.blocked_until(7) == 1060.0
    assert gate.reason(7) == "primary rate limit"
    assert await gate.blocked_until(8) is None
    clock.now = 1059.0
    assert await gate.blocked_until(7) == 1060.0


@pytest.mark.asyncio
async def test_local_gate_keeps_the_later_block() -> None:
    gate = LocalRateLimitGate(clock=FakeClock(1000.0))
    await gate.block(7, 1300.0, "primary rate limit")
    await gate.block(7, 1060.0, "secondary rate limit")
    assert await gate.blocked_until(7) == 1300.0
    assert gate.reason(7) == "primary rate limit"
    await gate.block(7, 1500.0, "secondary rate limit")
    assert await gate.blocked_until(7) == 1500.0
    assert gate.reason(7) == "secondary rate limit"


@pytest.mark.asyncio
async def test_local_gate_drops_expired_blocks() -> None:
    clock = FakeClock(1000.0)
    gate = LocalRateLimitGate(clock=clock)
    await gate.block(7, 1060.0, "primary rate limit")
    await gate.block(8, 1200.0, "primary rate limit")
    await gate.block(9, 990.0, "already over")  # in the past: never kept
    assert len(gate) == 2
    clock.now = 1060.0
    assert await gate.blocked_until(7) is None
    assert gate.reason(7) is None
    assert await gate.blocked_until(8) == 1200.0
    assert len(gate) == 1
    clock.now = 5000.0
    assert len(gate) == 0


@pytest.mark.asyncio
async def test_local_gate_keeps_the_app_apart_from_installations() -> None:
    gate = LocalRateLimitGate(clock=FakeClock(1000.0))
    await gate.block(None, 1100.0, "primary rate limit")
    assert await gate.blocked_until(None) == 1100.0
    assert await gate.blocked_until(0) is None
    await gate.block(0, 1050.0, "primary rate limit")
    assert await gate.blocked_until(None) == 1100.0
    assert await gate.blocked_until(0) == 1050.0


def test_local_gate_is_a_rate_limit_gate() -> None:
    gate: RateLimitGate = LocalRateLimitGate()
    assert isinstance(gate, LocalRateLimitGate)


# --- two processes, one gate --------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_long_rate_limit_stops_every_app_sharing_the_gate(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession
) -> None:
    clock = FakeClock(time.time())
    gate = LocalRateLimitGate(clock=clock)
    first_sleep, second_sleep = SleepRecorder(), SleepRecorder()
    first = make_app(ghdouble, github_session, gate=gate, clock=clock, sleep=first_sleep)
    second = make_app(ghdouble, github_session, gate=gate, clock=clock, sleep=second_sleep)
    limited_repo, limited_run = repo_with_run(ghdouble, "octo-org/limited")
    other_repo, other_run = repo_with_run(ghdouble, "other-org/free")
    limited = installation_of(limited_repo)
    ghdouble.exhaust_rate_limit(ghdouble.installation_of(limited_repo), reset_in=1800)

    gh = await first.installation(limited)
    with pytest.raises(RateLimited, match="primary rate limit") as caught:
        await gh.getitem(run_path(limited_repo, limited_run))
    assert 1795 <= caught.value.retry_after <= 1805
    assert caught.value.status_code == 403
    until = await gate.blocked_until(limited)
    assert until == clock.now + caught.value.retry_after
    assert [r.status for r in ghdouble.requests if r.installation_id == limited] == [403]

    sent_before = len(ghdouble.requests)
    with pytest.raises(RateLimited, match="another request found installation") as held:
        await second.installation_client(limited).getitem(run_path(limited_repo, limited_run))
    assert held.value.retry_after == caught.value.retry_after
    assert held.value.status_code is None  # nothing was sent, so nothing answered
    # Not even a token was minted for it: the double received nothing at all.
    assert len(ghdouble.requests) == sent_before
    assert ghdouble.tokens_issued.count(limited) == 1
    assert first_sleep.delays == second_sleep.delays == []

    # The first process does not try again either.
    with pytest.raises(RateLimited, match="another request found installation"):
        await gh.getitem(run_path(limited_repo, limited_run))
    assert len(ghdouble.requests) == sent_before

    # Another installation is not affected, in either process.
    for app in (second, first):
        free = await app.installation(installation_of(other_repo))
        assert (await free.getitem(run_path(other_repo, other_run)))["id"] == other_run.id
    assert [r.status for r in ghdouble.requests_to("GET", RUN_ROUTE)][-2:] == [200, 200]
    assert [r.status for r in ghdouble.requests if r.installation_id == limited] == [403]


@pytest.mark.asyncio
async def test_a_short_block_is_waited_out_then_sent_once(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession, recorded_sleep: SleepRecorder
) -> None:
    clock = FakeClock(time.time())
    gate = LocalRateLimitGate(clock=clock)
    app = make_app(ghdouble, github_session, gate=gate, clock=clock, sleep=recorded_sleep)
    repo, run = repo_with_run(ghdouble, "octo-org/octo-repo")
    await gate.block(installation_of(repo), clock.now + 20.0, "secondary rate limit")

    gh = app.installation_client(installation_of(repo))
    assert (await gh.getitem(run_path(repo, run)))["id"] == run.id
    assert recorded_sleep.delays == [20.0]
    assert [r.status for r in ghdouble.requests_to("GET", RUN_ROUTE)] == [200]


@pytest.mark.asyncio
async def test_a_wait_in_place_is_shared_with_the_other_app(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession
) -> None:
    clock = FakeClock(time.time())
    gate = LocalRateLimitGate(clock=clock)
    first_sleep, second_sleep = SleepRecorder(), SleepRecorder()
    first = make_app(ghdouble, github_session, gate=gate, clock=clock, sleep=first_sleep)
    second = make_app(ghdouble, github_session, gate=gate, clock=clock, sleep=second_sleep)
    repo, run = repo_with_run(ghdouble, "octo-org/octo-repo")
    ghdouble.faults.add("GET", RUN_ROUTE, PrimaryRateLimit(reset_in=20))

    gh = await first.installation(installation_of(repo))
    assert (await gh.getitem(run_path(repo, run)))["id"] == run.id
    (waited,) = first_sleep.delays  # waited once in place, not a second time at the gate
    assert 15.0 <= waited <= 25.0
    assert [r.status for r in ghdouble.requests_to("GET", RUN_ROUTE)] == [403, 200]

    other = await second.installation(installation_of(repo))
    assert (await other.getitem(run_path(repo, run)))["id"] == run.id
    assert second_sleep.delays == [waited]  # the clocks stood still: the whole block
    assert [r.status for r in ghdouble.requests_to("GET", RUN_ROUTE)] == [403, 200, 200]


@pytest.mark.asyncio
async def test_secondary_rate_limit_blocks_the_gate_for_retry_after(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession, recorded_sleep: SleepRecorder
) -> None:
    clock = FakeClock(time.time())
    gate = LocalRateLimitGate(clock=clock)
    app = make_app(ghdouble, github_session, gate=gate, clock=clock, sleep=recorded_sleep)
    repo, run = repo_with_run(ghdouble, "octo-org/octo-repo")
    installation = installation_of(repo)
    ghdouble.faults.add("GET", RUN_ROUTE, SecondaryRateLimit(retry_after=45))

    gh = await app.installation(installation)
    assert (await gh.getitem(run_path(repo, run)))["id"] == run.id
    assert recorded_sleep.delays == [45.0]
    assert await gate.blocked_until(installation) == clock.now + 45.0
    assert gate.reason(installation) == "secondary rate limit"


@pytest.mark.asyncio
async def test_a_long_secondary_limit_holds_back_the_other_app(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession
) -> None:
    clock = FakeClock(time.time())
    gate = LocalRateLimitGate(clock=clock)
    first = make_app(ghdouble, github_session, gate=gate, clock=clock, sleep=SleepRecorder())
    second = make_app(ghdouble, github_session, gate=gate, clock=clock, sleep=SleepRecorder())
    repo, run = repo_with_run(ghdouble, "octo-org/octo-repo")
    installation = installation_of(repo)
    ghdouble.faults.add("GET", RUN_ROUTE, too_many_requests(retry_after=600))

    with pytest.raises(RateLimited) as caught:
        await (await first.installation(installation)).getitem(run_path(repo, run))
    assert caught.value.retry_after == 600.0
    assert await gate.blocked_until(installation) == clock.now + 600.0

    other = await second.installation(installation)
    with pytest.raises(RateLimited, match="another request") as held:
        await other.getitem(run_path(repo, run))
    assert held.value.retry_after == 600.0
    assert len(ghdouble.requests_to("GET", RUN_ROUTE)) == 1

    clock.now += 601.0  # the block is over: the request goes out again
    assert (await other.getitem(run_path(repo, run)))["id"] == run.id
    assert len(ghdouble.requests_to("GET", RUN_ROUTE)) == 2


@pytest.mark.asyncio
async def test_the_apps_own_rate_limit_is_gated_apart(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession
) -> None:
    clock = FakeClock(time.time())
    gate = LocalRateLimitGate(clock=clock)
    first = make_app(ghdouble, github_session, gate=gate, clock=clock, sleep=SleepRecorder())
    second = make_app(ghdouble, github_session, gate=gate, clock=clock, sleep=SleepRecorder())
    repo, _ = repo_with_run(ghdouble, "octo-org/octo-repo")
    ghdouble.exhaust_rate_limit(None, reset_in=1800)

    with pytest.raises(RateLimited, match="primary rate limit"):
        await first.installation(installation_of(repo))  # minting needs the App's JWT
    assert await gate.blocked_until(None) is not None
    assert await gate.blocked_until(installation_of(repo)) is None
    sent_before = len(ghdouble.requests)
    with pytest.raises(RateLimited, match="another request found the App"):
        await second.info()
    assert len(ghdouble.requests) == sent_before


# --- a gate that fails --------------------------------------------------------------------


@pytest.mark.asyncio
async def test_a_failing_gate_does_not_fail_the_request(
    ghdouble: GitHubDouble,
    github_session: aiohttp.ClientSession,
    recorded_sleep: SleepRecorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.github.transport")
    gate = BrokenGate()
    clock = FakeClock(time.time())
    app = make_app(ghdouble, github_session, gate=gate, clock=clock, sleep=recorded_sleep)
    repo, run = repo_with_run(ghdouble, "octo-org/octo-repo")
    ghdouble.faults.add("GET", RUN_ROUTE, SecondaryRateLimit(retry_after=5))

    gh = await app.installation(installation_of(repo))
    assert (await gh.getitem(run_path(repo, run)))["id"] == run.id
    assert recorded_sleep.delays == [5.0]  # the limit met was still waited for
    assert "block" in gate.calls and "blocked_until" in gate.calls
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "rate-limit gate failed" in r.getMessage()
    ]
    assert {getattr(r, "gate_operation", None) for r in warnings} == {"blocked_until", "block"}
    assert all("the rate-limit store is down" in r.getMessage() for r in warnings)
    secrets = list(ghdouble.state.tokens)
    assert secrets
    for record in warnings:
        assert not any(secret in record.getMessage() for secret in secrets)


class NonsenseGate:
    """A gate whose store hands back a value that is no instant at all."""

    def __init__(self, until: float) -> None:
        self.until = until

    async def blocked_until(self, installation_id: int | None) -> float | None:
        return self.until

    async def block(self, installation_id: int | None, until: float, reason: str) -> None:
        return None


@pytest.mark.parametrize("until", [float("nan"), float("inf")])
@pytest.mark.asyncio
async def test_a_gate_answering_nonsense_counts_as_failed(
    ghdouble: GitHubDouble,
    github_session: aiohttp.ClientSession,
    recorded_sleep: SleepRecorder,
    caplog: pytest.LogCaptureFixture,
    until: float,
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.github.transport")
    clock = FakeClock(time.time())
    gate = NonsenseGate(until)
    app = make_app(ghdouble, github_session, gate=gate, clock=clock, sleep=recorded_sleep)
    repo, run = repo_with_run(ghdouble, "octo-org/octo-repo")

    gh = await app.installation(installation_of(repo))
    assert (await gh.getitem(run_path(repo, run)))["id"] == run.id
    assert recorded_sleep.delays == []
    assert any("rate-limit gate failed" in r.getMessage() for r in caplog.records)


# --- the double's spent rate limit --------------------------------------------------------


@pytest.mark.asyncio
async def test_the_double_refuses_a_spent_installation_until_its_reset(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession
) -> None:
    repo, run = repo_with_run(ghdouble, "octo-org/octo-repo")
    installation = ghdouble.installation_of(repo)
    token = ghdouble.token_for(installation)
    ghdouble.exhaust_rate_limit(installation, reset_in=120)
    url = ghdouble.api_url + run_path(repo, run)
    headers = {"Authorization": f"token {token}", "Accept": "application/vnd.github+json"}

    async with github_session.get(url, headers=headers) as response:
        assert response.status == 403
        assert response.headers["x-ratelimit-remaining"] == "0"
        assert 115 <= int(response.headers["x-ratelimit-reset"]) - ghdouble.now() <= 121
        assert "rate limit exceeded" in (await response.json())["message"]
    ghdouble.clock_skew = 121.0  # GitHub's clock passes the reset
    async with github_session.get(url, headers=headers) as response:
        assert response.status == 200
        assert response.headers["x-ratelimit-remaining"] == "4999"
    refused, answered = ghdouble.requests_to("GET", RUN_ROUTE)
    assert (refused.installation_id, refused.status) == (installation.id, 403)
    assert (answered.installation_id, answered.status) == (installation.id, 200)
