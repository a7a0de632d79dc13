"""The setup page: the manifest it sends, the state it checks, the `.env` it writes, and `serve`
going from the setup page to serving webhooks. (`test_setup_browser.py` clicks through it in
Chromium.)"""

from __future__ import annotations

import asyncio
import html
import json
import os
import socket
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import make_mocked_request
from yarl import URL

from bot.app import setup_page
from bot.app.serve import serve
from bot.app.setup_page import (
    CALLBACK_PATH,
    STATE_COOKIE,
    Registration,
    SetupError,
    SetupPage,
    build_manifest,
    creation_url,
    load_manifest,
    make_setup_app,
    public_url_of,
    save_credentials,
)
from bot.double.server import GitHubDouble
from bot.ops.logs import forget_secrets
from bot.secrets import PrivateKey, Secret
from bot.settings import Settings, SettingsError, read_dotenv
from tests.apphelpers import wait_until, webhook_headers

pytest_plugins = ["tests.ghdouble.fixtures"]

APP_YML = Path(__file__).parents[1] / "app.yml"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(autouse=True)
def _forget_registered_secrets() -> Iterator[None]:
    yield
    forget_secrets()


# -- the manifest -------------------------------------------------------------------------------


def test_manifest_is_app_yml_with_this_servers_urls() -> None:
    base = load_manifest(APP_YML)
    manifest = build_manifest(
        base, public_url="https://rg.example.com", webhook_path="/api/github/webhooks"
    )
    assert manifest["hook_attributes"] == {
        "url": "https://rg.example.com/api/github/webhooks",
        "active": True,
    }
    assert manifest["redirect_url"] == "https://rg.example.com/setup/callback"
    assert manifest["default_permissions"] == base["default_permissions"]
    assert manifest["default_events"] == base["default_events"]
    assert manifest["name"] == "release-guard" and manifest["public"] is False
    assert "setup_url" not in manifest
    assert base["hook_attributes"]["url"] == "https://example.com/api/github/webhooks"  # untouched
    json.dumps(manifest)  # what the form carries


def test_a_manifest_without_a_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "app.yml").write_text("- a list\n")
    with pytest.raises(SetupError, match="mapping"):
        load_manifest(tmp_path / "app.yml")
    (tmp_path / "app.yml").write_text("name: [unclosed\n")
    with pytest.raises(SetupError, match="cannot read"):
        load_manifest(tmp_path / "app.yml")


def test_the_working_directorys_app_yml_wins(tmp_path: Path) -> None:
    assert setup_page.find_manifest(tmp_path) == APP_YML  # the source checkout's
    (tmp_path / "app.yml").write_text("name: mine\n")
    assert setup_page.find_manifest(tmp_path) == tmp_path / "app.yml"


@pytest.mark.parametrize(
    ("headers", "configured", "expected"),
    [
        ({"Host": "10.0.0.5:3000"}, None, "http://10.0.0.5:3000"),
        (
            {"Host": "internal:3000", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "rg.io"},
            None,
            "https://rg.io",
        ),
        ({"Host": "a", "X-Forwarded-Proto": "https, http"}, None, "https://a"),
        ({"Host": "a"}, "https://public.example", "https://public.example"),
    ],
)
def test_public_url(headers: dict[str, str], configured: str | None, expected: str) -> None:
    request = make_mocked_request("GET", "/", headers=headers)
    assert public_url_of(request, configured) == expected


def test_a_forged_host_header_is_refused() -> None:
    request = make_mocked_request("GET", "/", headers={"Host": "evil.com/<script>"})
    with pytest.raises(aiohttp.web.HTTPBadRequest):
        public_url_of(request, None)


def test_creation_urls() -> None:
    assert (
        creation_url("https://github.com", None, "s1")
        == "https://github.com/settings/apps/new?state=s1"
    )
    assert (
        creation_url("https://ghes.example", "octo-org", "s 2")
        == "https://ghes.example/organizations/octo-org/settings/apps/new?state=s+2"
    )


