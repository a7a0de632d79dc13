"""The setup page: the manifest it sends, the state it checks, the `.env` it writes, and `serve`
going from the setup page to serving webhooks. (`test_setup_browser.py` clicks through it in
Chromium.)"""

from __future__ import annotations

import asyncio
import html
import io
import json
import logging
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
    TOKEN_COOKIE,
    Registration,
    SetupError,
    SetupPage,
    build_manifest,
    creation_url,
    load_manifest,
    make_setup_app,
    public_url_of,
    save_credentials,
    shown_path,
)
from bot.double.server import GitHubDouble
from bot.ops.logs import MASK, configure_logging, forget_secrets
from bot.secrets import PrivateKey, Secret
from bot.settings import Settings, SettingsError, read_dotenv
from tests.apphelpers import wait_until, webhook_headers

pytest_plugins = ["tests.ghdouble.fixtures"]

APP_YML = Path(__file__).parents[1] / "app.yml"
TOKEN = "setup-token-for-the-tests-0123456789"


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
    """A running setup page: its address, its .env, its token and the registrations it
    reported."""

    def __init__(self, base: str, env: Path, token: str = TOKEN) -> None:
        self.base = base
        self.env = env
        self.token = token
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
            token=TOKEN,
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


async def _open_with_token(client: aiohttp.ClientSession, setup: _Setup) -> str:
    """Open the address the start-up log line gives; return the form it lands on."""
    async with client.get(setup.base + "/", params={"token": setup.token}) as page:
        assert page.status == 200
        assert page.url == URL(setup.base + "/")  # the token left the address
        assert [r.status for r in page.history] == [303]
        return await page.text()


async def _to_github(
    client: aiohttp.ClientSession, setup: _Setup, form: dict[str, str] | None = None
) -> tuple[URL, dict[str, str]]:
    """Post the setup form; return where the 307 sends the browser, and the form it re-posts."""
    text = await _open_with_token(client, setup)
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

    async with _client() as client:
        async with client.get(setup_server.base + "/") as stranger:
            assert stranger.status == 403  # the done page is the operator's too
        async with client.get(setup_server.base + "/", params={"token": TOKEN}) as after:
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
        assert answer.status == 403
    # Even one that holds the setup token, but not this browser's state.
    async with _client() as stranger:
        await _open_with_token(stranger, setup_server)
        async with stranger.get(callback, allow_redirects=False) as answer:
            assert answer.status == 400
    # A made-up state, even with a matching cookie, is refused too.
    async with _client() as forger:
        await _open_with_token(forger, setup_server)
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
    async with _client() as client:
        await _open_with_token(client, setup_server)
        async with client.post(
            setup_server.base + "/setup/start",
            data={"manifest": "{}", "owner": "organization", "organization": "-bad/../x"},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 400
            text = await answer.text()
    assert "organisation" in text and 'value="-bad/../x"' in text


@pytest.mark.asyncio
async def test_a_loopback_address_is_flagged(setup_server: _Setup) -> None:
    async with _client() as client:
        await _open_with_token(client, setup_server)
        async with client.get(setup_server.base + "/") as page:
            text = await page.text()
            assert page.headers["Cache-Control"] == "no-store"
    assert "GitHub cannot deliver webhooks there" in text
    assert "PUBLIC_URL" in text


# -- the setup token ----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_without_the_setup_token_nothing_is_served(
    setup_server: _Setup, ghdouble: GitHubDouble
) -> None:
    async with _client() as client:
        for params in ({}, {"token": "wrong-" + TOKEN}, {"token": ""}, {"token": TOKEN[:-1]}):
            async with client.get(setup_server.base + "/", params=params) as page:
                assert page.status == 403
                text = await page.text()
            assert "setup token" in text
            assert 'name="manifest"' not in text and "hook_attributes" not in text
        assert not [c for c in client.cookie_jar if c.key == TOKEN_COOKIE]
        # A forged cookie is no better than none.
        client.cookie_jar.update_cookies({TOKEN_COOKIE: "forged-token-value-xyz"})
        async with client.get(setup_server.base + "/") as page:
            assert page.status == 403
        # Posting the form straight away is refused before GitHub is ever named.
        async with client.post(
            setup_server.base + "/setup/start",
            data={"manifest": "{}", "owner": "user"},
            allow_redirects=False,
        ) as answer:
            assert answer.status == 403
            assert "Location" not in answer.headers
    assert not ghdouble.pages.registrations and not setup_server.env.exists()


