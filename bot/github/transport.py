"""Send one request to GitHub: a timeout on each try, retries for what may pass, nothing else.

What is retried and how long to wait is decided by `bot.github.retry`; this module does the
I/O around it: it attaches the credential (to the API host only), follows no redirect, records
the rate-limit headers, and gives a refused installation token exactly one second chance.

With a `RateLimitGate`, every rate limit an answer reports is shared with the other processes,
and no request is sent for an installation that another request found rate-limited: a short
block is waited out in place, a long one raises `RateLimited` without sending anything.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

import aiohttp
from yarl import URL

from bot.github.errors import GitHubError, GitHubUnavailable, RateLimited, Where
from bot.github.ratelimit import RateLimitGate, RateLimitTracker
from bot.github.responses import message_of
from bot.github.retry import RetryPolicy, Transient, Trouble, classify, wait_for
from bot.secrets import Secret

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]
Consumer = Callable[[aiohttp.ClientResponse], Awaitable[T]]

# https://docs.github.com/en/rest/about-the-rest-api/api-versions
API_VERSION = "2022-11-28"


class TransportObserver(Protocol):
    """Told about each attempt the transport makes (metrics); must not block or raise."""

    def answered(
        self, *, installation_id: int | None, authenticated: bool, method: str, status: int | None
    ) -> None:
        """An attempt ended with an answer (`status`) or without one (None)."""
        ...

    def retrying(self, *, installation_id: int | None, authenticated: bool, reason: str) -> None:
        """A failed attempt is about to be tried again (`reason`: a `Trouble` value)."""
        ...


class Authenticator(Protocol):
    """Where a request's `Authorization` header comes from."""

    @property
    def installation_id(self) -> int | None: ...

    async def authorization(self) -> Secret:
        """Return the full `Authorization` header value."""
        ...

    async def refresh(self, rejected: Secret) -> bool:
        """React to a 401 for `rejected`; True if one more try with a new credential is due."""
        ...


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole answer, read into memory (API calls, not downloads)."""

    status: int
    headers: Mapping[str, str]
    body: bytes


async def read_reply(response: aiohttp.ClientResponse) -> Reply:
    """Read a response whole."""
    return Reply(response.status, response.headers, await response.read())


def _instant(epoch: float) -> str:
    """An epoch instant for a message; a gate's nonsense value must not fail the request."""
    try:
        return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return f"{epoch:.0f} (epoch seconds)"


def _who(installation_id: int | None) -> str:
    return "the App" if installation_id is None else f"installation {installation_id}"