# -- .env ---------------------------------------------------------------------------------------


def _registration(key: PrivateKey, secret: str = "whsec-" + "x" * 30) -> Registration:
    return Registration(
        app_id=777,
        slug="my-guard",
        html_url="https://github.com/apps/my-guard",
        private_key=key,
        webhook_secret=Secret(secret),
    )


def test_credentials_go_to_env_mode_600_keeping_other_lines(
    tmp_path: Path, app_keypair: tuple[PrivateKey, bytes]
) -> None:
    key = app_keypair[0]
    env = tmp_path / ".env"
    env.write_text(
        "# my settings\n"
        "LOG_LEVEL=debug\n"
        "APP_ID=1\n"
        'PRIVATE_KEY="-----BEGIN RSA '
        "PRIVATE KEY-----\n"
        "old\n"
        "-----END RSA "
        'PRIVATE KEY-----"\n'
        "export WEBHOOK_SECRET=old-secret\n"
        "PRIVATE_KEY_PATH=/old/key.pem\n"
        "PORT=4000\n"
    )
    env.chmod(0o644)
    save_credentials(env, _registration(key, 'a"quote\\and\\nmore'))

    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    text = env.read_text()
    assert "old" not in text.replace("# my settings", "")
    values = read_dotenv(env)
    assert values["LOG_LEVEL"] == "debug" and values["PORT"] == "4000"
    assert values["APP_ID"] == "777"
    assert values["WEBHOOK_SECRET"] == 'a"quote\\and\\nmore'
    assert "PRIVATE_KEY_PATH" not in values
    settings = Settings.from_environment({}, cwd=tmp_path)
    assert settings.app_id == 777
    assert settings.private_key is not None
    assert settings.private_key.public_fingerprint == key.public_fingerprint
    assert settings.webhook_secret == Secret('a"quote\\and\\nmore')
    assert [p.name for p in tmp_path.iterdir()] == [".env"]  # no temporary file left


def test_a_new_env_file_is_created_private(
    tmp_path: Path, app_keypair: tuple[PrivateKey, bytes]
) -> None:
    old_umask = os.umask(0)
    try:
        save_credentials(tmp_path / ".env", _registration(app_keypair[0]))
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE((tmp_path / ".env").stat().st_mode) == 0o600
    assert read_dotenv(tmp_path / ".env")["APP_ID"] == "777"


# -- the pages, against the double ---------------------------------------------------------------


class _Setup:
    """A running setup page: its address, its .env, and the registrations it reported."""

    def __init__(self, base: str, env: Path) -> None:
        self.base = base
        self.env = env
        self.registered: list[Registration] = []


@pytest_asyncio.fixture
async def setup_server(ghdouble: GitHubDouble, tmp_path: Path) -> AsyncIterator[_Setup]:
    settings = Settings.for_data_dir(
        tmp_path / "data", github_api_url=ghdouble.api_url, github_url=ghdouble.web_url
    )
    async with aiohttp.ClientSession() as session:
        setup = _Setup("", tmp_path / ".env")
        page = SetupPage(
            settings,
            manifest=load_manifest(APP_YML),
            manifest_file="app.yml",
            env_file=tmp_path / ".env",
            session=session,
            on_registered=setup.registered.append,
        )
        runner = aiohttp.web.AppRunner(make_setup_app(page), access_log=None)
        await runner.setup()
        port = free_port()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
        setup.base = f"http://127.0.0.1:{port}"
        try:
            yield setup
        finally:
            await runner.cleanup()


def _client() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def _to_github(
    client: aiohttp.ClientSession, setup: _Setup, form: dict[str, str] | None = None
) -> tuple[URL, dict[str, str]]:
    """Post the setup form; return where the 307 sends the browser, and the form it re-posts."""
    async with client.get(setup.base + "/") as page:
        text = await page.text()
    manifest = text.split('name="manifest" value="', 1)[1].split('"', 1)[0]
    fields = {"manifest": html.unescape(manifest), "owner": "user", **(form or {})}
    async with client.post(setup.base + "/setup/start", data=fields, allow_redirects=False) as r:
        assert r.status == 307, await r.text()
        return URL(r.headers["Location"]), fields


