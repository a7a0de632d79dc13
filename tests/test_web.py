"""The webhook endpoint and health checks: CONTRACT's HTTP answers; nothing recorded unsigned."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.app.web import MAX_BODY, make_app, signature_matches
from bot.events import JobSpec
from bot.secrets import Secret
from bot.settings import Settings, SettingsError
from bot.store import SqliteStore, StoreError
from bot.store.base import Delivery
from tests.apphelpers import (
    Example,
    examples,
    new_secret,
    pull_request_payload,
    sign,
    webhook_headers,
)

pytestmark = pytest.mark.asyncio

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
PATH = "/api/github/webhooks"


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "rg.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def notified() -> list[int]:
    return []


@pytest_asyncio.fixture
async def client(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    store: SqliteStore,
    secret: str,
    notified: list[int],
) -> TestClient[web.Request, web.Application]:
    settings = Settings.for_data_dir(tmp_path, webhook_secret=Secret(secret))
    app = make_app(settings, store, on_recorded=lambda: notified.append(1))
    return await aiohttp_client(app)


async def post(
    client: TestClient[web.Request, web.Application],
    secret: str | None,
    payload: Any,
    event: str = "pull_request",
    delivery: str | None = None,
    *,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    sent = webhook_headers(secret, body, event, delivery)
    sent.update(headers or {})
    data = io.BytesIO(body) if len(body) > 1 << 20 else body  # aiohttp warns on big bytes
    response = await client.post(PATH, data=data, headers=sent)
    return response.status, await response.json()


async def recorded(store: SqliteStore) -> tuple[int, int]:
    deliveries = await store.execute("SELECT count(*) FROM deliveries")
    jobs = await store.execute("SELECT count(*) FROM jobs")
    return deliveries[0][0], jobs[0][0]


async def test_a_signed_delivery_is_recorded_then_accepted(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
    secret: str,
    notified: list[int],
) -> None:
    status, body = await post(client, secret, pull_request_payload(), delivery="d-1")
    assert (status, body) == (202, {"outcome": "queued", "jobs": 1})
    (job,) = await store.list_jobs()
    assert (job.delivery_id, job.repository, job.installation_id) == (
        "d-1",
        "octo-org/octo-repo",
        42,
    )
    assert notified == [1]


@pytest.mark.parametrize("signature", [None, "sha256=" + "0" * 64, "sha1=abc", "sha256=é"])
async def test_a_bad_or_missing_signature_is_401_and_records_nothing(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
    signature: str | None,
) -> None:
    headers = {} if signature is None else {"X-Hub-Signature-256": signature}
    body = json.dumps(pull_request_payload()).encode()
    sent = webhook_headers(None, body, "pull_request")
    sent.update(headers)
    response = await client.post(PATH, data=body, headers=sent)
    assert response.status == 401
    assert await recorded(store) == (0, 0)


async def test_a_signature_made_with_another_secret_is_401(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
) -> None:
    status, _ = await post(client, new_secret(), pull_request_payload())
    assert status == 401
    assert await recorded(store) == (0, 0)


async def test_the_signature_covers_the_exact_bytes(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
    secret: str,
) -> None:
    body = json.dumps(pull_request_payload()).encode()
    headers = webhook_headers(secret, body, "pull_request")
    response = await client.post(PATH, data=body + b" ", headers=headers)
    assert response.status == 401


async def test_a_duplicate_delivery_is_200_and_one_job(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
    secret: str,
    notified: list[int],
) -> None:
    payload = pull_request_payload()
    assert (await post(client, secret, payload, delivery="same"))[0] == 202
    status, body = await post(client, secret, payload, delivery="same")
    assert (status, body["outcome"]) == (200, "duplicate")
    assert await recorded(store) == (1, 1)
    assert notified == [1]


async def test_the_same_work_from_two_deliveries_is_one_job(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
    secret: str,
) -> None:
    assert (await post(client, secret, pull_request_payload(action="opened")))[0] == 202
    assert (await post(client, secret, pull_request_payload(action="reopened")))[0] == 202
    assert await recorded(store) == (2, 1)


async def _raw_request(
    client: TestClient[web.Request, web.Application], head: bytes, chunks: Sequence[bytes] = ()
) -> bytes:
    """Send a request by hand (a test client would not send a lying or huge request)."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(head)
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
        return await asyncio.wait_for(reader.read(), 20)
    finally:
        writer.close()


