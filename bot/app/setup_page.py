"""Register the GitHub App from `app.yml`: the setup page `serve` shows until credentials exist.

GitHub's manifest flow (https://docs.github.com/apps/sharing-github-apps/registering-a-github-app-from-a-manifest),
as Probot apps do it:

1. `GET /` shows a form holding the manifest (app.yml as JSON, with this server's webhook and
   redirect URLs filled in) and a choice of owner: the person's own account or an
   organisation.
2. `POST /setup/start` picks a one-time `state`, binds it to the browser with a cookie, and
   answers `307`: the browser posts the same form on to GitHub's
   `{GITHUB_URL}/settings/apps/new?state=…` (or `/organizations/{org}/settings/apps/new`), with
   no JavaScript.
3. GitHub sends the browser back to `GET /setup/callback?code=…&state=…`. The state must be one
   this server issued, to this browser, within the hour (CSRF); the code is then converted
   (`POST {GITHUB_API_URL}/app-manifests/{code}/conversions`, no credentials), and the App id,
   its private key and its webhook secret are written to `.env` (mode 600, other lines kept).
   The browser goes on to `{html_url}/installations/new` to install the App.

Nobody but the operator may use the page: whoever registers first would put their own App's
credentials into this server's `.env`. So `serve` makes a random setup token at start and
prints it once, in the address to open (`http://host:3000/?token=…`), as Jupyter and Grafana
do; the page answers 403 without it. The token moves from the address to a cookie at once
(the browser is sent back to `/` without it, so it does not linger in the address bar or the
history), and every step (the form, `/setup/start`, the callback) checks that cookie. The
token is a registered secret: the start-up line is the one record that shows it.

Once the App is registered, `serve` stops this application and starts the real one on the same
address with the new credentials: the setup page is never served again, and the first
deliveries of the new installation find the App already listening.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode, urlsplit

import aiohttp
import yaml
from aiohttp import web

from bot import __version__
from bot.ops.logs import register_secret, revealing
from bot.secrets import PrivateKey, Secret
from bot.settings import REGISTER_HELP, Settings, SettingsError

log = logging.getLogger(__name__)

PAGE_PATH: Final = "/"
START_PATH: Final = "/setup/start"
CALLBACK_PATH: Final = "/setup/callback"
STATE_COOKIE: Final = "release_guard_setup"
TOKEN_PARAM: Final = "token"
TOKEN_COOKIE: Final = "release_guard_setup_token"
TOKEN_BYTES: Final = 24  # 192 random bits, 32 URL-safe characters
STATE_TTL: Final = 3600.0  # GitHub's manifest codes last an hour too
MAX_PENDING: Final = 64
MANIFEST_FILE: Final = "app.yml"
# The keys the setup page owns in .env; a registration replaces every one of them.
CREDENTIAL_KEYS: Final = ("APP_ID", "PRIVATE_KEY", "PRIVATE_KEY_PATH", "WEBHOOK_SECRET")

# https://docs.github.com/en/site-policy/other-site-policies/github-username-policy: letters,
# digits and single hyphens, at most 39 characters, not starting or ending with a hyphen.
_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}")
_CODE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_HOST = re.compile(r"[A-Za-z0-9.-]+(?::\d{1,5})?|\[[0-9A-Fa-f:.]+\](?::\d{1,5})?")


class SetupError(SettingsError):
    """The App could not be registered from the setup page; the message says why."""


@dataclass(frozen=True, slots=True)
class Registration:
    """What GitHub answered for the newly registered App, as far as release-guard uses it."""

    app_id: int
    slug: str
    html_url: str
    private_key: PrivateKey
    webhook_secret: Secret | None

    @property
    def install_url(self) -> str:
        """Where the person installs the App on their repositories."""
        return f"{self.html_url}/installations/new"


# -- the manifest -------------------------------------------------------------------------------


def new_setup_token() -> str:
    """Return a fresh setup token, registered as a secret so that the logs mask it."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    register_secret(token)
    return token


def shown_path(path: Path, cwd: Path) -> str:
    """How a page names `path`: relative to the working directory, never as an absolute path.

    A file outside the working directory (the source checkout's own `app.yml`) is named by
    its file name alone: the page must not map the server's file system.
    """
    try:
        return str(path.absolute().relative_to(cwd.absolute()))
    except ValueError:
        return f"{path.name} (release-guard's own)"


