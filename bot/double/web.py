"""The github.com pages of the App manifest flow, as the double plays them.

https://docs.github.com/apps/sharing-github-apps/registering-a-github-app-from-a-manifest:

- `POST /settings/apps/new?state=…` (or `/organizations/{org}/settings/apps/new`) with a form
  field `manifest` (JSON) shows a page with a "Create GitHub App" button;
- the button registers the App and sends the browser to the manifest's `redirect_url` with
  `?code=…&state=…`; the code is converted once by `POST /app-manifests/{code}/conversions`
  on the API host (see `routes.py`);
- `GET /apps/{slug}/installations/new` is where GitHub asks where to install the App.

The App it "registers" is the double's own (its id, slug and private key), so that an App
that registered itself here can go on and talk to the double's API.
"""

from __future__ import annotations

import html
import json
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from yarl import URL

if TYPE_CHECKING:
    from bot.double.server import GitHubDouble

REQUIRED_KEYS = ("name", "url", "hook_attributes", "redirect_url")


@dataclass
class ManifestRegistration:
    """One App registered through the pages: what the browser posted, and the code given."""

    owner: str | None  # an organisation's login, None for the person's own account
    manifest: dict[str, Any]
    state: str
    code: str
    webhook_secret: str
    converted: bool = False


@dataclass
class WebPages:
    """The pages, and what they saw (`registrations`, `pages_served`)."""

    double: GitHubDouble
    registrations: list[ManifestRegistration] = field(default_factory=list)
    pages_served: list[str] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/settings/apps/new", self.new_app)
        app.router.add_post("/organizations/{org}/settings/apps/new", self.new_app)
        app.router.add_post("/settings/apps/new/create", self.create)
        app.router.add_get("/apps/{slug}/installations/new", self.install)
        app.router.add_get("/apps/{slug}", self.app_page)
        return app

    def by_code(self, code: str) -> ManifestRegistration | None:
        return next((r for r in self.registrations if r.code == code), None)

    async def new_app(self, request: web.Request) -> web.Response:
        self.pages_served.append(request.path)
        form = await request.post()
        raw = form.get("manifest")
        if not isinstance(raw, str):
            return _page("Invalid manifest", "<p>The form has no manifest.</p>", status=422)
        try:
            manifest = json.loads(raw)
        except ValueError:
            return _page("Invalid manifest", "<p>The manifest is not JSON.</p>", status=422)
        missing = [k for k in REQUIRED_KEYS if not isinstance(manifest, dict) or k not in manifest]
        if missing:
            body = f"<p>The manifest lacks {html.escape(', '.join(missing))}.</p>"
            return _page("Invalid manifest", body, status=422)
        owner = request.match_info.get("org")
        state = request.query.get("state", "")
        body = (
            f"<p>Owner: <strong>{html.escape(owner or 'your personal account')}</strong></p>"
            f"<p>Webhook URL: <code>{html.escape(manifest['hook_attributes'].get('url', ''))}"
            "</code></p>"
            '<form method="post" action="/settings/apps/new/create">'
            f'<input type="hidden" name="manifest" value="{html.escape(raw, quote=True)}">'
            f'<input type="hidden" name="state" value="{html.escape(state, quote=True)}">'
            f'<input type="hidden" name="owner" value="{html.escape(owner or "", quote=True)}">'
            '<button type="submit" id="create">Create GitHub App for '
            f"{html.escape(owner or 'you')}</button></form>"
        )
        return _page(f"Create GitHub App: {manifest['name']}", body)

    async def create(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        manifest = json.loads(str(form["manifest"]))
        registration = ManifestRegistration(
            owner=str(form.get("owner") or "") or None,
            manifest=manifest,
            state=str(form.get("state", "")),
            code=secrets.token_hex(10),
            webhook_secret=secrets.token_hex(20),
        )
        self.registrations.append(registration)
        target = URL(manifest["redirect_url"]).update_query(
            code=registration.code, state=registration.state
        )
        raise web.HTTPFound(str(target))

    async def install(self, request: web.Request) -> web.Response:
        self.pages_served.append(request.path)
        slug = request.match_info["slug"]
        body = f"<p>Install <strong>{html.escape(slug)}</strong> on: all repositories.</p>"
        return _page(f"Install {slug}", body)

    async def app_page(self, request: web.Request) -> web.Response:
        slug = request.match_info["slug"]
        return _page(slug, f"<p>The GitHub App {html.escape(slug)}.</p>")


def _page(title: str, body: str, *, status: int = 200) -> web.Response:
    text = (
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return web.Response(status=status, text=text, content_type="text/html")