async def _through_github(
    client: aiohttp.ClientSession, target: URL, fields: dict[str, str]
) -> URL:
    """Play the browser on the double's pages; return the callback URL GitHub sends it to."""
    async with client.post(target, data=fields) as page:
        assert page.status == 200
        text = await page.text()
    assert 'id="create"' in text
    hidden = {
        part.split('name="', 1)[1].split('"', 1)[0]: html.unescape(
            part.split('value="', 1)[1].split('"', 1)[0]
        )
        for part in text.split("<input")[1:]
    }
    async with client.post(
        target.with_path("/settings/apps/new/create").with_query({}),
        data=hidden,
        allow_redirects=False,
    ) as created:
        assert created.status == 302
        return URL(created.headers["Location"])


@pytest.mark.asyncio
async def test_form_start_github_callback_env_and_install(
    setup_server: _Setup, ghdouble: GitHubDouble
) -> None:
    async with _client() as client:
        target, fields = await _to_github(
            client, setup_server, {"owner": "organization", "organization": "octo-org"}
        )
        assert str(target).startswith(
            f"{ghdouble.web_url}/organizations/octo-org/settings/apps/new"
        )
        state = target.query["state"]
        assert (
            client.cookie_jar.filter_cookies(URL(setup_server.base + "/setup/x"))[
                STATE_COOKIE
            ].value
            == state
        )
        callback = await _through_github(client, target, fields)
        assert callback.path == CALLBACK_PATH and callback.query["state"] == state
        async with client.get(callback, allow_redirects=False) as answer:
            assert answer.status == 302
            assert answer.headers["Location"] == (
                f"{ghdouble.web_url}/apps/{ghdouble.app_slug}/installations/new"
            )

    [registration] = ghdouble.pages.registrations
    assert registration.owner == "octo-org" and registration.converted
    hook = registration.manifest["hook_attributes"]["url"]
    assert hook == setup_server.base + "/api/github/webhooks"
    [converted] = ghdouble.requests_to("POST", "/app-manifests/{code}/conversions")
    assert not converted.had_authorization and converted.status == 201

    values = read_dotenv(setup_server.env)
    assert values["APP_ID"] == str(ghdouble.app_id)
    assert values["WEBHOOK_SECRET"] == registration.webhook_secret
    assert PrivateKey.from_text(values["PRIVATE_KEY"]).public_fingerprint == (
        ghdouble.private_key.public_fingerprint
    )
    assert stat.S_IMODE(setup_server.env.stat().st_mode) == 0o600
    assert [r.app_id for r in setup_server.registered] == [ghdouble.app_id]

    async with _client() as client, client.get(setup_server.base + "/") as after:
        assert after.status == 410
        assert "Register the GitHub App" not in await after.text()


@pytest.mark.asyncio
async def test_a_callback_without_this_browsers_state_is_refused(
    setup_server: _Setup, ghdouble: GitHubDouble
) -> None:
    async with _client() as client:
        target, fields = await _to_github(client, setup_server)
        callback = await _through_github(client, target, fields)
    # Another browser (no cookie) brings the same code and state: a login CSRF.
    async with _client() as stranger, stranger.get(callback, allow_redirects=False) as answer:
        assert answer.status == 400
    # A made-up state, even with a matching cookie, is refused too.
    async with _client() as forger:
        forger.cookie_jar.update_cookies({STATE_COOKIE: "made-up"}, URL(setup_server.base))
        forged = callback.update_query(state="made-up")
        async with forger.get(forged, allow_redirects=False) as answer:
            assert answer.status == 400
    assert not ghdouble.requests_to("POST", "/app-manifests/{code}/conversions")
    assert not setup_server.env.exists() and not setup_server.registered


