"""pytest fixtures for the GitHub double.

Use them from a test module with `pytest_plugins = ["tests.ghdouble.fixtures"]`, and mark
async tests `@pytest.mark.asyncio` (pytest-asyncio's strict mode).

- `ghdouble`: a started `GitHubDouble`; fails the test at teardown if any request broke
  GitHub's OpenAPI description (unless the test called `ghdouble.allow_violations()`).
- `app_keypair`: an RSA key made at run time, once per session (nothing secret committed).
- `recorded_sleep`: an async sleep that returns at once and keeps the delays asked for.
- `github_session`, `github_app`: an aiohttp session, and a `GitHubApp` pointed at the double
  with `recorded_sleep`, for tests of code that talks to GitHub.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from bot.double.helpers import SleepRecorder, make_keypair
from bot.double.server import GitHubDouble
from bot.github import GitHubApp, RetryPolicy
from bot.secrets import PrivateKey


@pytest.fixture(scope="session")
def app_keypair() -> tuple[PrivateKey, bytes]:
    return make_keypair()


@pytest_asyncio.fixture
async def ghdouble(app_keypair: tuple[PrivateKey, bytes]) -> AsyncIterator[GitHubDouble]:
    private_key, public_key = app_keypair
    double = GitHubDouble(private_key=private_key, public_key=public_key)
    await double.start()
    try:
        yield double
    finally:
        await double.close()
    if double.violations and not double.violations_allowed:
        listed = "\n".join(f"  - {v}" for v in double.violations)
        pytest.fail(f"requests that GitHub's OpenAPI description does not allow:\n{listed}")


@pytest.fixture
def recorded_sleep() -> SleepRecorder:
    return SleepRecorder()


@pytest_asyncio.fixture
async def github_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest_asyncio.fixture
async def github_app(
    ghdouble: GitHubDouble,
    github_session: aiohttp.ClientSession,
    recorded_sleep: SleepRecorder,
) -> GitHubApp:
    return GitHubApp(
        app_id=ghdouble.app_id,
        private_key=ghdouble.private_key,
        api_url=ghdouble.api_url,
        session=github_session,
        sleep=recorded_sleep,
        policy=RetryPolicy(timeout=5.0),
    )
