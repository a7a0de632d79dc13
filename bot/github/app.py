"""The GitHub App: its own calls (as the App) and a client per installation.

One `GitHubApp` per process holds the token cache, the rate-limit tracker and the rate-limit
gate that every installation client shares.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any, Final

import aiohttp

from bot.github.auth import TOKEN_MARGIN, AppAuth, InstallationAuth, InstallationToken, TokenCache
from bot.github.client import GitHubClient
from bot.github.conditional import ConditionalCache
from bot.github.ratelimit import LocalRateLimitGate, RateLimitGate, RateLimitTracker
from bot.github.retry import RetryPolicy
from bot.github.transport import Clock, Sleep, Transport, TransportObserver
from bot.secrets import PrivateKey

DEFAULT_API_URL: Final = "https://api.github.com"
DEFAULT_REQUESTER: Final = "release-guard"


class GitHubApp:
    """Everything the App says to GitHub goes through here."""

    def __init__(
        self,
        *,
        app_id: int,
        private_key: PrivateKey,
        session: aiohttp.ClientSession,
        api_url: str = DEFAULT_API_URL,
        requester: str = DEFAULT_REQUESTER,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.time,
        token_margin: float = TOKEN_MARGIN,
        rng: random.Random | None = None,
        rate_limits: RateLimitTracker | None = None,
        observer: TransportObserver | None = None,
        rate_limit_gate: RateLimitGate | None = None,
    ) -> None:
        """Set up the App; nothing is sent until a call needs it.

        `clock` drives the token cache's expiry and rate-limit waits (the JWT always uses
        the real time, which is what GitHub checks it against); `sleep` is awaited for every
        backoff and rate-limit wait, so tests can pass one that only records. Pass
        `rate_limits` (a tracker with an `on_update` callback) and `observer` (told about
        every request and retry) to feed metrics.

        `rate_limit_gate` is where rate limits are shared, so that requests for an
        installation another request found rate-limited wait or fail without reaching
        GitHub; pass one that every process sees (a database table) to make the processes
        back off together. The default is a `LocalRateLimitGate` of this App alone.
        """
        if session.auth is not None or "Authorization" in session.headers:
            raise ValueError(
                "the session must not carry its own credentials: they would reach storage hosts"
            )
        self.app_id = app_id
        self.api_url = api_url.rstrip("/")
        self.requester = requester
        self.rate_limits = rate_limits or RateLimitTracker(clock=clock)
        self.rate_limit_gate: RateLimitGate = (
            rate_limit_gate if rate_limit_gate is not None else LocalRateLimitGate(clock=clock)
        )
        self._transport = Transport(
            session,
            api_url=self.api_url,
            policy=policy or RetryPolicy(),
            sleep=sleep,
            clock=clock,
            rng=rng or random.Random(),
            rate_limits=self.rate_limits,
            observer=observer,
            rate_limit_gate=self.rate_limit_gate,
        )
        self._as_app = GitHubClient(
            transport=self._transport,
            auth=AppAuth(app_id=app_id, private_key=private_key),
            base_url=self.api_url,
            requester=requester,
        )
        self.tokens = TokenCache(self._mint, margin=token_margin, clock=clock)
        self.conditional = ConditionalCache(api_url=self.api_url)
        """ETags of the answers the installations' clients revalidate (304s are free)."""
        self._app_info: dict[str, Any] | None = None

    def as_app(self) -> GitHubClient:
        """Return the client authenticated as the App itself (a JWT), for `/app` endpoints."""
        return self._as_app

    async def installation(self, installation_id: int) -> GitHubClient:
        """Return a client for one installation, its token ready (minted or cached)."""
        await self.tokens.get(installation_id)
        return self.installation_client(installation_id)

    def installation_client(self, installation_id: int) -> GitHubClient:
        """Return a client for one installation; its token is fetched on first use."""
        return GitHubClient(
            transport=self._transport,
            auth=InstallationAuth(installation_id=installation_id, tokens=self.tokens),
            base_url=self.api_url,
            requester=self.requester,
            cache=self.conditional.view(installation_id),
        )

    async def info(self) -> dict[str, Any]:
        """Return `GET /app` (https://docs.github.com/en/rest/apps/apps#get-the-authenticated-app)."""
        if self._app_info is None:
            data = await self._as_app.getitem("/app")
            if not isinstance(data, dict):
                raise TypeError("GET /app did not answer with an object")
            self._app_info = data
        return self._app_info

    async def slug(self) -> str:
        """Return the App's slug, as used in its URLs and its bot's login (`<slug>[bot]`)."""
        return str((await self.info())["slug"])

    async def _mint(self, installation_id: int) -> InstallationToken:
        # https://docs.github.com/en/rest/apps/apps#create-an-installation-access-token-for-an-app
        data = await self._as_app.post(
            "/app/installations/{installation_id}/access_tokens",
            {"installation_id": installation_id},
            data={},
        )
        return InstallationToken.from_response(installation_id, data)
