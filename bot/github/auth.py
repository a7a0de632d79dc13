"""Authenticate as the App (a short-lived JWT) and as an installation (cached tokens).

https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/
generating-a-json-web-token-jwt-for-a-github-app: RS256, `iss` the App's id, `iat` set 60
seconds in the past "to allow for clock drift", `exp` no more than 10 minutes into the future.

https://docs.github.com/en/apps/creating-github-apps/authenticating-with-a-github-app/
generating-an-installation-access-token-for-a-github-app: an installation token expires after
one hour (`expires_at` in the answer), so it is reused until shortly before then.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import jwt
from cachetools import TLRUCache

from bot.github.errors import GitHubError
from bot.secrets import PrivateKey, Secret

logger = logging.getLogger(__name__)

JWT_BACKDATE: Final = 60
JWT_LIFETIME: Final = 9 * 60  # from the backdated iat: ends 8 minutes from now, inside 10
TOKEN_MARGIN: Final = 5 * 60


def app_jwt(*, app_id: int, private_key: PrivateKey, now: float | None = None) -> str:
    """Return a JWT that authenticates as the App for about eight minutes."""
    issued = int(time.time() if now is None else now) - JWT_BACKDATE
    claims = {"iat": issued, "exp": issued + JWT_LIFETIME, "iss": str(app_id)}
    return jwt.encode(claims, private_key.reveal(), algorithm="RS256")


@dataclass(frozen=True, slots=True)
class InstallationToken:
    """An installation access token and when GitHub says it expires (epoch seconds)."""

    installation_id: int
    token: Secret
    expires_at: float
    permissions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_response(cls, installation_id: int, data: Any) -> InstallationToken:
        """Read `POST /app/installations/{id}/access_tokens`'s answer."""
        try:
            token = data["token"]
            expires = datetime.fromisoformat(data["expires_at"]).timestamp()
        except (TypeError, KeyError, ValueError) as exc:
            raise GitHubError(
                "GitHub's access-token answer lacks `token` or a valid `expires_at`"
            ) from exc
        if not isinstance(token, str) or not token:
            raise GitHubError("GitHub's access-token answer holds no token")
        permissions = data.get("permissions") or {}
        return cls(installation_id, Secret(token), expires, dict(permissions))


Mint = Callable[[int], Awaitable[InstallationToken]]


class TokenCache:
    """Installation tokens, each reused until `margin` seconds before it expires.

    Refreshes are single-flight per installation: concurrent callers wait on one lock and
    share the one token it mints; if that mint fails, the callers that waited for it get the
    same error instead of each minting in turn.
    """

    def __init__(
        self,
        mint: Mint,
        *,
        margin: float = TOKEN_MARGIN,
        maxsize: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._mint = mint
        self._margin = margin
        self._cache: TLRUCache[int, InstallationToken] = TLRUCache(
            maxsize, ttu=self._use_until, timer=clock
        )
        self._locks: weakref.WeakValueDictionary[int, asyncio.Lock] = weakref.WeakValueDictionary()
        self._failures: dict[int, GitHubError] = {}

    def _use_until(self, _key: int, value: InstallationToken, _now: float) -> float:
        return value.expires_at - self._margin

    def _lock(self, installation_id: int) -> asyncio.Lock:
        lock = self._locks.get(installation_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[installation_id] = lock
        return lock

    def cached(self, installation_id: int) -> InstallationToken | None:
        """Return the usable cached token of an installation, without minting."""
        return self._cache.get(installation_id)

    async def get(self, installation_id: int) -> Secret:
        """Return a token for `installation_id`, minting one only when none is usable."""
        cached = self._cache.get(installation_id)
        if cached is not None:
            return cached.token
        failure_before = self._failures.get(installation_id)
        async with self._lock(installation_id):
            cached = self._cache.get(installation_id)
            if cached is not None:
                return cached.token
            failure = self._failures.get(installation_id)
            if failure is not None and failure is not failure_before:
                raise failure  # the refresh this caller waited for has just failed
            try:
                fresh = await self._mint(installation_id)
            except GitHubError as exc:
                self._failures[installation_id] = exc
                raise
            self._failures.pop(installation_id, None)
            if fresh.installation_id != installation_id:
                raise GitHubError(
                    f"minted a token for installation {fresh.installation_id} "
                    f"when {installation_id} was asked for"
                )
            self._cache[installation_id] = fresh
            logger.info(
                "minted installation token",
                extra={"installation_id": installation_id, "expires_at": fresh.expires_at},
            )
            return fresh.token

    def invalidate(self, installation_id: int, *, token: Secret | None = None) -> None:
        """Forget an installation's token (after a 401).

        With `token`, forget it only if it is still the cached one, so that a late 401 for
        an old token does not throw away the fresh one another request just minted.
        """
        cached = self._cache.get(installation_id)
        if cached is None or (token is not None and cached.token != token):
            return
        del self._cache[installation_id]
        logger.info("invalidated installation token", extra={"installation_id": installation_id})


class AppAuth:
    """Requests as the App itself: a fresh JWT each time; a 401 is final."""

    installation_id: None = None

    def __init__(self, *, app_id: int, private_key: PrivateKey) -> None:
        self._app_id = app_id
        self._private_key = private_key

    async def authorization(self) -> Secret:
        return Secret(f"Bearer {app_jwt(app_id=self._app_id, private_key=self._private_key)}")

    async def refresh(self, rejected: Secret) -> bool:
        return False


class InstallationAuth:
    """Requests as one installation, with its own token from the cache and no other."""

    def __init__(self, *, installation_id: int, tokens: TokenCache) -> None:
        self.installation_id = installation_id
        self._tokens = tokens

    async def authorization(self) -> Secret:
        token = await self._tokens.get(self.installation_id)
        return Secret(f"Bearer {token.reveal()}")

    async def refresh(self, rejected: Secret) -> bool:
        """Forget the refused token; the next `authorization()` mints a new one."""
        token = Secret(rejected.reveal().removeprefix("Bearer "))
        self._tokens.invalidate(self.installation_id, token=token)
        return True
