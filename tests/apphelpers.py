"""Helpers shared by the App's receiving-side tests: signing, example payloads, fake handlers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.events import JobKind, JobSpec
from bot.jobs import JobContext, RetryLater
from bot.store.base import Delivery, Job

PAYLOADS = Path(__file__).parent / "payloads"
SHA_A = "a" * 40
SHA_B = "b" * 40


def new_secret() -> str:
    return secrets.token_hex(32)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_headers(
    secret: str | None, body: bytes, event: str, delivery: str | None = None
) -> dict[str, str]:
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "Content-Type": "application/json",
    }
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    return headers


@dataclass(frozen=True)
class Example:
    event: str
    origin: str
    payload: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.event}.{self.payload.get('action', '-')}:{self.origin.rsplit(' ', 1)[-1]}"


def examples() -> Iterator[Example]:
    """Yield every committed example payload (tests/payloads/*.json)."""
    for path in sorted(PAYLOADS.glob("*.json")):
        document = json.loads(path.read_text(encoding="utf-8"))
        for entry in document["examples"]:
            yield Example(document["event"], entry["origin"], entry["payload"])


def pull_request_payload(
    *,
    action: str = "opened",
    sha: str = SHA_A,
    repository: str = "octo-org/octo-repo",
    installation: int | None = 42,
    number: int = 7,
) -> dict[str, Any]:
    """A minimal pull_request payload with only what the App reads (plus a little noise)."""
    payload: dict[str, Any] = {
        "action": action,
        "number": number,
        "pull_request": {
            "number": number,
            "title": "noise the App ignores",
            "head": {"sha": sha, "ref": "feature", "repo": {"full_name": repository}},
        },
        "repository": {"full_name": repository, "private": True},
        "sender": {"login": "octocat"},
    }
    if installation is not None:
        payload["installation"] = {"id": installation}
    return payload


def spec(
    sha: str = SHA_A,
    *,
    kind: JobKind = JobKind.CHECK,
    repository: str = "octo-org/octo-repo",
    key: str | None = None,
) -> JobSpec:
    return JobSpec(
        kind=kind,
        installation_id=42,
        repository=repository,
        head_sha=sha,
        details={"pull_number": 7},
        dedupe_key=key or f"{kind.value}:{repository}:{sha}",
    )


def delivery(delivery_id: str | None = None, event: str = "pull_request") -> Delivery:
    return Delivery(
        delivery_id=delivery_id or str(uuid.uuid4()),
        event=event,
        action="opened",
        payload_sha256="0" * 64,
    )


class FakeClock:
    """A clock the test moves by hand (store leases and not_before)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingHandler:
    """A JobHandler whose behaviour per attempt is scripted: a value to return or to raise."""

    script: list[Any] = field(default_factory=list)
    runs: list[tuple[int, int]] = field(default_factory=list)  # (job id, attempt)
    given_up: list[tuple[int, str]] = field(default_factory=list)
    give_up_error: Exception | None = None
    check_run: int | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event | None = None

    async def run(self, job: Job, ctx: JobContext) -> str | None:
        self.runs.append((job.id, ctx.attempt))
        self.started.set()
        await ctx.audit("scanning", "looking at the artifacts", files=3)
        if self.check_run is not None:
            await ctx.set_check_run(self.check_run)
        if self.release is not None:
            await self.release.wait()
        outcome = self.script.pop(0) if self.script else "scanned: no finding"
        if isinstance(outcome, BaseException):
            raise outcome
        return str(outcome)

    async def give_up(self, job: Job, ctx: JobContext, reason: str) -> None:
        self.given_up.append((job.id, reason))
        if self.give_up_error is not None:
            raise self.give_up_error


def retry(reason: str = "GitHub answered 502", delay: float | None = 0.0) -> RetryLater:
    return RetryLater(reason, delay=delay)


async def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Poll an async or sync predicate until it is true (or fail after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