def find_manifest(cwd: Path) -> Path | None:
    """Return the `app.yml` to register: the working directory's, else the source checkout's."""
    for candidate in (cwd / MANIFEST_FILE, Path(__file__).resolve().parents[2] / MANIFEST_FILE):
        if candidate.is_file():
            return candidate
    return None


def load_manifest(path: Path) -> dict[str, Any]:
    """Read a Probot-style `app.yml` into a dict; raise SetupError when it is not a mapping."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SetupError(f"{path}: cannot read the App manifest: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise SetupError(f"{path}: an App manifest is a mapping with at least a `name`")
    return data


def build_manifest(
    base: Mapping[str, Any], *, public_url: str, webhook_path: str
) -> dict[str, Any]:
    """Return the manifest GitHub receives: `base` with this server's URLs filled in.

    Deliveries go to `public_url + webhook_path`; GitHub sends the browser back to
    `/setup/callback`. The homepage (`url`) stays app.yml's when it has one. No `setup_url`:
    nothing needs setting up after an installation, so GitHub shows its own installation page.
    """
    manifest = dict(base)
    hook = dict(manifest.get("hook_attributes") or {})
    hook["url"] = public_url + webhook_path
    hook.setdefault("active", True)
    manifest["hook_attributes"] = hook
    manifest["redirect_url"] = public_url + CALLBACK_PATH
    manifest.setdefault("url", public_url)
    manifest.setdefault("public", False)
    return manifest


def _first(value: str | None) -> str | None:
    """The first entry of a comma-separated forwarding header (the client-side proxy's)."""
    if value is None:
        return None
    return value.split(",", 1)[0].strip() or None


def public_url_of(request: web.Request, configured: str | None) -> str:
    """Return how GitHub and browsers reach this server.

    PUBLIC_URL when set; otherwise the request's scheme and host, as a reverse proxy reports
    them in `X-Forwarded-Proto` / `X-Forwarded-Host` (a PaaS router does), else as received.
    """
    if configured:
        return configured
    scheme = (_first(request.headers.get("X-Forwarded-Proto")) or request.scheme).lower()
    host = _first(request.headers.get("X-Forwarded-Host")) or request.host
    if scheme not in ("http", "https") or not _HOST.fullmatch(host):
        raise web.HTTPBadRequest(text="unusable Host or X-Forwarded-* header\n")
    return f"{scheme}://{host}"


def creation_url(github_url: str, organization: str | None, state: str) -> str:
    """Return GitHub's "register a new App" address for a user or an organisation."""
    where = "/settings/apps/new"
    if organization is not None:
        where = f"/organizations/{quote(organization, safe='')}/settings/apps/new"
    return f"{github_url}{where}?{urlencode({'state': state})}"


def _is_local(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.") or host.endswith(".localhost")


# -- .env -----------------------------------------------------------------------------------------


def _quoted(value: str) -> str:
    """Spell `value` as a double-quoted .env value that `read_dotenv` reads back unchanged."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _ends_quote(text: str) -> bool:
    """Tell whether `text` holds an unescaped `"` (the end of a multi-line value)."""
    escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            return True
    return False


def _kept_lines(text: str, replaced: frozenset[str]) -> list[str]:
    """Return the lines of a .env file minus the assignments of `replaced` keys.

    A double-quoted value may span lines (Probot writes keys that way); its continuation
    lines go with it.
    """
    kept: list[str] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        stripped = line.strip().removeprefix("export ").lstrip()
        key, sep, rest = stripped.partition("=")
        if not sep or key.strip() not in replaced:
            kept.append(line)
            continue
        rest = rest.strip()
        if rest.startswith('"') and not _ends_quote(rest[1:]):
            while index < len(lines) and not _ends_quote(lines[index]):
                index += 1
            index += 1  # the closing line
    return kept


def save_credentials(env_file: Path, registration: Registration) -> None:
    """Write the App's id, key and webhook secret to `env_file` (mode 600), keeping other lines.

    The file is replaced atomically: a crash leaves the old file or the new one, never half
    of one, and the new file is never readable by others, not even for a moment.
    """
    try:
        old = env_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = ""
    kept = _kept_lines(old, frozenset(CREDENTIAL_KEYS))
    while kept and not kept[-1].strip():
        kept.pop()
    lines = [*kept, ""] if kept else []
    lines.append(f"# The GitHub App {registration.html_url}, registered by release-guard's setup")
    lines.append(f"# page on {time.strftime('%Y-%m-%d %H:%M:%S %Z')}. Keep this file private.")
    lines.append(f"APP_ID={registration.app_id}")
    lines.append("PRIVATE_KEY=" + _quoted(registration.private_key.reveal().decode("ascii")))
    if registration.webhook_secret is not None:
        lines.append("WEBHOOK_SECRET=" + _quoted(registration.webhook_secret.reveal()))
    body = ("\n".join(lines) + "\n").encode("utf-8")
    temporary = env_file.with_name(f".{env_file.name}.{secrets.token_hex(6)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, env_file)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


# -- the conversion -------------------------------------------------------------------------------


async def convert_code(
    session: aiohttp.ClientSession, *, api_url: str, code: str, timeout: float = 30.0
) -> Registration:
    """Exchange the code GitHub gave the browser for the App's credentials.

    https://docs.github.com/rest/apps/apps#create-a-github-app-from-a-manifest: no
    authentication; the code works once, within an hour.
    """
    url = f"{api_url}/app-manifests/{quote(code, safe='')}/conversions"
    headers = {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": f"release-guard/{__version__}",
    }
    try:
        async with session.post(
            url,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            status = response.status
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SetupError(f"cannot reach GitHub to finish the registration: {exc}") from exc
    if status == 404:
        raise SetupError(
            "GitHub does not know this registration code (codes work once, within an hour)"
        )
    if status != 201 or not isinstance(data, dict):
        raise SetupError(f"GitHub answered {status} to the registration code conversion")
    return _registration_from(data)


def _registration_from(data: Mapping[str, Any]) -> Registration:
    app_id, slug, html_url = data.get("id"), data.get("slug"), data.get("html_url")
    pem, webhook_secret = data.get("pem"), data.get("webhook_secret")
    if not isinstance(app_id, int) or isinstance(app_id, bool) or app_id <= 0:
        raise SetupError("GitHub's answer has no App id")
    if not isinstance(slug, str) or not isinstance(html_url, str):
        raise SetupError("GitHub's answer has no App slug or page")
    if urlsplit(html_url).scheme not in ("http", "https"):
        raise SetupError("GitHub's answer has an App page that is not an http(s) URL")
    if not isinstance(pem, str):
        raise SetupError("GitHub's answer has no private key")
    if webhook_secret is not None and not isinstance(webhook_secret, str):
        raise SetupError("GitHub's answer has a webhook secret that is not a string")
    # Mask them in every log record from now on, before anything could print them.
    register_secret(pem)
    if webhook_secret:
        register_secret(webhook_secret)
    try:
        key = PrivateKey(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise SetupError(f"GitHub's answer has an unusable private key: {exc}") from None
    return Registration(
        app_id=app_id,
        slug=slug,
        html_url=html_url.rstrip("/"),
        private_key=key,
        webhook_secret=Secret(webhook_secret) if webhook_secret else None,
    )


# -- the pages ------------------------------------------------------------------------------------

_STYLE: Final = """
body { font: 16px/1.5 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto;
       padding: 0 1rem; color: #1f2328; }
h1 { font-size: 1.6rem; } code { background: #f6f8fa; padding: 0 .2rem; }
fieldset { border: 1px solid #d0d7de; border-radius: 6px; padding: 1rem; }
button { font: inherit; background: #1f883d; color: #fff; border: 0; border-radius: 6px;
         padding: .5rem 1rem; cursor: pointer; margin-top: 1rem; }
.warning { background: #fff8c5; border: 1px solid #d4a72c; padding: .5rem 1rem;
           border-radius: 6px; }
.error { background: #ffebe9; border: 1px solid #ff8182; padding: .5rem 1rem;
         border-radius: 6px; }
"""

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""

_FORM: Final = """<p>release-guard has no GitHub App credentials yet (<code>APP_ID</code> is not
set).
Register the App from its manifest (<code>{manifest_file}</code>) in two clicks: GitHub creates
it with the permissions and events below, and this server saves its id, private key and webhook
secret to <code>.env</code> in its working directory.</p>
{warning}{error}
<form method="post" action="{start_path}">
<input type="hidden" name="manifest" value="{manifest}">
<fieldset>
<legend>Who owns the App?</legend>
<p><label><input type="radio" name="owner" value="user" {user_checked}>
My personal GitHub account</label></p>
<p><label><input type="radio" name="owner" value="organization" {org_checked}>
The organisation</label>
<input type="text" name="organization" value="{organization}" placeholder="organisation login"
 aria-label="organisation login" autocomplete="off" spellcheck="false"></p>
</fieldset>
<button type="submit" id="register">Register the GitHub App</button>
</form>
<h2>What GitHub will be asked for</h2>
<ul>
<li>Name: <code>{name}</code> (GitHub lets you change it on the next page)</li>
<li>Webhook URL: <code>{hook_url}</code></li>
<li>Permissions: {permissions}</li>
<li>Events: {events}</li>
</ul>
<p>After the registration, GitHub asks where to install the App; release-guard starts receiving
webhooks at once, without a restart.</p>
"""


def _page(title: str, body: str, *, status: int = 200) -> web.Response:
    text = _PAGE.format(title=html.escape(title), style=_STYLE, body=body)
    response = web.Response(status=status, text=text, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; "
        "frame-ancestors 'none'"
    )
    return response


def _listing(items: Any) -> str:
    if isinstance(items, Mapping):
        shown = [f"{key}: {value}" for key, value in items.items()]
    elif isinstance(items, list):
        shown = [str(item) for item in items]
    else:
        shown = []
    return ", ".join(f"<code>{html.escape(item)}</code>" for item in shown) or "none"


class SetupPage:
    """The setup application's handlers and its one-time states."""

    def __init__(
        self,
        settings: Settings,
        *,
        manifest: Mapping[str, Any],
        manifest_file: str,
        env_file: Path,
        session: aiohttp.ClientSession,
        on_registered: Callable[[Registration], None],
        token: str,
        env_file_shown: str = ".env",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if len(token) < 16:
            raise ValueError("a setup token needs at least 16 characters")
        self._settings = settings
        self._manifest = manifest
        self._manifest_file = manifest_file
        self._env_file = env_file
        self._env_file_shown = env_file_shown
        self._token = token
        self._session = session
        self._on_registered = on_registered
        self._clock = clock
        self._pending: dict[str, float] = {}  # state -> expiry
        self._lock = asyncio.Lock()
        self.registered: Registration | None = None

    # -- the setup token ---------------------------------------------------------------------

    def _holds_token(self, request: web.Request) -> bool:
        """Tell whether the browser shows this server's setup token in its cookie."""
        cookie = request.cookies.get(TOKEN_COOKIE, "")
        return hmac.compare_digest(cookie.encode("utf-8"), self._token.encode("utf-8"))

    def _refused(self) -> web.Response:
        body = (
            '<p class="error">This page needs the setup token that release-guard printed in its '
            "log when it started.</p>\n"
            "<p>Open the address from that log line (it ends in <code>/?token=…</code>). The "
            "token keeps whoever reaches this server first from registering their own App "
            "into it.</p>\n"
        )
        return _page("Setup token required", body, status=403)

    # -- GET / ------------------------------------------------------------------------------

    async def form(self, request: web.Request) -> web.Response:
        """Show the registration form (or say that the App is registered already).

        `/?token=…` with the right token sets the token cookie and sends the browser back to
        `/`, so the token leaves the address bar; a wrong token, or none without the cookie,
        gets 403 and nothing else.
        """
        offered = request.query.get(TOKEN_PARAM)
        if offered is not None:
            if not hmac.compare_digest(offered.encode("utf-8"), self._token.encode("utf-8")):
                log.warning("setup: refused a setup token that is not this server's")
                return self._refused()
            response = web.Response(status=303)
            response.headers["Location"] = PAGE_PATH
            response.headers["Cache-Control"] = "no-store"
            response.set_cookie(
                TOKEN_COOKIE,
                self._token,
                path="/",
                httponly=True,
                # Lax: GitHub's redirect back to the callback is a top-level navigation from
                # another site, which a Strict cookie would not accompany.
                samesite="Lax",
                secure=public_url_of(request, self._settings.public_url).startswith("https:"),
            )
            return response
        if not self._holds_token(request):
            return self._refused()
        if self.registered is not None:
            return self._done_page()
        return self._form(request)

    def _form(
        self,
        request: web.Request,
        *,
        error: str = "",
        organization: str = "",
        status: int = 200,
    ) -> web.Response:
        public_url = public_url_of(request, self._settings.public_url)
        manifest = build_manifest(
            self._manifest, public_url=public_url, webhook_path=self._settings.webhook_path
        )
        warning = ""
        if _is_local(public_url):
            warning = (
                '<p class="warning">This page was opened as <code>'
                + html.escape(public_url)
                + "</code>: GitHub cannot deliver webhooks there. Open it through the address "
                "GitHub can reach, or set <code>PUBLIC_URL</code>.</p>\n"
            )
        body = _FORM.format(
            manifest_file=html.escape(self._manifest_file),
            warning=warning,
            error=f'<p class="error">{html.escape(error)}</p>\n' if error else "",
            start_path=START_PATH,
            manifest=html.escape(json.dumps(manifest), quote=True),
            user_checked="" if organization else "checked",
            org_checked="checked" if organization else "",
            organization=html.escape(organization, quote=True),
            name=html.escape(str(manifest.get("name"))),
            hook_url=html.escape(manifest["hook_attributes"]["url"]),
            permissions=_listing(manifest.get("default_permissions")),
            events=_listing(manifest.get("default_events")),
        )
        return _page("Register release-guard as a GitHub App", body, status=status)

    # -- POST /setup/start ------------------------------------------------------------------

    async def start(self, request: web.Request) -> web.StreamResponse:
        """Send the browser on to GitHub with the form it posted (307 keeps method and body)."""
        if not self._holds_token(request):
            return self._refused()
        if self.registered is not None:
            return self._done_page()
        form = await request.post()
        owner = str(form.get("owner", "user"))
        organization = str(form.get("organization", "")).strip()
        if not isinstance(form.get("manifest"), str):
            return self._form(request, error="The form lost its manifest: try again.", status=400)
        if owner == "organization":
            if not _LOGIN.fullmatch(organization):
                return self._form(
                    request,
                    error="Give the organisation's login (letters, digits and hyphens).",
                    organization=organization,
                    status=400,
                )
            target: str | None = organization
        else:
            target = None
        state = self._new_state()
        response = web.Response(status=307)
        response.headers["Location"] = creation_url(self._settings.github_url, target, state)
        response.headers["Cache-Control"] = "no-store"
        response.set_cookie(
            STATE_COOKIE,
            state,
            max_age=int(STATE_TTL),
            path="/setup",
            httponly=True,
            samesite="Lax",
            secure=public_url_of(request, self._settings.public_url).startswith("https:"),
        )
        log.info(
            "setup: sending the browser to GitHub to register the App (%s)",
            f"organisation {organization}" if target else "personal account",
        )
        return response

    def _new_state(self) -> str:
        now = self._clock()
        for state, expiry in list(self._pending.items()):
            if expiry <= now:
                del self._pending[state]
        while len(self._pending) >= MAX_PENDING:
            oldest = min(self._pending, key=self._pending.__getitem__)
            del self._pending[oldest]
        state = secrets.token_urlsafe(24)
        self._pending[state] = now + STATE_TTL
        return state

    def _take_state(self, state: str, cookie: str | None) -> bool:
        """Consume `state` if this server issued it to this browser, unexpired."""
        if not state or cookie is None or not hmac.compare_digest(state, cookie):
            return False
        expiry = self._pending.pop(state, None)
        return expiry is not None and expiry > self._clock()

    # -- GET /setup/callback ----------------------------------------------------------------

    async def callback(self, request: web.Request) -> web.StreamResponse:
        """Convert GitHub's code, save the credentials, and send the browser to install."""
        code = request.query.get("code", "")
        state = request.query.get("state", "")
        if len(code) >= 6:
            register_secret(code)  # a one-time credential: keep it out of the logs
        async with self._lock:
            if not self._holds_token(request):
                return self._refused()
            if self.registered is not None:
                return self._done_page()
            if not self._take_state(state, request.cookies.get(STATE_COOKIE)):
                log.warning("setup: refused a callback whose state this server did not issue")
                return self._problem(
                    "This registration did not start from this page in this browser, or it "
                    "started more than an hour ago.",
                    status=400,
                )
            if not _CODE.fullmatch(code):
                return self._problem("GitHub's answer carries no usable code.", status=400)
            try:
                registration = await convert_code(
                    self._session, api_url=self._settings.github_api_url, code=code
                )
            except SetupError as exc:
                log.error("setup: the App could not be registered: %s", exc)
                return self._problem(f"The App could not be registered: {exc}.", status=502)
            try:
                await asyncio.to_thread(save_credentials, self._env_file, registration)
            except OSError as exc:
                log.error("setup: cannot write %s: %s", self._env_file, exc.strerror)
                return self._problem(
                    f"GitHub registered the App ({registration.html_url}) but its credentials "
                    f"could not be saved to {self._env_file_shown} in the server's working "
                    f"directory: {exc.strerror}. Delete that App on "
                    "GitHub, fix the file's permissions, and start again.",
                    status=500,
                )
            self.registered = registration
        log.info(
            "setup: registered the GitHub App %s (id %d); credentials saved to %s",
            registration.html_url,
            registration.app_id,
            self._env_file,
            extra={"app_id": registration.app_id, "slug": registration.slug},
        )
        response = web.Response(status=302)
        response.headers["Location"] = registration.install_url
        response.headers["Cache-Control"] = "no-store"
        response.del_cookie(STATE_COOKIE, path="/setup")
        response.del_cookie(TOKEN_COOKIE, path="/")
        # Answer before the server switches over to serving webhooks.
        await response.prepare(request)
        await response.write_eof()
        self._on_registered(registration)
        return response

    def _problem(self, message: str, *, status: int) -> web.Response:
        body = (
            f'<p class="error">{html.escape(message)}</p>\n'
            f'<p><a href="{PAGE_PATH}">Start again</a></p>\n'
        )
        return _page("The GitHub App was not registered", body, status=status)

    def _done_page(self) -> web.Response:
        registered = self.registered
        link = ""
        if registered is not None:
            url = html.escape(registered.install_url, quote=True)
            link = f'<p><a href="{url}">Install the App on your repositories</a></p>\n'
        body = "<p>The App is registered; release-guard now serves webhooks only.</p>\n" + link
        return _page("release-guard is registered", body, status=410)

    # -- the rest ---------------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        # Ready to show the setup page: a router that waits for readiness must let it through.
        return web.Response(text="setup: the GitHub App is not registered yet\n")


def make_setup_app(page: SetupPage) -> web.Application:
    """Build the setup-only web application around `page`."""
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_get(PAGE_PATH, page.form)
    app.router.add_post(START_PATH, page.start)
    app.router.add_get(CALLBACK_PATH, page.callback)
    app.router.add_get("/healthz", page.healthz)
    app.router.add_get("/readyz", page.readyz)
    return app


def _browser_url(host: str, port: int) -> str:
    shown = "localhost" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}{PAGE_PATH}"


async def run_setup(
    settings: Settings,
    *,
    host: str,
    port: int,
    stop: asyncio.Event,
    cwd: Path | None = None,
    token: str | None = None,
) -> Registration | None:
    """Serve the setup page on `host:port` until the App is registered (or `stop` is set).

    The page asks for `token` (a fresh one by default), printed once in the start-up log line.
    Return the registration (its credentials are in `cwd/.env` by then), or None when stopped
    first. Raise SettingsError when no `app.yml` can be found or the address is busy.
    """
    cwd = (cwd or Path.cwd()).absolute()
    manifest_path = find_manifest(cwd)
    if manifest_path is None:
        raise SetupError(
            REGISTER_HELP.format(webhook_path=settings.webhook_path)
            + f"\n(The setup page needs {MANIFEST_FILE} in the working directory, {cwd}.)"
        )
    manifest = load_manifest(manifest_path)
    if token is None:
        token = new_setup_token()
    else:
        register_secret(token)
    registered: list[Registration] = []
    finished = asyncio.Event()

    def done(registration: Registration) -> None:
        registered.append(registration)
        finished.set()

    async with aiohttp.ClientSession() as session:
        page = SetupPage(
            settings,
            manifest=manifest,
            manifest_file=shown_path(manifest_path, cwd),
            env_file=cwd / ".env",
            session=session,
            on_registered=done,
            token=token,
        )
        # No access log: the callback's query string carries a one-time code.
        runner = web.AppRunner(
            make_setup_app(page), handle_signals=False, access_log=None, shutdown_timeout=5.0
        )
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, host, port).start()
            except OSError as exc:
                raise SettingsError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
            bound_port = runner.addresses[0][1] if runner.addresses else port
            # The one record that shows the token: the operator opens this address.
            log.warning(
                "APP_ID is not set: open %s in a browser to register the GitHub App",
                f"{_browser_url(host, bound_port)}?{urlencode({TOKEN_PARAM: token})}",
                extra={"host": host, "port": bound_port, **revealing(token)},
            )
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(finished.wait())]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        finally:
            await runner.cleanup()
    return registered[0] if registered else None
