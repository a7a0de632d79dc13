"""Receive webhook deliveries: verify, record durably, answer. Nothing else happens here.

Like kodiak's ingest, the handler does the least it can: size check, signature check over the
raw bytes (before any parsing), parse, route, and one transaction that records the delivery and
its jobs. The worker does the slow part later; GitHub waits at most 10 seconds for an answer
(https://docs.github.com/webhooks/using-webhooks/best-practices-for-using-webhooks).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import orjson
from aiohttp import web

from bot.app.body import (
    SIGNATURE_HEADER,
    Body,
    Busy,
    ByteBudget,
    ClientGone,
    TimedOut,
    TooLarge,
    Unreadable,
    read_body,
    signature_well_formed,
)
from bot.app.memory import MemoryReturn
from bot.events import MalformedPayload, route
from bot.ops.logs import log_context
from bot.ops.metrics import Metrics
from bot.settings import Settings, SettingsError
from bot.store.base import Delivery, Store, StoreError

log = logging.getLogger(__name__)

MAX_BODY: Final = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB and does not send larger
_OFFLOAD_BYTES: Final = 1024 * 1024  # parse and digest bigger bodies off the event loop
_EVENT = re.compile(r"[a-z][a-z0-9_]{0,63}")
_DELIVERY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
RETRY_AFTER_SECONDS: Final = 10
IN_FLIGHT: Final = web.AppKey("webhook_bodies_in_flight", ByteBudget)
"""The app's byte budget for bodies in flight (what `held` says is read by tests)."""


@dataclass(frozen=True, slots=True)
class WebLimits:
    """What an unauthenticated client may cost the webhook server.

    `header_timeout`: seconds for a connection to send a request's headers, from when it
    opens or from the end of its previous answer (aiohttp's keep-alive timer, which closes a
    connection whose next request is not complete in time). `body_timeout`: seconds for the
    whole body. `in_flight_bytes`: the bodies held at once, read but not yet answered, across
    all requests; past it a request is answered 503 with `Retry-After`. GitHub sends a whole
    delivery at once and waits 10 s for the answer (30 s on GitHub Enterprise Server,
    https://docs.github.com/webhooks/using-webhooks/best-practices-for-using-webhooks), so
    these are far from anything it needs; the budget holds four deliveries of the maximum size.
    """

    header_timeout: float = 10.0
    body_timeout: float = 30.0
    in_flight_bytes: int = 4 * MAX_BODY

    def server_options(self) -> dict[str, Any]:
        """Keyword arguments for `web.AppRunner` that apply these limits to each connection."""
        return {"keepalive_timeout": self.header_timeout}


def signature_matches(secret: bytes, body: bytes, header: str | None) -> bool:
    """Check `X-Hub-Signature-256` (`sha256=<hex HMAC of the body>`) in constant time."""
    if header is None or not header.isascii():
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), header.encode("ascii"))


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    outcome: str
    action: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # How the connection ends: "keep" (keep-alive), "linger" (Connection: close; aiohttp reads
    # and discards what is left of the body for up to 10 s so that the client, still sending,
    # receives the answer) or "drop" (answer and close at once, without reading any more).
    close: Literal["keep", "linger", "drop"] = "keep"


