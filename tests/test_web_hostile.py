"""The webhook endpoint against hostile clients, in this process (issue 16).

Bodies past the in-flight budget (503 with Retry-After), bodies that never end (408), clients
that leave mid-body (an info line, no traceback), values the stores cannot hold (400 on SQLite
and PostgreSQL alike), and a seeded fuzz of GitHub's example payloads, validly signed, that
must only ever be answered 200, 202 or 400. tests/test_serve_hostile.py runs the real
`release-guard serve` for what needs a process of its own (memory, header timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from bot.app.web import IN_FLIGHT, RETRY_AFTER_SECONDS, WebLimits, make_app
from bot.events import ROUTES
from bot.secrets import Secret
from bot.settings import Settings
from bot.store import PostgresStore, SqliteStore
from tests.apphelpers import examples, new_secret, pull_request_payload, sign, wait_until

pytestmark = pytest.mark.asyncio

PATH = "/api/github/webhooks"
AnyStore = SqliteStore | PostgresStore
Client = TestClient[web.Request, web.Application]
AiohttpClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def secret() -> str:
    return new_secret()


async def new_client(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    store: AnyStore,
    secret: str,
    limits: WebLimits | None = None,
) -> Client:
    settings = Settings.for_data_dir(tmp_path, webhook_secret=Secret(secret))
    return await aiohttp_client(make_app(settings, store, limits=limits))


def headers(secret: str, body: bytes, event: str, delivery: str) -> dict[str, str]:
    return {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": sign(secret, body),
        "Content-Type": "application/json",
    }


def raw_head(secret: str, body: bytes, delivery: str, event: str = "pull_request") -> bytes:
    """The request line and headers of a signed POST whose body follows separately."""
    lines = [f"POST {PATH} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers(secret, body, event, delivery).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def records(store: AnyStore) -> int:
    if isinstance(store, SqliteStore):
        rows = await store.execute("SELECT count(*) FROM deliveries")
        return int(rows[0][0])
    return len(await store.list_jobs())


def padded(payload: dict[str, Any], size: int) -> bytes:
    text = json.dumps(payload)
    return (text[:-1] + ', "padding": "' + "x" * (size - len(text) - 15) + '"}').encode()


# -- the in-flight budget -----------------------------------------------------------------


async def test_bodies_past_the_in_flight_budget_are_503_with_retry_after(
    aiohttp_client: AiohttpClient, tmp_path: Path, secret: str
) -> None:
    store = SqliteStore(tmp_path / "rg.sqlite3")
    await store.open()
    limits = WebLimits(in_flight_bytes=256 * 1024)
    client = await new_client(aiohttp_client, tmp_path, store, secret, limits)
    budget = client.app[IN_FLIGHT]
    # A: a valid delivery of 200 KiB, all but its last byte sent: it holds the budget.
    big = padded(pull_request_payload(), 200 * 1024)
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(raw_head(secret, big, "held") + big[:-1])
    await writer.drain()
    await wait_until(lambda: budget.held == len(big) - 1)
    # B: 100 KiB more would pass the budget.
    other = padded(pull_request_payload(action="reopened"), 100 * 1024)
    response = await client.post(
        PATH, data=other, headers=headers(secret, other, "pull_request", "b")
    )
    assert response.status == 503
    assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert (await response.json())["outcome"] == "busy"
    assert budget.held == len(big) - 1  # B's bytes were given back
    # A ends: it is recorded, and its bytes are given back once it is answered.
    writer.write(big[-1:])
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n"), 30)
    assert answer.startswith(b"HTTP/1.1 202")
    writer.close()
    await wait_until(lambda: budget.held == 0)
    # B sent again (as GitHub's redelivery would) now fits.
    response = await client.post(
        PATH, data=other, headers=headers(secret, other, "pull_request", "b")
    )
    assert response.status == 202
    assert budget.held == 0
    assert await records(store) == 2
    await store.close()


async def test_a_body_that_does_not_arrive_in_time_is_408_and_closed(
    aiohttp_client: AiohttpClient, tmp_path: Path, secret: str
) -> None:
    store = SqliteStore(tmp_path / "rg.sqlite3")
    await store.open()
    client = await new_client(aiohttp_client, tmp_path, store, secret, WebLimits(body_timeout=0.5))
    body = json.dumps(pull_request_payload()).encode()
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(raw_head(secret, body, "slow") + body[:10])
    await writer.drain()
    # The liveness bound only: the server answers and closes long before it.
    answer = await asyncio.wait_for(reader.read(), 30)
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"Connection: close" in answer
    assert client.app[IN_FLIGHT].held == 0
    assert await records(store) == 0
    writer.close()
    await store.close()


@contextlib.asynccontextmanager
async def listening(app: web.Application) -> AsyncIterator[tuple[str, int]]:
    """Serve `app` on loopback as `serve` does (aiohttp's test server cancels the handlers of
    closed connections; `serve`'s runner lets them run, and see the connection lost)."""
    runner = web.AppRunner(app, handle_signals=False, **WebLimits().server_options())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        yield host, port
    finally:
        await runner.cleanup()


@pytest.mark.parametrize("server", ["serve", "cancelling"])
async def test_a_client_gone_mid_body_is_an_info_line_without_traceback(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    secret: str,
    caplog: pytest.LogCaptureFixture,
    server: str,
) -> None:
    store = SqliteStore(tmp_path / "rg.sqlite3")
    await store.open()
    settings = Settings.for_data_dir(tmp_path, webhook_secret=Secret(secret))
    app = make_app(settings, store)
    body = padded(pull_request_payload(), 1024 * 1024)
    with caplog.at_level(logging.DEBUG):
        async with contextlib.AsyncExitStack() as stack:
            if server == "serve":
                host, port = await stack.enter_async_context(listening(app))
            else:
                client = await aiohttp_client(app)
                host, port = str(client.server.host), int(client.server.port or 0)
            for number in range(5):
                _, writer = await asyncio.open_connection(host, port)
                writer.write(raw_head(secret, body, f"gone-{number}") + body[: 300 * 1024])
                await writer.drain()
                await wait_until(lambda: app[IN_FLIGHT].held > 0)  # the body is being read
                writer.close()
                await writer.wait_closed()
                await wait_until(lambda: app[IN_FLIGHT].held == 0)
            if server == "serve":
                lines = [r for r in caplog.records if getattr(r, "outcome", None)]
                assert [(r.levelno, r.outcome) for r in lines] == [  # type: ignore[attr-defined]
                    (logging.INFO, "disconnected")
                ] * 5
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert [r for r in caplog.records if r.exc_info] == []
    assert await records(store) == 0
    await store.close()


# -- values out of range ----------------------------------------------------------------


@pytest.mark.parametrize("value", [2**63, 2**64 - 1, -1, 0, -(2**63) - 1])
async def test_installation_ids_outside_the_stores_range_are_400(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    any_store: AnyStore,
    secret: str,
    value: int,
) -> None:
    client = await new_client(aiohttp_client, tmp_path, any_store, secret)
    expected: dict[str, int] = {}
    for number, example in enumerate(examples()):
        if "installation" not in example.payload:
            continue
        # A payload of an event and action the App parses has its id read: 400. What it
        # ignores unread (other events, other actions) stays 200.
        actions = ROUTES[example.event][0] if example.event in ROUTES else frozenset()
        acted_on = example.payload.get("action") in actions
        payload = copy.deepcopy(example.payload)
        payload["installation"]["id"] = value
        body = json.dumps(payload).encode()
        response = await client.post(
            PATH, data=body, headers=headers(secret, body, example.event, f"d-{number}")
        )
        assert response.status == (400 if acted_on else 200), example.origin
        expected[example.origin] = response.status
    assert 400 in expected.values(), "no example payload the App acts on was sent"
    assert await records(any_store) == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (("pull_request", "number"), 2**63),
        (("pull_request", "number"), -7),
        (("pull_request", "head", "ref"), "main\u0000evil"),
        (("repository", "full_name"), "octo-org/octo\u0000repo"),
    ],
)
async def test_other_values_the_stores_cannot_hold_are_400(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    any_store: AnyStore,
    secret: str,
    field: tuple[str, ...],
    value: object,
) -> None:
    client = await new_client(aiohttp_client, tmp_path, any_store, secret)
    payload = pull_request_payload()
    target = payload
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    body = json.dumps(payload).encode()
    response = await client.post(
        PATH, data=body, headers=headers(secret, body, "pull_request", "x")
    )
    assert response.status == 400
    assert (await response.json())["outcome"] == "malformed"
    assert await records(any_store) == 0