@pytest.mark.asyncio
async def test_the_token_moves_to_a_private_cookie(setup_server: _Setup) -> None:
    async with (
        _client() as client,
        client.get(
            setup_server.base + "/", params={"token": TOKEN}, allow_redirects=False
        ) as answer,
    ):
        assert answer.status == 303 and answer.headers["Location"] == "/"
        assert answer.headers["Cache-Control"] == "no-store"
        cookie = answer.cookies[TOKEN_COOKIE]
        assert cookie.value == TOKEN
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
        assert not cookie["secure"]  # plain http on loopback; https sets it


def test_a_short_token_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="16"):
        SetupPage(
            Settings.for_data_dir(tmp_path),
            manifest={"name": "x"},
            manifest_file="app.yml",
            env_file=tmp_path / ".env",
            session=None,  # type: ignore[arg-type]  # refused before it is used
            on_registered=lambda _: None,
            token="short",
        )


def test_pages_name_files_relative_to_the_working_directory(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    assert shown_path(tmp_path / "app.yml", tmp_path) == "app.yml"
    assert shown_path(tmp_path / "conf" / "app.yml", tmp_path) == "conf/app.yml"
    assert shown_path(APP_YML, tmp_path) == "app.yml (release-guard's own)"


# -- serve without APP_ID -------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """What `serve` logs, as JSON lines, through the logging set-up it runs with."""
    stream = io.StringIO()
    handler = configure_logging(level="info", fmt="json", stream=stream)
    try:
        yield stream
    finally:
        logging.getLogger().removeHandler(handler)


def token_from_log(stream: io.StringIO) -> tuple[str, str]:
    """The setup address and token from the start-up line, as an operator reads them."""
    for line in stream.getvalue().splitlines():
        message = json.loads(line)["message"]
        if "?token=" in message:
            address = message.split("open ", 1)[1].split(" ", 1)[0]
            return address, URL(address).query["token"]
    raise AssertionError("no start-up line with the setup token")


@pytest.mark.asyncio
async def test_serve_registers_then_serves_webhooks(
    ghdouble: GitHubDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    log_lines: io.StringIO,
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "app.yml").write_text(APP_YML.read_text())
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
        address, token = token_from_log(log_lines)
        assert address == f"http://127.0.0.1:{port}/?token={token}" and len(token) >= 32
        setup = _Setup(base, tmp_path / ".env", token)
        async with _client() as client:
            async with client.get(base + "/metrics") as metrics:
                assert metrics.status == 404  # the setup page serves nothing else
            async with client.get(base + "/") as refused:
                assert refused.status == 403
            form = await _open_with_token(client, setup)
            # The manifest is named as the working directory's, not by its absolute path.
            assert "<code>app.yml</code>" in form and str(tmp_path) not in form
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
        # The token is a secret like the others: any later record that carries it masks it.
        logging.getLogger("tests.setup").warning("a careless line: %s", address)
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=20)
    lines = log_lines.getvalue().splitlines()
    showing = [line for line in lines if token in line]
    assert len(showing) == 1 and "APP_ID is not set" in showing[0]
    assert json.loads(showing[0]).keys() == {"time", "level", "logger", "message", "host", "port"}
    careless = [json.loads(line) for line in lines if "a careless line" in line]
    assert careless[0]["message"] == f"a careless line: http://127.0.0.1:{port}/?token={MASK}"


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
