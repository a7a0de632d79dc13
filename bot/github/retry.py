"""Decide whether a failed request is worth another try, and how long to wait first.

Pure functions: no I/O, no clock of their own. The rules follow
https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api
("Handle rate limit errors appropriately") and
https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
("Exceeding the rate limit"):

- a `retry-after` header: wait that many seconds;
- `x-ratelimit-remaining: 0`: the primary limit; wait until `x-ratelimit-reset`;
- otherwise a secondary limit (a 429, or a 403 whose message says so): wait at least a minute,
  and exponentially longer if it keeps happening;
- 5xx answers, timeouts and dropped connections: exponential backoff with full jitter.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

RETRYABLE_SERVER_STATUSES: Final = frozenset({500, 502, 503, 504})
SECONDARY_WORDS: Final = "secondary rate limit"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one request tries.

    `max_attempts` counts every try of one request, the first included (the single retry
    after a 401 with a fresh token does not count). `max_wait` is the longest rate-limit wait
    done in place; a longer one raises `RateLimited` at once so the caller can reschedule.
    """

    max_attempts: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    max_wait: float = 90.0
    secondary_wait: float = 60.0
    timeout: float = 30.0
    download_timeout: float = 600.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")


class Trouble(enum.Enum):
    """Why an attempt failed in a way that may pass."""

    SERVER_ERROR = "server error"
    CONNECTION = "connection error"
    TIMEOUT = "timeout"
    PRIMARY_RATE_LIMIT = "primary rate limit"
    SECONDARY_RATE_LIMIT = "secondary rate limit"

    @property
    def is_rate_limit(self) -> bool:
        return self in (Trouble.PRIMARY_RATE_LIMIT, Trouble.SECONDARY_RATE_LIMIT)


@dataclass(frozen=True, slots=True)
class Transient:
    """A failure worth retrying; `wait` is what GitHub asked for (None: use backoff)."""

    trouble: Trouble
    wait: float | None = None


def _seconds(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(seconds, 0.0)


def classify(
    status: int, headers: Mapping[str, str], message: str | None, *, now: float
) -> Transient | None:
    """Return how a response failed transiently, or None if it is final (success or not)."""
    if status in RETRYABLE_SERVER_STATUSES:
        return Transient(Trouble.SERVER_ERROR)
    if status not in (403, 429):
        return None
    retry_after = _seconds(headers.get("retry-after"))
    if headers.get("x-ratelimit-remaining") == "0":
        if retry_after is None:
            reset = _seconds(headers.get("x-ratelimit-reset"))
            # One second of slack: the reset instant is rounded down to whole seconds.
            retry_after = None if reset is None else max(reset - now, 0.0) + 1.0
        return Transient(Trouble.PRIMARY_RATE_LIMIT, retry_after)
    if retry_after is not None:
        return Transient(Trouble.SECONDARY_RATE_LIMIT, retry_after)
    if status == 429 or (message is not None and SECONDARY_WORDS in message.lower()):
        return Transient(Trouble.SECONDARY_RATE_LIMIT)
    return None


def backoff(attempt: int, policy: RetryPolicy, rng: random.Random) -> float:
    """Return the wait after failed attempt number `attempt` (1-based): full jitter."""
    ceiling = min(policy.backoff_max, policy.backoff_base * 2.0 ** (attempt - 1))
    return float(rng.uniform(0.0, ceiling))


def wait_for(
    transient: Transient,
    *,
    attempt: int,
    secondary_hits: int,
    policy: RetryPolicy,
    rng: random.Random,
) -> float:
    """Return how long to wait before the next attempt.

    `secondary_hits` counts the secondary rate limits this request met so far (this one
    included); without a `retry-after`, each doubles the minute GitHub asks for.
    """
    if transient.wait is not None:
        return transient.wait
    if transient.trouble is Trouble.SECONDARY_RATE_LIMIT:
        return policy.secondary_wait * 2.0 ** (secondary_hits - 1)
    if transient.trouble is Trouble.PRIMARY_RATE_LIMIT:
        return policy.secondary_wait
    return backoff(attempt, policy, rng)
