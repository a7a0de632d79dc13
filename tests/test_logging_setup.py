"""Structured logging: JSON lines, text, delivery/job ids from context, secrets masked."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from bot.ops.logs import (
    MASK,
    configure_logging,
    forget_secrets,
    log_context,
    mask_secrets,
    register_secret,
    revealing,
)

log = logging.getLogger("tests.logging")


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    forget_secrets()


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_ids_from_context() -> None:
    stream = io.StringIO()
    configure_logging(level="info", fmt="json", stream=stream)
    with log_context(delivery_id="d-1", job_id=5):
        log.info("hello %s", "world", extra={"event": "pull_request"})
    log.info("outside")
    inside, outside = _json_lines(stream)
    assert inside["message"] == "hello world"
    assert inside["delivery_id"] == "d-1" and inside["job_id"] == 5
    assert inside["event"] == "pull_request" and inside["level"] == "info"
    assert str(inside["time"]).endswith("Z")
    assert "delivery_id" not in outside and "job_id" not in outside


def test_ids_follow_asyncio_tasks() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)

    async def job(n: int) -> None:
        with log_context(job_id=n):
            await asyncio.sleep(0)
            log.info("working")

    async def main() -> None:
        with log_context(delivery_id="outer"):
            await asyncio.gather(job(1), job(2))

    asyncio.run(main())
    records = _json_lines(stream)
    assert sorted(r["job_id"] for r in records) == [1, 2]  # type: ignore[type-var]
    assert {r["delivery_id"] for r in records} == {"outer"}


def test_text_format_for_a_terminal() -> None:
    stream = io.StringIO()
    configure_logging(fmt="text", stream=stream)
    with log_context(delivery_id="d-2", job_id=9):
        log.warning("careful", extra={"outcome": "queued"})
    line = stream.getvalue().strip()
    assert "WARNING" in line and "tests.logging" in line
    assert "[delivery=d-2 job=9]" in line and "careful" in line and "outcome=queued" in line


def test_format_defaults_to_json_when_not_a_terminal() -> None:
    stream = io.StringIO()  # isatty() is False
    configure_logging(stream=stream)
    log.info("x")
    assert json.loads(stream.getvalue())["message"] == "x"


def test_secrets_are_masked_everywhere() -> None:
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, secrets=["hunter2-webhook-secret"])
    register_secret("ghs_installationtoken123")
    log.info("secret is %s", "hunter2-webhook-secret", extra={"token": "ghs_installationtoken123"})
    try:
        raise RuntimeError("token ghs_installationtoken123 refused")
    except RuntimeError:
        log.exception("failed")
    text = stream.getvalue()
    assert "hunter2-webhook-secret" not in text
    assert "ghs_installationtoken123" not in text
    first, second = _json_lines(stream)
    assert first["message"] == f"secret is {MASK}" and first["token"] == MASK
    assert MASK in str(second["exc"])


def test_pem_keys_are_masked_whole_and_line_by_line() -> None:
    pem = (
        "-----BEGIN "
        "PRIVATE KEY-----\n"
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
        "BKcwggSjAgEAAoIBAQDdlatRjRjogo3W\n"
        "-----END "
        "PRIVATE KEY-----\n"
    )
    register_secret(pem)
    assert mask_secrets(f"key: {pem}") == f"key: {MASK}"
    assert "MIIEvQ" not in mask_secrets("line MIIEvQIBADANBgkqhkiG9w0BAQEFAASC leaked")
    header = "-----BEGIN " + "PRIVATE KEY-----"  # split: no key-shaped text is committed
    assert mask_secrets(header) == header
    assert MASK in mask_secrets(pem.replace("\n", "\\n"))


def test_one_record_may_reveal_a_secret_to_the_operator() -> None:
    """The setup token's start-up line shows it; no other record, field or traceback does."""
    token = "setup-token-0123456789abcdef"
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream, secrets=["hunter2-webhook-secret"])
    register_secret(token)
    log.warning(
        "open http://localhost:3000/?token=%s (not %s)",
        token,
        "hunter2-webhook-secret",
        extra={"url": f"/?token={token}", **revealing(token)},
    )
    log.info("later: %s", token)
    try:
        raise RuntimeError(f"refused {token}")
    except RuntimeError:
        log.exception("failed", extra=revealing("something-else-entirely"))
    first, later, failed = _json_lines(stream)
    assert first["message"] == f"open http://localhost:3000/?token={token} (not {MASK})"
    assert first["url"] == f"/?token={MASK}"  # only the message is spared
    assert set(first) == {"time", "level", "logger", "message", "url"}  # no field of its own
    assert later["message"] == f"later: {MASK}"
    assert token not in str(failed["exc"]) and MASK in str(failed["exc"])
    assert stream.getvalue().count(token) == 1


def test_revealing_never_cuts_a_longer_secret_apart() -> None:
    register_secret("outer-secret-with-inner-token-inside")
    register_secret("inner-token")
    stream = io.StringIO()
    configure_logging(fmt="json", stream=stream)
    log.warning("%s", "outer-secret-with-inner-token-inside", extra=revealing("inner-token"))
    [line] = _json_lines(stream)
    assert line["message"] == MASK


def test_short_values_are_not_masked() -> None:
    register_secret("abc")
    assert mask_secrets("abc abc") == "abc abc"


def test_configure_is_idempotent() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(fmt="json", stream=first)
    configure_logging(fmt="json", stream=second)
    log.info("once")
    assert first.getvalue() == "" and second.getvalue().count("once") == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nNot a header line\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
    ids=["bad-header", "header-too-long"],
)
async def test_a_clients_malformed_request_is_an_info_line_without_traceback(
    request_bytes: bytes,
) -> None:
    """aiohttp reports a malformed request with logger.exception; it is not the server's fault."""
    from aiohttp import web

    stream = io.StringIO()
    configure_logging(level="info", fmt="json", stream=stream)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        host, port = runner.addresses[0][:2]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(request_bytes)
        answer = await asyncio.wait_for(reader.read(), 30)
        writer.close()
    finally:
        await runner.cleanup()
    assert answer.split(b" ", 2)[1] == b"400"
    (line,) = [r for r in _json_lines(stream) if r["logger"] == "aiohttp.server"]
    assert line["level"] == "info"
    assert "exc" not in line
    assert str(line["message"]).startswith("Error handling request")