async def test_over_25_mib_by_content_length_is_413_without_reading(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
    secret: str,
) -> None:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
        f"X-GitHub-Delivery: big\r\nContent-Type: application/json\r\n"
        f"Content-Length: {MAX_BODY + 1}\r\n\r\n"
    ).encode()
    answer = await _raw_request(client, head)  # not one byte of the body is sent
    assert answer.startswith(b"HTTP/1.1 413")
    assert await recorded(store) == (0, 0)


async def test_over_25_mib_streamed_is_413(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
) -> None:
    # A signature of the right shape: the body must be read (and hashed) to judge it.
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
        f"X-Hub-Signature-256: sha256={'0' * 64}\r\n"
        "X-GitHub-Delivery: big\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    mib = b"x" * (1 << 20)
    chunk = f"{len(mib):x}\r\n".encode() + mib + b"\r\n"
    answer = await _raw_request(client, head, [chunk] * 27 + [b"0\r\n\r\n"])
    assert answer.startswith(b"HTTP/1.1 413")
    assert await recorded(store) == (0, 0)


@pytest.mark.parametrize("signature", [None, "sha256=", "sha256=" + "0" * 63, "sha1=" + "0" * 40])
async def test_a_body_without_a_well_formed_signature_is_401_before_it_is_read(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
    signature: str | None,
) -> None:
    """No body can make a missing or misshapen signature right: nothing of it is kept."""
    header = "" if signature is None else f"X-Hub-Signature-256: {signature}\r\n"
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n{header}"
        "X-GitHub-Delivery: big\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    mib = b"x" * (1 << 20)
    chunk = f"{len(mib):x}\r\n".encode() + mib + b"\r\n"
    answer = await _raw_request(client, head, [chunk] * 27 + [b"0\r\n\r\n"])
    assert answer.startswith(b"HTTP/1.1 401")
    assert b"Connection: close" in answer
    assert await recorded(store) == (0, 0)


async def test_exactly_25_mib_is_read(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
    secret: str,
) -> None:
    payload = pull_request_payload()
    text = json.dumps(payload)
    body = text[:-1] + ', "padding": "' + "x" * (MAX_BODY - len(text) - 15) + '"}'
    assert len(body) == MAX_BODY
    status, _ = await post(client, secret, body.encode())
    assert status == 202


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"not json", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'"text"', "not a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
)
async def test_malformed_bodies_are_400(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
    secret: str,
    body: bytes,
    error: str,
) -> None:
    status, answer = await post(client, secret, body)
    assert status == 400 and error in answer["error"]
    assert await recorded(store) == (0, 0)


@pytest.mark.parametrize("missing", ["X-GitHub-Event", "X-GitHub-Delivery"])
async def test_missing_github_headers_are_400(
    client: TestClient[web.Request, web.Application],
    secret: str,
    missing: str,
) -> None:
    body = json.dumps(pull_request_payload()).encode()
    headers = webhook_headers(secret, body, "pull_request")
    del headers[missing]
    response = await client.post(PATH, data=body, headers=headers)
    assert response.status == 400


async def test_a_payload_the_model_rejects_is_400(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
    secret: str,
) -> None:
    payload = pull_request_payload()
    del payload["pull_request"]["head"]["sha"]
    status, answer = await post(client, secret, payload)
    assert (status, answer["error"]) == (400, "pull_request.head.sha: missing")
    assert await recorded(store) == (0, 0)


@pytest.mark.parametrize(
    ("event", "payload"),
    [
        ("ping", {"zen": "Design for failure.", "hook_id": 1}),
        ("installation", {"action": "created", "installation": {"id": 1}}),
        ("push", {"ref": "refs/heads/main"}),
        ("pull_request", pull_request_payload(action="closed")),
        ("pull_request", pull_request_payload(installation=None)),
    ],
)
async def test_ignored_events_are_200_and_not_recorded(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
    secret: str,
    event: str,
    payload: dict[str, Any],
) -> None:
    status, answer = await post(client, secret, payload, event)
    assert (status, answer["outcome"]) == (200, "ignored")
    assert await recorded(store) == (0, 0)