class Transport:
    """Sends requests with one retry policy, sleep, clock, rate-limit tracker and gate.

    Without a `rate_limit_gate` nothing is shared: each request only waits for the rate
    limits it meets itself.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        api_url: str,
        policy: RetryPolicy,
        sleep: Sleep,
        clock: Clock,
        rng: random.Random,
        rate_limits: RateLimitTracker,
        observer: TransportObserver | None = None,
        rate_limit_gate: RateLimitGate | None = None,
    ) -> None:
        self.session = session
        self.observer = observer
        self.api_origin = URL(api_url).origin()
        self.policy = policy
        self.sleep = sleep
        self.clock = clock
        self.rng = rng
        self.rate_limits = rate_limits
        self.rate_limit_gate = rate_limit_gate

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        consume: Consumer[T],
        body: bytes = b"",
        auth: Authenticator | None,
        timeout: aiohttp.ClientTimeout | None = None,
        repeat: bool = True,
    ) -> T:
        """Send `method url`, retrying per the policy, and return what `consume` makes of it.

        `repeat=False` is for a request that must not be sent twice (one that creates
        something): after a 5xx, a timeout or a dropped connection it may have taken effect,
        so it raises `GitHubUnavailable` at once and the caller looks before trying again.
        Rate-limit refusals are still waited for: GitHub did nothing with those.

        `consume` gets every final answer, successful or not (a 4xx, a 3xx, or the 401 left
        after the one refresh); transient failures never reach it. With `auth` None no
        `Authorization` header is sent at all (storage hosts).
        """
        target = URL(url)
        if auth is not None and target.origin() != self.api_origin:
            raise GitHubError(
                f"refusing to send the App's credentials to {target.host}, "
                f"which is not the configured GitHub API host",
                method=method,
                path=target.path,
            )
        timeout = timeout or aiohttp.ClientTimeout(total=self.policy.timeout)
        installation_id = None if auth is None else auth.installation_id
        base_headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
        if auth is not None:
            base_headers.setdefault("x-github-api-version", API_VERSION)
        log = {"installation_id": installation_id, "method": method, "path": target.path}
        attempt = 0
        refreshed = False
        secondary_hits = 0
        # The instant this request has already waited up to (epoch seconds): a block it slept
        # through itself is not waited for a second time when the clock says otherwise (an
        # injected clock that sleeps do not move, or a sleep that woke a hair early).
        slept_until = 0.0
        while True:
            if auth is not None:
                slept_until = await self._pass_gate(
                    installation_id, slept_until, method=method, path=target.path
                )
            attempt += 1
            request_headers = dict(base_headers)
            credential = None
            if auth is not None:
                credential = await auth.authorization()
                request_headers["Authorization"] = credential.reveal()
            status: int | None = None
            cause: BaseException | None = None
            try:
                async with self.session.request(
                    method,
                    target,
                    headers=request_headers,
                    data=body or None,
                    allow_redirects=False,
                    timeout=timeout,
                ) as response:
                    status = response.status
                    if self.observer is not None:
                        self.observer.answered(
                            installation_id=installation_id,
                            authenticated=auth is not None,
                            method=method,
                            status=status,
                        )
                    if auth is not None:
                        self.rate_limits.observe(installation_id, response.headers)
                    logger.debug(
                        "%s %s answered %d",
                        method,
                        target.path,
                        status,
                        extra={**log, "status": status, "attempt": attempt},
                    )
                    if (
                        status == 401
                        and auth is not None
                        and credential is not None
                        and not refreshed
                        and await auth.refresh(credential)
                    ):
                        refreshed = True
                        attempt -= 1
                        logger.info(
                            "credential refused; retrying once with a fresh one",
                            extra={**log, "status": status, "attempt": attempt + 1},
                        )
                        continue
                    message = None
                    if status in (403, 429):
                        message = message_of(await response.read())
                    transient = classify(status, response.headers, message, now=self.clock())
                    if transient is None:
                        return await consume(response)
            except TimeoutError as exc:
                transient, cause = Transient(Trouble.TIMEOUT), exc
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                transient, cause = Transient(Trouble.CONNECTION), exc
            if status is None and self.observer is not None:
                self.observer.answered(
                    installation_id=installation_id,
                    authenticated=auth is not None,
                    method=method,
                    status=None,
                )
            if transient.trouble is Trouble.SECONDARY_RATE_LIMIT:
                secondary_hits += 1
            delay = wait_for(
                transient,
                attempt=attempt,
                secondary_hits=secondary_hits,
                policy=self.policy,
                rng=self.rng,
            )
            now = self.clock()
            if auth is not None and transient.trouble.is_rate_limit:
                await self._block_gate(installation_id, now + delay, transient.trouble.value)
            error = self._final_error(transient, delay, attempt, status, method, target.path)
            if error is None and not repeat and not transient.trouble.is_rate_limit:
                error = GitHubUnavailable(
                    f"{transient.trouble.value}; not repeated, as it may have taken effect",
                    status_code=status,
                    method=method,
                    path=target.path,
                )
            if error is not None:
                raise error from cause
            logger.warning(
                "%s %s failed (%s, attempt %d); retrying in %.1f s",
                method,
                target.path,
                transient.trouble.value,
                attempt,
                delay,
                extra={
                    **log,
                    "status": status,
                    "attempt": attempt,
                    "reason": transient.trouble.value,
                    "delay": delay,
                },
            )
            if self.observer is not None:
                self.observer.retrying(
                    installation_id=installation_id,
                    authenticated=auth is not None,
                    reason=transient.trouble.value,
                )
            await self.sleep(delay)
            slept_until = now + delay

    async def _pass_gate(
        self, installation_id: int | None, slept_until: float, *, method: str, path: str
    ) -> float:
        """Wait out a block the gate holds for the installation, or raise if it is too long.

        Return the instant the request has now waited up to (`slept_until` if it did not
        wait). A gate that fails counts as no block at all.
        """
        if self.rate_limit_gate is None:
            return slept_until
        try:
            until = await self.rate_limit_gate.blocked_until(installation_id)
        except Exception as exc:
            self._gate_failed("blocked_until", exc, installation_id)
            return slept_until
        if until is None:
            return slept_until
        if not math.isfinite(until):
            self._gate_failed(
                "blocked_until", ValueError(f"not an instant: {until}"), installation_id
            )
            return slept_until
        wait = until - max(self.clock(), slept_until)
        if wait <= 0:
            return slept_until
        log = {
            "installation_id": installation_id,
            "method": method,
            "path": path,
            "blocked_until": until,
            "delay": wait,
        }
        if wait > self.policy.max_wait:
            logger.info(
                "%s %s not sent: %s is rate-limited until %s",
                method,
                path,
                _who(installation_id),
                _instant(until),
                extra=log,
            )
            raise RateLimited(
                f"another request found {_who(installation_id)} rate-limited until "
                f"{_instant(until)}; not sent, as the {wait:.0f} s left are longer than the "
                f"{self.policy.max_wait:.0f} s this client waits in place",
                retry_after=wait,
                method=method,
                path=path,
            )
        logger.info(
            "%s %s waits %.1f s: %s is rate-limited until %s",
            method,
            path,
            wait,
            _who(installation_id),
            _instant(until),
            extra=log,
        )
        await self.sleep(wait)
        return until

    async def _block_gate(self, installation_id: int | None, until: float, reason: str) -> None:
        """Tell the gate (if any) that the installation is rate-limited until `until`."""
        if self.rate_limit_gate is None:
            return
        try:
            await self.rate_limit_gate.block(installation_id, until, reason)
        except Exception as exc:
            self._gate_failed("block", exc, installation_id)

    @staticmethod
    def _gate_failed(operation: str, exc: Exception, installation_id: int | None) -> None:
        # The gate only spares GitHub requests that would be refused anyway; losing it must
        # not fail the request, so its failure is logged (type and message: a gate's errors
        # name its store, never a GitHub credential) and the request goes on without it.
        logger.warning(
            "rate-limit gate failed in %s (%s: %s); carrying on without it",
            operation,
            type(exc).__name__,
            exc,
            extra={"installation_id": installation_id, "gate_operation": operation},
        )

    def _final_error(
        self,
        transient: Transient,
        delay: float,
        attempt: int,
        status: int | None,
        method: str,
        path: str,
    ) -> GitHubError | None:
        """Return the error to give up with, or None to wait `delay` and try again."""
        where: Where = {"status_code": status, "method": method, "path": path}
        reason = transient.trouble.value
        if transient.trouble.is_rate_limit:
            if delay > self.policy.max_wait:
                return RateLimited(
                    f"{reason}: GitHub asks to wait {delay:.0f} s, longer than the "
                    f"{self.policy.max_wait:.0f} s this client waits in place",
                    retry_after=delay,
                    **where,
                )
            if attempt >= self.policy.max_attempts:
                return RateLimited(
                    f"{reason} still in force after {attempt} attempts",
                    retry_after=delay,
                    **where,
                )
            return None
        if attempt >= self.policy.max_attempts:
            return GitHubUnavailable(f"gave up after {attempt} attempts ({reason})", **where)
        return None
