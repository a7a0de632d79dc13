"""Read GitHub's rate-limit headers, remember the last ones seen, and gate rate-limited work.

https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
("Checking the status of your rate limit"): every response carries `x-ratelimit-limit`,
`x-ratelimit-remaining`, `x-ratelimit-used`, `x-ratelimit-reset` (epoch seconds) and
`x-ratelimit-resource`.

`RateLimitTracker` keeps what one process saw (for metrics); a `RateLimitGate` is what all
processes share so that they back off from a rate-limited installation together.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

# The App's own (JWT) requests have their own rate limit; they are tracked under this key.
APP: None = None


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """One response's view of a rate limit."""

    limit: int
    remaining: int
    reset: float
    resource: str | None
    observed_at: float


def parse_rate_limit(headers: Mapping[str, str], *, now: float) -> RateLimitState | None:
    """Return the rate limit a response reports, or None when it reports none."""
    try:
        limit = int(headers["x-ratelimit-limit"])
        remaining = int(headers["x-ratelimit-remaining"])
        reset = float(headers["x-ratelimit-reset"])
    except (KeyError, ValueError):
        return None
    return RateLimitState(
        limit=limit,
        remaining=remaining,
        reset=reset,
        resource=headers.get("x-ratelimit-resource"),
        observed_at=now,
    )


class RateLimitTracker:
    """The last rate limit seen per installation (`None` for the App itself), for metrics."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        on_update: Callable[[int | None, RateLimitState], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_update = on_update
        self._states: dict[int | None, RateLimitState] = {}

    def observe(self, installation_id: int | None, headers: Mapping[str, str]) -> None:
        """Record the rate limit a response from GitHub reports (if any)."""
        state = parse_rate_limit(headers, now=self._clock())
        if state is None:
            return
        self._states[installation_id] = state
        if self._on_update is not None:
            self._on_update(installation_id, state)

    def get(self, installation_id: int | None) -> RateLimitState | None:
        """Return the last state seen for an installation (`None`: the App's JWT requests)."""
        return self._states.get(installation_id)

    def remaining(self, installation_id: int | None) -> int | None:
        """Return the last `x-ratelimit-remaining` seen for an installation."""
        state = self._states.get(installation_id)
        return None if state is None else state.remaining

    def snapshot(self) -> dict[int | None, RateLimitState]:
        """Return every installation's last state (a copy)."""
        return dict(self._states)


class RateLimitGate(Protocol):
    """Where every process learns that an installation is rate-limited, and until when.

    GitHub counts rate limits per installation (and, for its JWT requests, per App), not per
    process: once one worker meets a limit, a request for that installation from any worker
    would only be refused too, and hammering an exhausted installation can earn a longer
    secondary limit. The transport asks the gate before it sends and tells it about every
    rate limit it meets. `installation_id` None stands for the App's own JWT requests.
    Implementations must be safe to call concurrently; the transport treats any exception
    they raise as "no gate" (it logs a warning and carries on).
    """

    async def blocked_until(self, installation_id: int | None) -> float | None:
        """Epoch seconds until which requests for this installation must not be sent.

        None: the installation is free (never blocked, or its block has passed).
        """
        ...

    async def block(self, installation_id: int | None, until: float, reason: str) -> None:
        """Record that the installation is limited until `until` (keeps the later of two blocks)."""
        ...


@dataclass(frozen=True, slots=True)
class _Block:
    until: float
    reason: str


class LocalRateLimitGate:
    """A `RateLimitGate` in this process's memory: shared by the jobs of one `GitHubApp`.

    Blocks whose time has passed are dropped whenever the gate is used, so the dict holds
    only the installations that are limited right now.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._blocks: dict[int | None, _Block] = {}

    def _prune(self) -> None:
        now = self._clock()
        for installation_id in [k for k, b in self._blocks.items() if b.until <= now]:
            del self._blocks[installation_id]

    async def blocked_until(self, installation_id: int | None) -> float | None:
        """Return until when the installation is blocked (epoch seconds), None if it is not."""
        self._prune()
        block = self._blocks.get(installation_id)
        return None if block is None else block.until

    async def block(self, installation_id: int | None, until: float, reason: str) -> None:
        """Block the installation until `until`, unless it is already blocked for longer."""
        self._prune()
        current = self._blocks.get(installation_id)
        if until <= self._clock() or (current is not None and current.until >= until):
            return
        self._blocks[installation_id] = _Block(until, reason)

    def reason(self, installation_id: int | None) -> str | None:
        """Return why the installation is blocked (as given to `block`), None if it is not."""
        self._prune()
        block = self._blocks.get(installation_id)
        return None if block is None else block.reason

    def __len__(self) -> int:
        """The number of installations blocked right now."""
        self._prune()
        return len(self._blocks)
