"""The App's webhook: deliveries the double sends to the App, each with its attempts.

GitHub keeps every attempt of every delivery of an App's webhook and lists them, newest
first, at `GET /app/hook/deliveries`; a redelivery (`POST …/{delivery_id}/attempts`) sends
the same payload again, signed, with the original `X-GitHub-Delivery` GUID, and is listed as
an attempt of its own with `redelivery: true`
(https://docs.github.com/en/rest/apps/webhooks,
https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries).
An attempt is `OK` when the App answered 2xx; otherwise its status says why, as GitHub's do
(`Invalid HTTP Response: 503`, or a connection failure with status code 0).

Tests point the hook at the App (`hooks.target_url`, `hooks.secret`) and call
`deliver(event, payload)`; `settle()` waits for the redeliveries GitHub sends after answering
202.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp

HOOK_ID: Final = 42
TIMEOUT: Final = 10.0  # GitHub gives up on a delivery after 10 s
USER_AGENT: Final = "GitHub-Hookshot/double"


@dataclass
class HookAttempt:
    """One attempt to deliver: what `GET /app/hook/deliveries` lists."""

    id: int
    guid: str
    delivered_at: float
    status: str
    status_code: int
    redelivery: bool
    duration: float
    response: str = ""


@dataclass
class StoredDelivery:
    """A delivery as GitHub keeps it: the event, its exact payload, and every attempt."""

    guid: str
    event: str
    action: str | None
    payload: bytes
    installation_id: int | None
    repository_id: int | None
    attempts: list[HookAttempt] = field(default_factory=list)


@dataclass
class Hooks:
    """The App's webhook as the double plays it."""

    clock: Callable[[], float] = time.time
    target_url: str | None = None
    secret: str | None = None
    deliveries: dict[str, StoredDelivery] = field(default_factory=dict)
    attempts: list[HookAttempt] = field(default_factory=list)  # every attempt, oldest first

    def __post_init__(self) -> None:
        self._next_id = 1_000_000
        self._background: set[asyncio.Task[HookAttempt]] = set()

    # -- what tests call -------------------------------------------------------------------

    async def deliver(
        self, event: str, payload: dict[str, Any], *, guid: str | None = None
    ) -> HookAttempt:
        """Send a new delivery to `target_url` (a failed attempt when nothing answers)."""
        stored = self.store(event, payload, guid=guid)
        return await self.attempt(stored, redelivery=False)

    def store(
        self, event: str, payload: dict[str, Any], *, guid: str | None = None
    ) -> StoredDelivery:
        """Keep a delivery without sending it (add attempts with `record_attempt`)."""
        installation = payload.get("installation")
        repository = payload.get("repository")
        action = payload.get("action")
        stored = StoredDelivery(
            guid=guid or str(uuid.uuid4()),
            event=event,
            action=action if isinstance(action, str) else None,
            payload=json.dumps(payload).encode(),
            installation_id=_id_of(installation),
            repository_id=_id_of(repository),
        )
        self.deliveries[stored.guid] = stored
        return stored

    def record_attempt(
        self,
        stored: StoredDelivery,
        *,
        status_code: int,
        redelivery: bool = False,
        at: float | None = None,
    ) -> HookAttempt:
        """Record an attempt as if it had been made (`at`: when; default now)."""
        ok = 200 <= status_code < 300
        attempt = HookAttempt(
            id=self._new_id(),
            guid=stored.guid,
            delivered_at=self.clock() if at is None else at,
            status="OK" if ok else _failure_status(status_code),
            status_code=status_code,
            redelivery=redelivery,
            duration=0.01,
        )
        stored.attempts.append(attempt)
        self.attempts.append(attempt)
        return attempt

    def attempt_by_id(self, attempt_id: int) -> HookAttempt | None:
        for attempt in self.attempts:
            if attempt.id == attempt_id:
                return attempt
        return None

    def redeliveries_of(self, guid: str) -> list[HookAttempt]:
        stored = self.deliveries.get(guid)
        return [] if stored is None else [a for a in stored.attempts if a.redelivery]

    def redeliver_later(self, attempt: HookAttempt) -> None:
        """Send the attempt's delivery again, soon (GitHub answers 202 first)."""
        stored = self.deliveries[attempt.guid]
        task = asyncio.create_task(self.attempt(stored, redelivery=True))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settle(self) -> None:
        """Wait for the redeliveries under way."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    # -- sending -----------------------------------------------------------------------------

    async def attempt(self, stored: StoredDelivery, *, redelivery: bool) -> HookAttempt:
        """POST the stored delivery to the App, signed, with its original GUID; record it."""
        started = time.monotonic()
        at = self.clock()
        status_code, status, response = 0, "failed to connect to host", ""
        if self.target_url is not None:
            headers = {
                "Accept": "*/*",
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                "X-GitHub-Delivery": stored.guid,
                "X-GitHub-Event": stored.event,
                "X-GitHub-Hook-ID": str(HOOK_ID),
                "X-GitHub-Hook-Installation-Target-ID": "4242",
                "X-GitHub-Hook-Installation-Target-Type": "integration",
            }
            if self.secret is not None:
                digest = hmac.new(self.secret.encode(), stored.payload, hashlib.sha256)
                headers["X-Hub-Signature-256"] = "sha256=" + digest.hexdigest()
            try:
                async with (
                    aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as session,
                    session.post(self.target_url, data=stored.payload, headers=headers) as reply,
                ):
                    status_code = reply.status
                    response = (await reply.text())[:1000]
                status = "OK" if 200 <= status_code < 300 else _failure_status(status_code)
            except TimeoutError:
                status = "timed out"
            except aiohttp.ClientError:
                pass
        attempt = HookAttempt(
            id=self._new_id(),
            guid=stored.guid,
            delivered_at=at,
            status=status,
            status_code=status_code,
            redelivery=redelivery,
            duration=round(time.monotonic() - started, 3),
            response=response,
        )
        stored.attempts.append(attempt)
        self.attempts.append(attempt)
        return attempt

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id


def _failure_status(status_code: int) -> str:
    return f"Invalid HTTP Response: {status_code}"


def _id_of(value: Any) -> int | None:
    if isinstance(value, dict) and isinstance(value.get("id"), int):
        return int(value["id"])
    return None
