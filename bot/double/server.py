"""A GitHub REST API double on loopback: an API host and a separate storage host.

Every request is recorded (secrets redacted), checked against GitHub's OpenAPI description
(violations are kept for the fixture to fail the test on), may be answered by a queued fault,
is authenticated like GitHub does it, and then answered from the state.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aiohttp import web

from bot.double import credentials
from bot.double.faults import (
    PRIMARY_DOCS,
    SECONDARY_DOCS,
    SECONDARY_MESSAGE,
    ConnectionReset,
    Fault,
    FaultQueue,
    HeldAfter,
    PrimaryRateLimit,
    Respond,
    SecondaryRateLimit,
    ServerError,
    ServerErrorAfter,
    Slow,
)
from bot.double.hooks import Hooks
from bot.double.http import error, json_response, not_found
from bot.double.payloads import Payloads
from bot.double.routes import ROUTES, Context, Route
from bot.double.spec import NO_BODY, load_operations, validate
from bot.double.state import (
    DEFAULT_PERMISSIONS,
    AnnotatedTag,
    Artifact,
    CheckRun,
    Installation,
    Issue,
    PullRequest,
    Release,
    ReleaseAsset,
    Repository,
    State,
    WorkflowRun,
    fake_sha,
)
from bot.double.storage import Storage
from bot.double.web import WebPages
from bot.secrets import PrivateKey

HOST: Final = "127.0.0.1"
RATE_LIMIT: Final = 5000
RATE_WINDOW: Final = 3600
_LEVELS: Final = {"read": 1, "write": 2, "admin": 3}


@dataclass
class RecordedRequest:
    """One request as the double received it; `Authorization` shows only as `<redacted>`."""

    host: Literal["api", "storage"]
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any
    route: str | None
    auth: Literal["jwt", "token"] | None = None
    installation_id: int | None = None
    status: int | None = None

    @property
    def had_authorization(self) -> bool:
        return "authorization" in {k.lower() for k in self.headers}


@dataclass
class Violation:
    """A request that GitHub's OpenAPI description does not allow."""

    method: str
    path: str
    route: str | None
    problem: str

    def __str__(self) -> str:
        return f"{self.method} {self.path}: {self.problem}"


def _aiohttp_pattern(template: str) -> str:
    pattern = template
    for name in ("path", "ref"):
        pattern = pattern.replace(f"{{{name}}}", f"{{{name}:.+}}")
    for part in template.split("/"):
        if part.startswith("{") and part.endswith(("_id}", "_number}")):
            pattern = pattern.replace(part, f"{part[:-1]}:\\d+}}")
    return pattern


def _redacted(headers: Any) -> dict[str, str]:
    return {
        key: ("<redacted>" if key.lower() == "authorization" else value)
        for key, value in headers.items()
    }


@dataclass
class _Denied(Exception):
    response: web.Response