@pytest.mark.parametrize("example", list(examples()), ids=lambda e: e.id)
async def test_every_example_payload_is_answered_2xx(
    client: TestClient[web.Request, web.Application],
    secret: str,
    example: Example,
) -> None:
    for payload in (example.payload, {**example.payload, "installation": {"id": 5}}):
        status, _ = await post(client, secret, payload, example.event)
        assert 200 <= status < 300, example.origin


async def test_health_and_readiness(
    client: TestClient[web.Request, web.Application],
    store: SqliteStore,
) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    await store.close()  # the database goes away
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200


class BrokenStore(SqliteStore):
    """A store whose database is unreachable, or hangs."""

    def __init__(self, hang: bool = False) -> None:
        super().__init__(Path("/nonexistent/rg.sqlite3"))
        self.hang = hang

    async def ping(self) -> bool:
        if self.hang:
            await asyncio.sleep(60)
        return False

    async def record_delivery(self, delivery: Delivery, jobs: Sequence[JobSpec]) -> bool:
        raise StoreError("disk I/O error")


async def test_readyz_is_503_when_the_database_hangs(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    settings = Settings.for_data_dir(tmp_path, webhook_secret=Secret("x" * 20))
    app = make_app(settings, BrokenStore(hang=True), ready_timeout=0.1)
    client = await aiohttp_client(app)
    assert (await client.get("/readyz")).status == 503


async def test_an_unreachable_database_is_503_for_deliveries(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    secret: str,
) -> None:
    settings = Settings.for_data_dir(tmp_path, webhook_secret=Secret(secret))
    client = await aiohttp_client(make_app(settings, BrokenStore()))
    status, answer = await post(client, secret, pull_request_payload())
    assert (status, answer["outcome"]) == (503, "unavailable")


async def test_without_a_secret_the_app_is_not_built(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="WEBHOOK_SECRET"):
        make_app(Settings.for_data_dir(tmp_path), BrokenStore())


async def test_a_local_demo_accepts_unsigned_deliveries(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    store: SqliteStore,
) -> None:
    app = make_app(Settings.for_data_dir(tmp_path), store, allow_unsigned=True)
    client = await aiohttp_client(app)
    status, _ = await post(client, None, pull_request_payload())
    assert status == 202


async def test_webhook_path_is_configurable(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    store: SqliteStore,
    secret: str,
) -> None:
    settings = Settings.for_data_dir(tmp_path, webhook_secret=Secret(secret), webhook_path="/gh")
    client = await aiohttp_client(make_app(settings, store))
    body = json.dumps(pull_request_payload()).encode()
    response = await client.post(
        "/gh", data=body, headers=webhook_headers(secret, body, "pull_request")
    )
    assert response.status == 202
    assert (await client.post(PATH, data=body)).status == 404


async def test_one_log_line_per_delivery(
    client: TestClient[web.Request, web.Application],
    secret: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="bot.app.web"):
        await post(client, secret, pull_request_payload(), delivery="log-1")
        await post(client, None, pull_request_payload(), delivery="log-2")
    lines = [r for r in caplog.records if r.name == "bot.app.web"]
    assert len(lines) == 2
    first, second = lines
    assert first.getMessage() == "delivery log-1 pull_request.opened: queued (202)"
    assert (first.event, first.action, first.outcome) == ("pull_request", "opened", "queued")  # type: ignore[attr-defined]
    assert second.outcome == "bad_signature" and second.status == 401  # type: ignore[attr-defined]


async def test_signature_matches() -> None:
    body = b'{"a": 1}'
    good = sign("k" * 10, body)
    assert signature_matches(b"k" * 10, body, good)
    assert not signature_matches(b"k" * 10, body, good.upper())
    assert not signature_matches(b"k" * 10, body, None)
    assert not signature_matches(b"k" * 10, body, "sha256=\u00e9")
