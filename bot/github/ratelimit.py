"""Read GitHub's rate-limit headers, and remember the last ones seen per installation.

https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
("Checking the status of your rate limit"): every response carries `x-ratelimit-limit`,
`x-ratelimit-remaining`, `x-ratelimit-used`, `x-ratelimit-reset` (epoch seconds) and
`x-ratelimit-resource`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

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
