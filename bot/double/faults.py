"""Faults a test queues for the next requests that match a route.

`double.faults.add("GET", "/repos/*/actions/runs/*/artifacts", ServerError(502), times=3)`
answers the next three matching requests with a 502; each fault is used once. A pattern is
either an fnmatch glob on the request path or the route's template exactly as GitHub's
description spells it (`/repos/{owner}/{repo}/check-runs`).
"""

from __future__ import annotations

import fnmatch
from collections import deque
from dataclasses import dataclass, field
from typing import Final

SECONDARY_MESSAGE: Final = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
    "again. If you reach out to GitHub Support for help, please include the request ID "
    "0000:0000:0000000:0000000:00000000."
)
SECONDARY_DOCS: Final = (
    "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
    "#about-secondary-rate-limits"
)
PRIMARY_DOCS: Final = (
    "https://docs.github.com/rest/using-the-rest-api/rate-limits-for-the-rest-api"
    "#about-primary-rate-limits"
)


@dataclass(frozen=True)
class ServerError:
    """A 5xx with GitHub's error body."""

    status: int = 502


@dataclass(frozen=True)
class ServerErrorAfter:
    """The request is carried out, then answered with a 5xx (GitHub's front end timed out
    while the work was done): the client cannot tell whether it took effect."""

    status: int = 502


@dataclass(frozen=True)
class HeldAfter:
    """The request is carried out, then its answer is held back `delay` seconds (a test kills
    the client meanwhile: the work is done and the client never learns it)."""

    delay: float


@dataclass(frozen=True)
class ConnectionReset:
    """The server drops the connection without answering."""


@dataclass(frozen=True)
class SecondaryRateLimit:
    """403 (or 429) with GitHub's secondary-rate-limit message; `retry_after` None omits it."""

    retry_after: int | None = 60
    status: int = 403


def too_many_requests(retry_after: int = 30) -> SecondaryRateLimit:
    """A 429 with `Retry-After`."""
    return SecondaryRateLimit(retry_after=retry_after, status=429)


@dataclass(frozen=True)
class PrimaryRateLimit:
    """403 with `x-ratelimit-remaining: 0` and a reset `reset_in` seconds from now."""

    reset_in: int = 30


@dataclass(frozen=True)
class Slow:
    """Answer normally, after `delay` seconds (for timeouts)."""

    delay: float


@dataclass(frozen=True)
class Respond:
    """Any answer at all."""

    status: int
    json: object = None
    headers: tuple[tuple[str, str], ...] = ()


Fault = (
    ServerError
    | ServerErrorAfter
    | HeldAfter
    | ConnectionReset
    | SecondaryRateLimit
    | PrimaryRateLimit
    | Slow
    | Respond
)


@dataclass
class _Rule:
    method: str
    pattern: str
    queue: deque[Fault] = field(default_factory=deque)

    def matches(self, method: str, path: str, template: str | None) -> bool:
        if self.method not in ("*", method):
            return False
        return self.pattern == template or fnmatch.fnmatchcase(path, self.pattern)


class FaultQueue:
    """Queued faults, by method and route pattern; the first matching rule answers."""

    def __init__(self) -> None:
        self._rules: list[_Rule] = []

    def add(self, method: str, pattern: str, *faults: Fault, times: int = 1) -> None:
        """Queue `faults` (each repeated `times`) for requests matching `method pattern`."""
        rule = _Rule(method.upper(), pattern)
        for fault in faults:
            rule.queue.extend([fault] * times)
        self._rules.append(rule)

    def take(self, method: str, path: str, template: str | None) -> Fault | None:
        """Return (and use up) the next fault for this request, if one is queued."""
        for rule in self._rules:
            if rule.queue and rule.matches(method, path, template):
                return rule.queue.popleft()
        return None

    def pending(self) -> int:
        """Return how many queued faults no request has used yet."""
        return sum(len(rule.queue) for rule in self._rules)

    def clear(self) -> None:
        self._rules.clear()