@pytest.mark.asyncio
async def test_a_used_code_is_an_error_page_and_nothing_is_saved(
    setup_server: _Setup, ghdouble: GitHubDouble
) -> None:
    async with _client() as client:
        target, fields = await _to_github(client, setup_server)
        callback = await _through_github(client, target, fields)
        ghdouble.pages.registrations[0].converted = True  # as if used already
        async with client.get(callback, allow_redirects=False) as answer:
            assert answer.status == 502
            assert "codes work once" in await answer.text()
        async with client.get(callback, allow_redirects=False) as again:
            assert again.status == 400  # the state was spent
    assert not setup_server.env.exists() and not setup_server.registered


@pytest.mark.asyncio
async def test_a_bad_organisation_name_shows_the_form_again(setup_server: _Setup) -> None:
    async with (
        _client() as client,
        client.post(
            setup_server.base + "/setup/start",
            data={"manifest": "{}", "owner": "organization", "organization": "-bad/../x"},
            allow_redirects=False,
        ) as answer,
    ):
        assert answer.status == 400
        text = await answer.text()
    assert "organisation" in text and 'value="-bad/../x"' in text


@pytest.mark.asyncio
async def test_a_loopback_address_is_flagged(setup_server: _Setup) -> None:
    async with _client() as client, client.get(setup_server.base + "/") as page:
        text = await page.text()
        assert page.headers["Cache-Control"] == "no-store"
    assert "GitHub cannot deliver webhooks there" in text
    assert "PUBLIC_URL" in text


# -- serve without APP_ID -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_serve_registers_then_serves_webhooks(
    ghdouble: GitHubDouble, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    port = free_port()
    settings = Settings.for_data_dir(
        tmp_path / "data",
        github_api_url=ghdouble.api_url,
        github_url=ghdouble.web_url,
        host="127.0.0.1",
        port=port,
    )
    stop = asyncio.Event()
    server = asyncio.create_task(serve(settings, stop=stop))
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_until(lambda: _listening(port), timeout=10)
        setup = _Setup(base, tmp_path / ".env")
        async with _client() as client:
            async with client.get(base + "/metrics") as metrics:
                assert metrics.status == 404  # the setup page serves nothing else
            target, fields = await _to_github(client, setup)
            callback = await _through_github(client, target, fields)
            async with client.get(callback, allow_redirects=False) as answer:
                assert answer.status == 302
        secret = read_dotenv(tmp_path / ".env")["WEBHOOK_SECRET"]
        body = json.dumps({"zen": "Keep it logically awesome.", "hook_id": 1}).encode()

        async def delivered() -> bool:
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.post(
                        base + "/api/github/webhooks",
                        data=body,
                        headers=webhook_headers(secret, body, "ping"),
                    ) as answer,
                ):
                    return answer.status == 200
            except aiohttp.ClientConnectionError:
                return False

        await wait_until(delivered, timeout=10)
        async with aiohttp.ClientSession() as session, session.get(base + "/") as gone:
            assert gone.status == 404  # nothing of the setup page once credentials exist
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=20)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- settings -------------------------------------------------------------------------------------


def test_github_url_and_public_url_settings(tmp_path: Path) -> None:
    default = Settings.from_environment({}, cwd=tmp_path)
    assert (default.github_url, default.public_url) == ("https://github.com", None)
    custom = Settings.from_environment(
        {"GITHUB_URL": "https://ghes.example.com/", "PUBLIC_URL": "https://rg.example.com/"},
        cwd=tmp_path,
    )
    assert custom.github_url == "https://ghes.example.com"
    assert custom.public_url == "https://rg.example.com"
    for name, bad in (("GITHUB_URL", "github.com"), ("PUBLIC_URL", "https://x/?a=1")):
        with pytest.raises(SettingsError, match=name):
            Settings.from_environment({name: bad}, cwd=tmp_path)
