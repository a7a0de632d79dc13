"""Register the App end to end in headless Chromium: `serve` without APP_ID, the setup page
refusing a browser without the setup token, then opened at the address the start-up log line
gives, the GitHub double's "Create GitHub App" page, back to the callback, on to the
installation page.

Chromium is Debian's `chromium` package, driven by Playwright for Python with
`executable_path` (Playwright's own browser download is never used). Without either, the test
skips with the reason (and fails under `.ci/run`, which turns skips into failures).
Screenshots for a person to look at go to `build/screenshots/` (or RELEASE_GUARD_SCREENSHOTS).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import shutil
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from bot.app.serve import serve
from bot.double.server import GitHubDouble
from bot.ops.logs import configure_logging, forget_secrets
from bot.secrets import PrivateKey
from bot.settings import Settings, read_dotenv
from tests.apphelpers import wait_until, webhook_headers

pytest_plugins = ["tests.ghdouble.fixtures"]

CHROMIUM = os.environ.get("RELEASE_GUARD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(
    os.environ.get("RELEASE_GUARD_SCREENSHOTS", Path(__file__).parents[1] / "build" / "screenshots")
)


def _browser_or_skip() -> None:
    pytest.importorskip(
        "playwright.async_api",
        reason="Playwright for Python is not installed (pip install -e '.[dev]')",
    )
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(autouse=True)
def _forget_registered_secrets() -> Iterator[None]:
    yield
    forget_secrets()


def _setup_address(log: io.StringIO) -> str:
    """The address the start-up log line tells the operator to open (it carries the token)."""
    for line in log.getvalue().splitlines():
        message = json.loads(line)["message"]
        if "?token=" in message:
            address: str = message.split("open ", 1)[1].split(" ", 1)[0]
            return address
    raise AssertionError("serve printed no setup address")


@pytest.mark.asyncio
async def test_register_install_and_serve_in_chromium(
    ghdouble: GitHubDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _browser_or_skip()
    log = io.StringIO()
    handler = configure_logging(level="info", fmt="json", stream=log)
    try:
        await _register_install_and_serve(ghdouble, tmp_path, monkeypatch, log)
    finally:
        logging.getLogger().removeHandler(handler)


async def _register_install_and_serve(
    ghdouble: GitHubDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log: io.StringIO
) -> None:
    from playwright.async_api import async_playwright

    monkeypatch.chdir(tmp_path)
    for name in ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / ".env").write_text("# kept\nLOG_LEVEL=info\n")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("setup-*.png"):
        old.unlink()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings.for_data_dir(
        tmp_path / "data",
        github_api_url=ghdouble.api_url,
        github_url=ghdouble.web_url,
        host="127.0.0.1",
        port=port,
    )
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop=stop))
    try:
        await wait_until(lambda: _listening(port), timeout=10)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            try:
                # Whoever reaches the server without the token gets nothing to click.
                stranger = await browser.new_page()
                refused = await stranger.goto(base + "/")
                assert refused is not None and refused.status == 403
                assert await stranger.title() == "Setup token required"
                assert await stranger.locator("#register").count() == 0
                await stranger.screenshot(path=SCREENSHOTS / "setup-0-no-token.png")
                await stranger.close()

                page = await browser.new_page()
                address = _setup_address(log)
                assert address.startswith(base + "/?token=")
                await page.goto(address)
                assert page.url == base + "/"  # the token left the address bar
                assert await page.title() == "Register release-guard as a GitHub App"
                assert str(tmp_path) not in await page.content()
                await page.screenshot(path=SCREENSHOTS / "setup-1-page.png", full_page=True)

                await page.check("input[name=owner][value=organization]")
                await page.fill("input[name=organization]", "octo-org")
                await page.click("#register")
                await page.wait_for_url(
                    f"{ghdouble.web_url}/organizations/octo-org/settings/apps/new?state=*"
                )
                assert "Create GitHub App" in await page.inner_text("#create")
                await page.screenshot(path=SCREENSHOTS / "setup-2-github.png", full_page=True)

                await page.click("#create")
                await page.wait_for_url(f"{ghdouble.web_url}/apps/*/installations/new")
                await page.screenshot(path=SCREENSHOTS / "setup-3-install.png", full_page=True)
                assert page.url == (
                    f"{ghdouble.web_url}/apps/{ghdouble.app_slug}/installations/new"
                )

                # The setup page is gone: the same address now serves the App.
                await wait_until(lambda: _serves_webhooks(base), timeout=10)
                gone = await page.goto(base + "/")
                assert gone is not None and gone.status == 404
            finally:
                await browser.close()

        [registration] = ghdouble.pages.registrations
        assert registration.owner == "octo-org"
        manifest = registration.manifest
        assert manifest["hook_attributes"]["url"] == base + "/api/github/webhooks"
        assert manifest["redirect_url"] == base + "/setup/callback"
        assert manifest["default_permissions"]["checks"] == "write"

        env = tmp_path / ".env"
        assert stat.S_IMODE(env.stat().st_mode) == 0o600
        values = read_dotenv(env)
        assert values["LOG_LEVEL"] == "info" and env.read_text().startswith("# kept\n")
        assert values["APP_ID"] == str(ghdouble.app_id)
        assert values["WEBHOOK_SECRET"] == registration.webhook_secret
        key = PrivateKey.from_text(values["PRIVATE_KEY"])
        assert key.public_fingerprint == ghdouble.private_key.public_fingerprint
        assert set(values) == {"LOG_LEVEL", "APP_ID", "PRIVATE_KEY", "WEBHOOK_SECRET"}

        # A delivery signed with the secret GitHub generated is accepted.
        body = json.dumps({"zen": "Design for failure.", "hook_id": 1}).encode()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                base + "/api/github/webhooks",
                data=body,
                headers=webhook_headers(registration.webhook_secret, body, "ping"),
            ) as answer,
        ):
            assert answer.status == 200
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=20)

    shots = sorted(p.name for p in SCREENSHOTS.glob("setup-*.png"))
    assert shots == [
        "setup-0-no-token.png",
        "setup-1-page.png",
        "setup-2-github.png",
        "setup-3-install.png",
    ]
    assert all((SCREENSHOTS / name).stat().st_size > 1000 for name in shots)
    print(f"screenshots: {SCREENSHOTS}")


async def _serves_webhooks(base: str) -> bool:
    try:
        async with aiohttp.ClientSession() as session, session.get(base + "/metrics") as answer:
            return answer.status == 200
    except aiohttp.ClientConnectionError:
        return False


def test_chromium_is_debians_package() -> None:
    """The browser the test drives is a system package, not a Playwright download."""
    _browser_or_skip()
    assert shutil.which("chromium") or os.path.isfile(CHROMIUM)
    assert not CHROMIUM.startswith(str(Path.home() / ".cache" / "ms-playwright"))