@dataclass
class GitHubDouble:
    """The double: state, helpers to fill it, and what it received."""

    private_key: PrivateKey
    public_key: bytes
    app_id: int = 4242
    app_slug: str = "release-guard-test"
    state: State = field(default_factory=State)
    faults: FaultQueue = field(default_factory=FaultQueue)
    storage_faults: FaultQueue = field(default_factory=FaultQueue)
    requests: list[RecordedRequest] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    token_ttl: float = 3600.0
    clock_skew: float = 0.0
    jwt_leeway: float = 0.0
    known_users: set[str] = field(default_factory=lambda: {"octocat"})
    app_permissions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PERMISSIONS))
    tokens_issued: list[int] = field(default_factory=list)
    violations_allowed: bool = False
    api_url: str = ""
    storage_url: str = ""
    web_url: str = ""  # the github.com pages of the App manifest flow (`web.py`)
    not_modified: int = 0
    """How many conditional requests were answered 304 (not counted against the limit)."""

    def __post_init__(self) -> None:
        self._runners: list[web.AppRunner] = []
        self._routes: dict[tuple[str, str], Route] = {(r.method, r.path): r for r in ROUTES}
        self._rate: dict[object, tuple[int, float]] = {}
        self.payloads = Payloads(api_url="", storage_url="", app_id=0, app_slug="")
        self.storage = Storage(clock=self.now, lookup=self._blob)
        self.pages = WebPages(self)
        self.hooks = Hooks(clock=self.now)

    # --- lifecycle -------------------------------------------------------------------

    def now(self) -> float:
        """The double's clock: real time plus `clock_skew`."""
        return time.time() + self.clock_skew

    async def start(self) -> None:
        """Listen on two loopback ports (API and storage)."""
        api = web.Application(middlewares=[self._api_middleware])
        for spec in ROUTES:
            api.router.add_route(spec.method, _aiohttp_pattern(spec.path), self._not_reached)
        storage = web.Application(middlewares=[self._storage_middleware])
        storage.router.add_get("/blobs/{blob_id}", self.storage.serve)
        self.api_url = await self._listen(api)
        self.storage_url = await self._listen(storage)
        self.storage.base_url = self.storage_url
        self.web_url = await self._listen(self.pages.app())
        self.payloads = Payloads(
            api_url=self.api_url,
            storage_url=self.storage_url,
            app_id=self.app_id,
            app_slug=self.app_slug,
        )

    async def _listen(self, app: web.Application) -> str:
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, HOST, 0).start()
        self._runners.append(runner)
        host, port = runner.addresses[0][:2]
        return f"http://{host}:{port}"

    async def close(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    async def _not_reached(self, request: web.Request) -> web.StreamResponse:
        raise AssertionError("requests are answered by the middleware")

    # --- helpers for tests -----------------------------------------------------------

    def add_installation(
        self,
        *,
        account: str = "octo-org",
        permissions: dict[str, str] | None = None,
        installation_id: int | None = None,
    ) -> Installation:
        installation = Installation(
            id=installation_id or self.state.next_id(),
            account=account,
            permissions=dict(DEFAULT_PERMISSIONS if permissions is None else permissions),
        )
        self.state.installations[installation.id] = installation
        return installation

    def add_repo(
        self,
        full_name: str = "octo-org/octo-repo",
        *,
        installation: Installation | None = None,
        private: bool = True,
        default_branch: str = "main",
    ) -> Repository:
        """Add a repository; without `installation`, the App gets a new one for it."""
        owner, name = full_name.split("/")
        if installation is None:
            installation = self.add_installation(account=owner)
        repo = Repository(
            id=self.state.next_id(),
            owner=owner,
            name=name,
            installation_id=installation.id,
            default_branch=default_branch,
            private=private,
        )
        repo.refs[f"heads/{default_branch}"] = fake_sha(full_name, default_branch)
        self.state.repos[full_name.lower()] = repo
        return repo

    def installation_of(self, repo: Repository) -> Installation:
        assert repo.installation_id is not None
        return self.state.installations[repo.installation_id]

    def add_run(
        self,
        repo: Repository,
        *,
        head_sha: str | None = None,
        head_branch: str = "main",
        name: str = "CI",
        event: str = "push",
        status: str = "completed",
        conclusion: str | None = "success",
    ) -> WorkflowRun:
        run_id = self.state.next_id()
        run = WorkflowRun(
            id=run_id,
            head_sha=head_sha or fake_sha(repo.full_name, "run", run_id),
            head_branch=head_branch,
            name=name,
            event=event,
            status=status,
            conclusion=conclusion,
            run_number=len(repo.runs) + 1,
        )
        repo.runs[run.id] = run
        return run

    def add_artifact(
        self,
        repo: Repository,
        run: WorkflowRun,
        *,
        name: str,
        data: bytes,
        expired: bool = False,
    ) -> Artifact:
        artifact = Artifact(self.state.next_id(), run.id, name, data, expired=expired)
        repo.artifacts[artifact.id] = artifact
        return artifact

    def add_file(self, repo: Repository, path: str, data: bytes | str, *, ref: str = "") -> None:
        """Put a file at `ref` (a sha or a branch; default: the default branch)."""
        raw = data.encode() if isinstance(data, str) else data
        repo.files[(ref or repo.default_branch, path.strip("/"))] = raw

    def add_ref(self, repo: Repository, name: str, sha: str) -> None:
        """Point a ref (`heads/x`, `tags/v1`) at a sha."""
        repo.refs[name.removeprefix("refs/")] = sha

    def add_tag(
        self, repo: Repository, tag: str, *, commit: str, annotated: bool = False, message: str = ""
    ) -> str:
        """Add tag `tag` on `commit`; return what `refs/tags/<tag>` points at."""
        target = commit
        if annotated:
            target = fake_sha(repo.full_name, "tag", tag)
            repo.tags[target] = AnnotatedTag(target, tag, commit, message=message or tag)
        repo.refs[f"tags/{tag}"] = target
        return target

    def add_pull(
        self,
        repo: Repository,
        *,
        head_sha: str,
        number: int | None = None,
        head_ref: str = "feature",
        base_ref: str = "main",
        title: str = "A change",
    ) -> PullRequest:
        number = number or max([*repo.pulls, *repo.issues, 0]) + 1
        pr = PullRequest(number, head_sha, head_ref=head_ref, base_ref=base_ref, title=title)
        repo.pulls[number] = pr
        return pr

    def add_issue(
        self,
        repo: Repository,
        number: int | None = None,
        *,
        title: str = "An issue",
        body: str | None = None,
        user: str = "octocat",
        labels: list[str] | None = None,
    ) -> int:
        number = number or max([*repo.pulls, *repo.issues, 0]) + 1
        repo.issues[number] = Issue(number, title, body, user, list(labels or []))
        return number

    def add_release(
        self,
        repo: Repository,
        *,
        tag_name: str,
        name: str | None = None,
        draft: bool = False,
        prerelease: bool = False,
        body: str | None = None,
        target_commitish: str = "main",
    ) -> Release:
        """A release; a published one is immutable when the repository has immutable
        releases on (`repo.immutable_releases`)."""
        release = Release(
            self.state.next_id(),
            tag_name,
            name,
            body=body,
            draft=draft,
            prerelease=prerelease,
            target_commitish=target_commitish,
            immutable=repo.immutable_releases and not draft,
        )
        repo.releases[release.id] = release
        return release

    def add_asset(
        self,
        repo: Repository,
        release: Release,
        *,
        name: str,
        data: bytes,
        content_type: str = "application/octet-stream",
        state: str = "uploaded",
    ) -> ReleaseAsset:
        """An asset; `state="open"` is one still being uploaded (not downloadable yet)."""
        asset = ReleaseAsset(
            self.state.next_id(), release.id, name, data, content_type, state=state
        )
        repo.assets[asset.id] = asset
        return asset

    def set_permission(self, repo: Repository, username: str, permission: str) -> None:
        """Make `username` a collaborator with `admin`, `write` or `read`."""
        self.known_users.add(username)
        repo.collaborators[username] = permission

    def add_check_run(
        self,
        repo: Repository,
        *,
        name: str,
        head_sha: str,
        app_id: int | None = None,
        status: str = "completed",
        conclusion: str | None = "success",
    ) -> CheckRun:
        """Add a check run as if created earlier (by this App, or another with `app_id`)."""
        check = CheckRun(
            self.state.next_id(),
            name,
            head_sha,
            app_id or self.app_id,
            status=status,
            conclusion=conclusion,
        )
        repo.check_runs[check.id] = check
        return check

    def token_for(self, installation: Installation, *, ttl: float | None = None) -> str:
        """Mint an installation token directly (for tests of the double itself)."""
        token, _ = credentials.issue_token(
            self.state,
            installation_id=installation.id,
            ttl=self.token_ttl if ttl is None else ttl,
            now=self.now(),
        )
        return token

    def revoke_tokens(self, installation: Installation | None = None) -> None:
        """Make GitHub refuse the tokens issued so far (all, or one installation's)."""
        for issued in self.state.tokens.values():
            if installation is None or issued.installation_id == installation.id:
                issued.expires_at = 0.0

    def exhaust_rate_limit(self, installation: Installation | None, *, reset_in: float) -> None:
        """Spend an installation's rate limit (None: the App's JWT one) until `reset_in` s on.

        Until then GitHub refuses every request with that installation's tokens (or with the
        App's JWT) with its primary-rate-limit 403 (`x-ratelimit-remaining: 0` and the reset
        instant); afterwards the limit starts afresh. Unlike a queued `PrimaryRateLimit`
        fault, this follows the credential, whatever the route, and the refused requests
        are recorded with their `installation_id`.
        """
        key: object = "app" if installation is None else installation.id
        self._rate[key] = (0, self.now() + reset_in)

    def allow_violations(self) -> None:
        """Let this test end with OpenAPI violations (to test their detection)."""
        self.violations_allowed = True

    def requests_to(
        self, method: str = "*", pattern: str = "*", *, host: str = "api"
    ) -> list[RecordedRequest]:
        """Return the recorded requests matching a method and a path glob or route template."""
        return [
            r
            for r in self.requests
            if r.host == host
            and method in ("*", r.method)
            and (pattern == r.route or fnmatch.fnmatchcase(r.path, pattern))
        ]

    # --- the pipeline ----------------------------------------------------------------

    def _blob(self, blob_id: str) -> tuple[bytes, str] | None:
        kind, _, raw_id = blob_id.partition("-")
        for repo in self.state.repos.values():
            if kind == "artifact" and raw_id.isdigit() and int(raw_id) in repo.artifacts:
                artifact = repo.artifacts[int(raw_id)]
                return None if artifact.expired else (artifact.data, "application/zip")
            if kind == "asset" and raw_id.isdigit() and int(raw_id) in repo.assets:
                asset = repo.assets[int(raw_id)]
                return asset.data, asset.content_type
        return None

    def _record(
        self,
        host: Literal["api", "storage"],
        request: web.Request,
        body: bytes,
        parsed: Any,
        template: str | None,
    ) -> RecordedRequest:
        record = RecordedRequest(
            host=host,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=_redacted(request.headers),
            body=body,
            json=None if parsed is NO_BODY else parsed,
            route=template,
        )
        self.requests.append(record)
        return record

    def _violation(self, record: RecordedRequest, problem: str) -> None:
        self.violations.append(Violation(record.method, record.path, record.route, problem))

    def _rate_headers(self, key: object, *, limit: int = RATE_LIMIT) -> dict[str, str]:
        now = self.now()
        remaining, reset = self._rate.get(key, (limit, now + RATE_WINDOW))
        if reset <= now:
            remaining, reset = limit, now + RATE_WINDOW
        remaining = max(remaining - 1, 0)
        self._rate[key] = (remaining, reset)
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-used": str(limit - remaining),
            "x-ratelimit-reset": str(int(reset)),
            "x-ratelimit-resource": "core",
        }

    def _exhausted(self, key: object) -> web.Response | None:
        """GitHub's answer once a rate limit is spent before its reset, else None."""
        remaining, reset = self._rate.get(key, (RATE_LIMIT, 0.0))
        if remaining > 0 or reset <= self.now():
            return None
        return self._primary_limit(int(reset))

    def _primary_limit(self, reset: int) -> web.Response:
        # https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api
        # ("Exceeding the rate limit"): a 403 with x-ratelimit-remaining 0 and the reset.
        return error(
            403,
            "API rate limit exceeded for installation.",
            docs=PRIMARY_DOCS,
            headers={
                "x-ratelimit-limit": str(RATE_LIMIT),
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": str(RATE_LIMIT),
                "x-ratelimit-reset": str(reset),
                "x-ratelimit-resource": "core",
            },
        )

    @web.middleware
    async def _api_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        raw = await request.read()
        resource = request.match_info.route.resource
        template = None if resource is None else resource.canonical
        parsed: Any = NO_BODY
        problems = []
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                problems.append("the request body is not JSON")
        record = self._record("api", request, raw, parsed, template)
        response = await self._answer(request, record, parsed, problems)
        record.status = response.status
        response.headers.setdefault("x-github-api-version-selected", "2022-11-28")
        response.headers.setdefault("x-github-request-id", f"DOUBLE:{len(self.requests)}")
        return response

    async def _answer(
        self, request: web.Request, record: RecordedRequest, parsed: Any, problems: list[str]
    ) -> web.StreamResponse:
        operation = (
            load_operations().get(f"{request.method} {record.route}") if record.route else None
        )
        spec = self._routes.get((request.method, record.route or ""))
        if operation is None or spec is None:
            self._violation(record, "no operation of the extract matches this request")
            return not_found()
        body_problems = validate(
            operation, path_params=request.match_info, query=request.query, body=parsed
        )
        for problem in problems + body_problems:
            self._violation(record, problem)
        fault = self.faults.take(request.method, request.path, record.route)
        after = fault if isinstance(fault, ServerErrorAfter | HeldAfter) else None
        if fault is not None and after is None:
            faulty = await self._fault(fault, request)
            if faulty is not None:
                return faulty
        try:
            installation_id, repo, rate_key = self._authenticate(request, spec, record)
        except _Denied as denied:
            denied.response.headers.update(self._rate_headers("anonymous", limit=60))
            return denied.response
        exhausted = self._exhausted(rate_key)
        if exhausted is not None:
            return exhausted
        rate = self._rate_headers(rate_key)
        invalid_body = [
            p for p in problems + body_problems if p.startswith(("body", "the request body"))
        ]
        if invalid_body:
            return error(422, "Invalid request.\n\n" + "\n".join(invalid_body), headers=rate)
        context = Context(
            self, request, None if parsed is NO_BODY else parsed, installation_id, repo
        )
        response = await spec.handler(context)
        if isinstance(after, HeldAfter):
            await asyncio.sleep(after.delay)
        elif after is not None:
            return error(after.status, "Server Error", headers=rate)
        response.headers.update(rate)
        return self._conditional(request, response, rate_key)

    def _conditional(
        self, request: web.Request, response: web.StreamResponse, rate_key: object
    ) -> web.StreamResponse:
        """Tag a successful GET with an `ETag`, and answer 304 when the client already has it.

        "Best practices for using the REST API", "Use conditional requests if appropriate"
        (https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api):
        most endpoints return an `etag`; a request with a matching `If-None-Match` gets
        `304 Not Modified`, which does not count against the primary rate limit, so the
        request given back here is refunded (`x-ratelimit-remaining` is not lowered).
        """
        if (
            request.method != "GET"
            or response.status != 200
            or not isinstance(response, web.Response)
            or response.content_type != "application/json"
            or not isinstance(response.body, bytes)
        ):
            return response
        etag = 'W/"' + hashlib.sha256(response.body).hexdigest()[:40] + '"'
        asked = {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}
        if etag not in asked and "*" not in asked:
            response.headers["ETag"] = etag
            return response
        self.not_modified += 1
        refunded = self._refund(rate_key)
        headers = {k: v for k, v in response.headers.items() if k.lower().startswith("x-")}
        headers.update(refunded)
        headers["ETag"] = etag
        return web.Response(status=304, headers=headers)

    def _refund(self, key: object) -> dict[str, str]:
        """Give back the request `_rate_headers` counted; return the headers to show."""
        remaining, reset = self._rate[key]
        remaining = min(remaining + 1, RATE_LIMIT)
        self._rate[key] = (remaining, reset)
        return {
            "x-ratelimit-remaining": str(remaining),
            "x-ratelimit-used": str(RATE_LIMIT - remaining),
        }

    def _authenticate(
        self, request: web.Request, spec: Route, record: RecordedRequest
    ) -> tuple[int | None, Repository | None, object]:
        if spec.auth == "none":
            return None, None, "anonymous"
        presented = credentials.presented(request.headers.get("Authorization"))
        if presented is None:
            raise _Denied(error(401, "Requires authentication"))
        if spec.auth == "app":
            if presented.scheme != "bearer" or not credentials.looks_like_jwt(presented.value):
                raise _Denied(error(401, "A JSON web token could not be decoded"))
            try:
                credentials.verify_app_jwt(
                    presented.value,
                    public_key=self.public_key,
                    app_id=self.app_id,
                    now=self.now(),
                    leeway=self.jwt_leeway,
                )
            except credentials.CredentialError as exc:
                raise _Denied(error(401, str(exc))) from exc
            record.auth = "jwt"
            return None, None, "app"
        try:
            issued = credentials.installation_token(self.state, presented.value, now=self.now())
        except credentials.CredentialError as exc:
            raise _Denied(error(401, str(exc))) from exc
        record.auth = "token"
        record.installation_id = issued.installation_id
        repo = self.state.repo(request.match_info["owner"], request.match_info["repo"])
        if repo is None or repo.installation_id != issued.installation_id:
            raise _Denied(not_found())  # GitHub hides what a token cannot see
        if spec.permissions and not any(
            _LEVELS.get(issued.permissions.get(name, ""), 0) >= _LEVELS[level]
            for name, level in spec.permissions
        ):
            accepted = "; ".join(f"{name}={level}" for name, level in spec.permissions)
            raise _Denied(
                error(
                    403,
                    "Resource not accessible by integration",
                    headers={"x-accepted-github-permissions": accepted},
                )
            )
        return issued.installation_id, repo, issued.installation_id

    async def _fault(self, fault: Fault, request: web.Request) -> web.StreamResponse | None:
        rate = self._rate_headers("faults")
        if isinstance(fault, Slow):
            await asyncio.sleep(fault.delay)
            return None
        if isinstance(fault, ConnectionReset):
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=500)
        if isinstance(fault, ServerError):
            return error(fault.status, "Server Error", headers=rate)
        if isinstance(fault, SecondaryRateLimit):
            if fault.retry_after is not None:
                rate["retry-after"] = str(fault.retry_after)
            return error(fault.status, SECONDARY_MESSAGE, docs=SECONDARY_DOCS, headers=rate)
        if isinstance(fault, PrimaryRateLimit):
            return self._primary_limit(int(self.now()) + fault.reset_in)
        if isinstance(fault, Respond):
            return json_response(fault.json, status=fault.status, headers=dict(fault.headers))
        raise TypeError(f"unknown fault {fault!r}")

    @web.middleware
    async def _storage_middleware(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        resource = request.match_info.route.resource
        record = self._record(
            "storage", request, b"", NO_BODY, None if resource is None else resource.canonical
        )
        fault = self.storage_faults.take(request.method, request.path, record.route)
        response = await self._fault(fault, request) if fault is not None else None
        if response is None:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                response = exc
        record.status = response.status
        return response