# -- the fuzz -----------------------------------------------------------------------------

_HOSTILE: list[Any] = [
    2**63,
    2**63 - 1,
    2**64 - 1,
    2**64,
    -(2**63),
    -(2**63) - 1,
    -1,
    0,
    1.5,
    1e308,
    True,
    None,
    "",
    "\u0000",
    "a\u0000b",
    "x" * 5000,
    "\u202e\U0001f600",
    [],
    {},
    [None],
    {"id": 2**64 - 1},
    "0" * 40,
]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


def _set(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return document


def _delete(document: Any, path: tuple[Any, ...]) -> Any:
    if not path:
        return document
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return document


def mutations(seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    """Yield (event, body): GitHub's examples with values replaced, deleted or bytes broken.

    Half the time the value replaced is one at most three levels down one of the objects
    the App reads (`installation.id`, `pull_request.head.ref`, ...), so that most mutations
    reach the models rather than noise they never look at.
    """
    rng = random.Random(seed)
    pool = list(examples())
    read = ("installation", "repository", "pull_request", "check_suite", "check_run")
    read += ("workflow_run", "release", "deployment", "issue", "comment", "action", "sender")
    for _ in range(count):
        example = rng.choice(pool)
        document = copy.deepcopy(example.payload)
        paths = list(_paths(document))
        preferred = [p for p in paths if p and p[0] in read and len(p) <= 3]
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(preferred if preferred and rng.random() < 0.5 else paths)
            if rng.random() < 0.2 and path:
                document = _delete(document, path)
            else:
                document = _set(document, path, copy.deepcopy(rng.choice(_HOSTILE)))
            paths = list(_paths(document))
            preferred = [p for p in paths if p and p[0] in read and len(p) <= 3]
        body = json.dumps(document).encode()
        if rng.random() < 0.1:  # a broken byte or a cut: still signed, not JSON any more
            cut = rng.randrange(len(body))
            body = body[:cut] if rng.random() < 0.5 else body[:cut] + b"\xff" + body[cut + 1 :]
        yield example.event, body


async def test_a_fuzz_of_signed_example_payloads_is_only_ever_200_202_or_400(
    aiohttp_client: AiohttpClient,
    tmp_path: Path,
    any_store: AnyStore,
    secret: str,
) -> None:
    client = await new_client(aiohttp_client, tmp_path, any_store, secret)
    seen: dict[int, int] = {}
    for number, (event, body) in enumerate(mutations(seed=16, count=400)):
        response = await client.post(
            PATH, data=body, headers=headers(secret, body, event, f"fuzz-{number}")
        )
        seen[response.status] = seen.get(response.status, 0) + 1
        assert response.status in (200, 202, 400), (event, body[:300], await response.text())
    # The fuzz reaches every answer: it is not all thrown away at the JSON parser.
    assert set(seen) == {200, 202, 400}, seen