class _Webhooks:
    """The POST handler of WEBHOOK_PATH."""

    def __init__(
        self,
        store: Store,
        secret: bytes | None,
        on_recorded: Callable[[], None] | None,
        metrics: Metrics | None = None,
        limits: WebLimits | None = None,
    ) -> None:
        self._store = store
        self._secret = secret
        self._on_recorded = on_recorded
        self._metrics = metrics
        self._limits = limits if limits is not None else WebLimits()
        self.budget = ByteBudget(self._limits.in_flight_bytes)
        self._memory = MemoryReturn(self.budget)

    async def handle(self, request: web.Request) -> web.Response:
        delivery_id = request.headers.get("X-GitHub-Delivery", "")
        event = request.headers.get("X-GitHub-Event", "")
        known_id = delivery_id if _DELIVERY.fullmatch(delivery_id) else None
        with log_context(delivery_id=known_id):
            answer = await self._handle(request, delivery_id, event)
            log.info(
                "delivery %s %s%s: %s (%d)",
                known_id or "-",
                event if _EVENT.fullmatch(event) else "-",
                f".{answer.action}" if answer.action else "",
                answer.outcome,
                answer.status,
                extra={
                    "event": event,
                    "action": answer.action,
                    "outcome": answer.outcome,
                    "status": answer.status,
                },
            )
        if self._metrics is not None:
            self._metrics.delivery(event if _EVENT.fullmatch(event) else "", answer.outcome)
        response = web.json_response(
            {"outcome": answer.outcome, **answer.detail}, status=answer.status
        )
        if answer.status == 503 and answer.outcome == "busy":
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        if answer.close != "keep":
            response.force_close()
        if answer.close == "drop":
            with contextlib.suppress(ConnectionError):  # the client may be gone already
                await response.prepare(request)
                await response.write_eof()
            request.protocol.force_close()
        return response

    async def _handle(self, request: web.Request, delivery_id: str, event: str) -> _Answer:
        declared = request.content_length
        if declared is not None and declared > MAX_BODY:
            # Content-Length alone says too much: not a byte of the body is read.
            limit = {"limit": MAX_BODY, "declared": declared}
            return _Answer(413, "too_large", detail=limit, close="drop")
        signature = request.headers.get(SIGNATURE_HEADER)
        if self._secret is not None and not signature_well_formed(signature):
            # Nothing the body holds can change this answer: it is not read at all.
            why = "missing" if signature is None else "wrong"
            error = {"error": f"{why} signature"}
            return _Answer(401, "bad_signature", detail=error, close="linger")
        try:
            return await self._read_and_answer(request, signature, delivery_id, event)
        finally:
            self._memory.settle()

    async def _read_and_answer(
        self, request: web.Request, signature: str | None, delivery_id: str, event: str
    ) -> _Answer:
        try:
            body = await read_body(
                request.content,
                secret=self._secret,
                signature=signature,
                budget=self.budget,
                max_size=MAX_BODY,
                deadline=self._limits.body_timeout,
            )
        except TooLarge:
            return _Answer(413, "too_large", detail={"limit": MAX_BODY}, close="linger")
        except Busy:
            error = "too many deliveries in flight; retry later"
            return _Answer(503, "busy", detail={"error": error}, close="linger")
        except TimedOut:
            error = f"the body did not arrive within {self._limits.body_timeout:g} s"
            return _Answer(408, "timeout", detail={"error": error}, close="drop")
        except ClientGone:
            # Nobody to answer: aiohttp fails to write this quietly.
            return _Answer(400, "disconnected", detail={"error": "the client went away"})
        except Unreadable as exc:
            error = f"the body cannot be read: {exc}"
            return _Answer(400, "malformed", detail={"error": error}, close="drop")
        try:
            return await self._verified(body, delivery_id, event)
        finally:
            body.release()

    async def _verified(self, body: Body, delivery_id: str, event: str) -> _Answer:
        if self._secret is not None and not body.signed:
            return _Answer(401, "bad_signature", detail={"error": "wrong signature"})
        if not _EVENT.fullmatch(event) or not _DELIVERY.fullmatch(delivery_id):
            error = "missing or invalid X-GitHub-Event or X-GitHub-Delivery header"
            return _Answer(400, "malformed", detail={"error": error})
        offload = len(body.data) > _OFFLOAD_BYTES
        try:
            # orjson: parsing is the largest cost of an acknowledged delivery; on GitHub's
            # 24 KB pull_request example it takes 0.15 ms instead of json's 0.26 ms.
            data = body.data
            payload = await asyncio.to_thread(orjson.loads, data) if offload else orjson.loads(data)
        except (ValueError, RecursionError):
            return _Answer(400, "malformed", detail={"error": "the body is not JSON"})
        if not isinstance(payload, dict):
            return _Answer(400, "malformed", detail={"error": "the body is not a JSON object"})
        try:
            routed = route(event, payload)
        except MalformedPayload as exc:
            return _Answer(400, "malformed", detail={"error": str(exc)})
        if routed.ignored is not None:
            return _Answer(200, "ignored", routed.action, {"reason": routed.ignored})
        digest = await asyncio.to_thread(_sha256, data) if offload else _sha256(data)
        delivery = Delivery(
            delivery_id=delivery_id, event=event, action=routed.action, payload_sha256=digest
        )
        try:
            recorded = await self._store.record_delivery(delivery, routed.jobs)
        except StoreError:
            log.exception("cannot record delivery %s", delivery_id)
            error = "the database is unavailable"
            return _Answer(503, "unavailable", routed.action, {"error": error})
        if not recorded:
            return _Answer(200, "duplicate", routed.action)
        if self._on_recorded is not None:
            self._on_recorded()
        return _Answer(202, "queued", routed.action, {"jobs": len(routed.jobs)})


def _sha256(data: bytearray) -> str:
    return hashlib.sha256(data).hexdigest()


def make_app(
    settings: Settings,
    store: Store,
    *,
    on_recorded: Callable[[], None] | None = None,
    allow_unsigned: bool = False,
    ready_timeout: float = 2.0,
    metrics: Metrics | None = None,
    limits: WebLimits | None = None,
) -> web.Application:
    """Build the web application: the webhook endpoint, `/healthz`, `/readyz` and `/metrics`.

    Without `settings.webhook_secret` the app refuses to be built unless `allow_unsigned` (a
    local demo) says otherwise. `on_recorded` is called after each recorded delivery (the
    embedded worker's `notify`). `metrics` is shared with the embedded worker; without it the
    app counts its deliveries in a `Metrics` of its own. `limits` bounds what unauthenticated
    clients may cost; its header timeout applies only where the runner is given
    `limits.server_options()` (`serve` does).
    """
    secret = settings.webhook_secret
    if secret is None and not allow_unsigned:
        raise SettingsError("WEBHOOK_SECRET is not set: refusing to accept unsigned deliveries")
    app = web.Application(client_max_size=MAX_BODY)
    metrics = metrics if metrics is not None else Metrics()
    webhooks = _Webhooks(
        store,
        secret.reveal().encode() if secret is not None else None,
        on_recorded,
        metrics,
        limits,
    )

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        try:
            ready = await asyncio.wait_for(store.ping(), ready_timeout)
        except TimeoutError:
            ready = False
        if ready:
            return web.Response(text="ready\n")
        return web.Response(status=503, text="database unreachable\n")

    app[IN_FLIGHT] = webhooks.budget
    app.router.add_post(settings.webhook_path, webhooks.handle)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics.handle)
    return app
