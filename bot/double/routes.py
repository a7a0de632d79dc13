"""The endpoints the double serves, each declared with its GitHub path and permission.

Paths are spelled exactly as in GitHub's OpenAPI description, so each route finds its
operation in the extract. `auth="app"` routes take the App's JWT; `auth="installation"` routes
take an installation token of the installation that owns the repository, which must hold one
of the listed permissions (https://docs.github.com/en/rest/authentication/
permissions-required-for-github-apps).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlencode

from aiohttp import web

from bot.double import credentials
from bot.double.hooks import HookAttempt, StoredDelivery
from bot.double.http import (
    DEFAULT_PER_PAGE,
    MAX_PER_PAGE,
    error,
    json_response,
    not_found,
    paginate,
)
from bot.double.payloads import iso
from bot.double.state import CheckRun, Comment, Issue, Reaction, Repository

if TYPE_CHECKING:
    from bot.double.server import GitHubDouble


@dataclass
class Context:
    """One request, resolved: who sent it and for which repository."""

    double: GitHubDouble
    request: web.Request
    body: Any
    installation_id: int | None
    repo: Repository | None

    @property
    def params(self) -> dict[str, str]:
        return dict(self.request.match_info)

    def int_param(self, name: str) -> int:
        return int(self.request.match_info[name])

    @property
    def the_repo(self) -> Repository:
        assert self.repo is not None
        return self.repo


Handler = Callable[[Context], Awaitable[web.StreamResponse]]
Permission = tuple[str, str]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    auth: Literal["app", "installation", "none"]
    permissions: tuple[Permission, ...]


ROUTES: list[Route] = []


def route(
    method: str,
    path: str,
    *,
    auth: Literal["app", "installation", "none"] = "installation",
    permissions: tuple[Permission, ...] = (),
) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ROUTES.append(Route(method, path, handler, auth, permissions))
        return handler

    return register


# --- the App ---------------------------------------------------------------------------


@route("GET", "/app", auth="app")
async def get_app(ctx: Context) -> web.StreamResponse:
    return json_response(ctx.double.payloads.app(ctx.double.app_permissions))


@route("POST", "/app/installations/{installation_id}/access_tokens", auth="app")
async def create_access_token(ctx: Context) -> web.StreamResponse:
    double = ctx.double
    installation = double.state.installations.get(ctx.int_param("installation_id"))
    if installation is None:
        return not_found()
    if installation.suspended:
        return error(403, "This installation has been suspended")
    permissions = dict(installation.permissions)
    asked = (ctx.body or {}).get("permissions") if isinstance(ctx.body, dict) else None
    if asked:
        levels = {"read": 1, "write": 2, "admin": 3}
        for name, level in asked.items():
            if levels.get(permissions.get(name, ""), 0) < levels.get(level, 9):
                return error(422, "The permissions requested are not granted to this installation.")
        permissions = dict(asked)
    token, issued = credentials.issue_token(
        double.state, installation_id=installation.id, ttl=double.token_ttl, now=double.now()
    )
    issued.permissions = permissions
    double.tokens_issued.append(installation.id)
    return json_response(
        double.payloads.access_token(token, issued.expires_at, permissions), status=201
    )


@route("POST", "/app-manifests/{code}/conversions", auth="none")
async def create_from_manifest(ctx: Context) -> web.StreamResponse:
    """Convert a code the manifest pages gave (once) into the App's credentials."""
    double = ctx.double
    registration = double.pages.by_code(ctx.params["code"])
    if registration is None or registration.converted:
        return not_found()
    registration.converted = True
    return json_response(
        double.payloads.from_manifest(
            registration.manifest,
            pem=double.private_key.reveal().decode(),
            webhook_secret=registration.webhook_secret,
            html_url=f"{double.web_url}/apps/{double.app_slug}",
            owner=registration.owner,
        ),
        status=201,
    )


# --- the App's webhook deliveries (bot/double/hooks.py) ----------------------------------


def _delivery_item(attempt: HookAttempt, stored: StoredDelivery) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "guid": attempt.guid,
        "delivered_at": iso(attempt.delivered_at),
        "redelivery": attempt.redelivery,
        "duration": attempt.duration,
        "status": attempt.status,
        "status_code": attempt.status_code,
        "event": stored.event,
        "action": stored.action,
        "installation_id": stored.installation_id,
        "repository_id": stored.repository_id,
        "throttled_at": None,
    }


@route("GET", "/app/hook/deliveries", auth="app")
async def list_hook_deliveries(ctx: Context) -> web.StreamResponse:
    """Newest first, cursor-paginated: `cursor` is opaque, `Link` gives rel="next"
    (https://docs.github.com/en/rest/apps/webhooks#list-deliveries-for-an-app-webhook)."""
    hooks, query = ctx.double.hooks, ctx.request.query
    attempts = sorted(hooks.attempts, key=lambda a: (a.delivered_at, a.id), reverse=True)
    wanted = query.get("status")
    if wanted in ("success", "failure"):
        attempts = [a for a in attempts if (a.status == "OK") == (wanted == "success")]
    try:
        per_page = min(max(int(query.get("per_page", DEFAULT_PER_PAGE)), 1), MAX_PER_PAGE)
    except ValueError:
        per_page = DEFAULT_PER_PAGE
    start = 0
    cursor = query.get("cursor")
    if cursor is not None:
        # The cursor names the last attempt of the previous page; an attempt listed later
        # (a new delivery, newer than all) does not shift the pages after it.
        after = cursor.removeprefix("v1_")
        if not after.isdigit():
            return error(422, "Invalid cursor")
        ids = [a.id for a in attempts]
        if int(after) not in ids:
            return error(422, "Invalid cursor")
        start = ids.index(int(after)) + 1
    page = attempts[start : start + per_page]
    headers = {}
    if start + per_page < len(attempts) and page:
        params = {k: v for k, v in query.items() if k != "cursor"}
        params.update(per_page=str(per_page), cursor=f"v1_{page[-1].id}")
        url = f"{ctx.double.api_url}{ctx.request.path}?{urlencode(params)}"
        headers["Link"] = f'<{url}>; rel="next"'
    body = [_delivery_item(a, hooks.deliveries[a.guid]) for a in page]
    return json_response(body, headers=headers)


@route("GET", "/app/hook/deliveries/{delivery_id}", auth="app")
async def get_hook_delivery(ctx: Context) -> web.StreamResponse:
    hooks = ctx.double.hooks
    attempt = hooks.attempt_by_id(ctx.int_param("delivery_id"))
    if attempt is None:
        return not_found()
    stored = hooks.deliveries[attempt.guid]
    body = _delivery_item(attempt, stored)
    body.update(
        url=hooks.target_url or "",
        request={
            "headers": {"X-GitHub-Delivery": stored.guid, "X-GitHub-Event": stored.event},
            "payload": json.loads(stored.payload),
        },
        response={"headers": {}, "payload": attempt.response},
    )
    return json_response(body)


@route("POST", "/app/hook/deliveries/{delivery_id}/attempts", auth="app")
async def redeliver_hook_delivery(ctx: Context) -> web.StreamResponse:
    """202 at once; the delivery is sent again in the background, with its original GUID
    (https://docs.github.com/en/rest/apps/webhooks#redeliver-a-delivery-for-an-app-webhook)."""
    hooks = ctx.double.hooks
    attempt = hooks.attempt_by_id(ctx.int_param("delivery_id"))
    if attempt is None:
        return not_found()
    hooks.redeliver_later(attempt)
    return json_response({}, status=202)


# --- Actions ---------------------------------------------------------------------------

ACTIONS_READ = (("actions", "read"),)


@route("GET", "/repos/{owner}/{repo}/actions/runs", permissions=ACTIONS_READ)
async def list_runs(ctx: Context) -> web.StreamResponse:
    repo, query = ctx.the_repo, ctx.request.query
    runs = sorted(repo.runs.values(), key=lambda r: r.id, reverse=True)
    for name, attribute in (
        ("head_sha", "head_sha"),
        ("branch", "head_branch"),
        ("event", "event"),
        ("status", "status"),
    ):
        if name in query:
            runs = [r for r in runs if getattr(r, attribute) == query[name]]
    page, headers = paginate(ctx.request, ctx.double.api_url, runs)
    body = {
        "total_count": len(runs),
        "workflow_runs": [ctx.double.payloads.run(repo, r) for r in page],
    }
    return json_response(body, headers=headers)


@route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", permissions=ACTIONS_READ)
async def get_run(ctx: Context) -> web.StreamResponse:
    run = ctx.the_repo.runs.get(ctx.int_param("run_id"))
    if run is None:
        return not_found()
    return json_response(ctx.double.payloads.run(ctx.the_repo, run))


@route("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/artifacts", permissions=ACTIONS_READ)
async def list_run_artifacts(ctx: Context) -> web.StreamResponse:
    repo = ctx.the_repo
    run_id = ctx.int_param("run_id")
    if run_id not in repo.runs:
        return not_found()
    artifacts = [a for a in repo.artifacts.values() if a.run_id == run_id]
    if "name" in ctx.request.query:
        artifacts = [a for a in artifacts if a.name == ctx.request.query["name"]]
    if ctx.request.query.get("direction") == "desc":
        artifacts.reverse()
    page, headers = paginate(ctx.request, ctx.double.api_url, artifacts)
    body = {
        "total_count": len(artifacts),
        "artifacts": [ctx.double.payloads.artifact(repo, a) for a in page],
    }
    return json_response(body, headers=headers)


@route(
    "GET",
    "/repos/{owner}/{repo}/actions/artifacts/{artifact_id}/{archive_format}",
    permissions=ACTIONS_READ,
)
async def download_artifact(ctx: Context) -> web.StreamResponse:
    artifact = ctx.the_repo.artifacts.get(ctx.int_param("artifact_id"))
    if artifact is None or ctx.request.match_info["archive_format"] != "zip":
        return not_found()
    if artifact.expired:
        return error(410, "Artifact has expired")
    url = ctx.double.storage.signed_url(f"artifact-{artifact.id}")
    return web.Response(status=302, headers={"Location": url})


@route(
    "POST",
    "/repos/{owner}/{repo}/actions/runs/{run_id}/deployment_protection_rule",
    permissions=(("deployments", "write"),),
)
async def review_deployment(ctx: Context) -> web.StreamResponse:
    run = ctx.the_repo.runs.get(ctx.int_param("run_id"))
    if run is None:
        return not_found()
    run.deployment_reviews.append(dict(ctx.body))
    return web.Response(status=204)


# --- contents, git ---------------------------------------------------------------------

CONTENTS_READ = (("contents", "read"),)


@route("GET", "/repos/{owner}/{repo}/contents/{path}", permissions=CONTENTS_READ)
async def get_content(ctx: Context) -> web.StreamResponse:
    repo = ctx.the_repo
    path = ctx.request.match_info["path"].strip("/")
    ref = ctx.request.query.get("ref", repo.default_branch)
    candidates = (ref, repo.resolve(ref))
    for candidate in candidates:
        data = repo.files.get((candidate, path))
        if data is not None:
            if "raw" in ctx.request.headers.get("Accept", ""):
                return web.Response(body=data, content_type="application/vnd.github.raw")
            return json_response(ctx.double.payloads.file(repo, path, ref, data))
    entries: dict[str, str] = {}
    for file_ref, file_path in repo.files:
        if file_ref in candidates and file_path.startswith(path + "/"):
            rest = file_path[len(path) + 1 :]
            name, _, deeper = rest.partition("/")
            entries[name] = "dir" if deeper else "file"
    if not entries:
        return not_found()
    listing = [
        ctx.double.payloads.directory_entry(repo, f"{path}/{name}", ref, kind)
        for name, kind in sorted(entries.items())
    ]
    return json_response(listing)


@route("GET", "/repos/{owner}/{repo}/git/ref/{ref}", permissions=CONTENTS_READ)
async def get_ref(ctx: Context) -> web.StreamResponse:
    repo = ctx.the_repo
    name = ctx.request.match_info["ref"]
    sha = repo.refs.get(name)
    if sha is None:
        return not_found()
    kind = "tag" if sha in repo.tags else "commit"
    return json_response(ctx.double.payloads.ref(repo, name, sha, kind))


@route("GET", "/repos/{owner}/{repo}/git/tags/{tag_sha}", permissions=CONTENTS_READ)
async def get_tag(ctx: Context) -> web.StreamResponse:
    tag = ctx.the_repo.tags.get(ctx.request.match_info["tag_sha"])
    if tag is None:
        return not_found()
    return json_response(ctx.double.payloads.tag(ctx.the_repo, tag))


@route("GET", "/repos/{owner}/{repo}/git/trees/{tree_sha}", permissions=CONTENTS_READ)
async def get_tree(ctx: Context) -> web.StreamResponse:
    """The commit's (or ref's) root tree; nested trees are listed, never expanded.

    The double knows a commit by its files only: a commit it holds no file for has an empty
    tree (GitHub would answer 404 for a commit that does not exist at all).
    """
    repo = ctx.the_repo
    ref = ctx.request.match_info["tree_sha"]
    candidates = (ref, repo.resolve(ref))
    entries: dict[str, tuple[str, int]] = {}
    for file_ref, file_path in repo.files:
        if file_ref in candidates:
            name, _, deeper = file_path.partition("/")
            size = 0 if deeper else len(repo.files[(file_ref, file_path)])
            entries[name] = ("tree" if deeper else "blob", size)
    return json_response(ctx.double.payloads.tree(repo, repo.resolve(ref), entries))


@route(
    "GET",
    "/repos/{owner}/{repo}/collaborators/{username}/permission",
    permissions=(("metadata", "read"),),
)
async def get_permission(ctx: Context) -> web.StreamResponse:
    login = ctx.request.match_info["username"]
    permission = ctx.the_repo.collaborators.get(login)
    if permission is None:
        if login not in ctx.double.known_users:
            return not_found()
        permission = "none"
    return json_response(ctx.double.payloads.permission(login, permission))


# --- checks ----------------------------------------------------------------------------

CHECKS_WRITE = (("checks", "write"),)
_CHECK_FIELDS = ("name", "details_url", "external_id", "started_at", "completed_at", "status")


def _apply_check_fields(check: CheckRun, body: dict[str, Any]) -> web.Response | None:
    for name in _CHECK_FIELDS:
        if name in body:
            setattr(check, name, body[name])
    if "conclusion" in body:
        check.conclusion = body["conclusion"]
        check.status = "completed"
    if check.status == "completed" and check.conclusion is None:
        return error(
            422,
            'Invalid request.\n\nNo subschema in "anyOf" matched.\n"conclusion" wasn\'t supplied.',
        )
    if check.status == "completed" and check.completed_at is None:
        check.completed_at = iso(time.time())
    if check.status != "queued" and check.started_at is None:
        check.started_at = iso(time.time())
    output = body.get("output")
    if isinstance(output, dict):
        for key in ("title", "summary", "text"):
            if key in output:
                check.output[key] = output[key]
        check.annotations.extend(output.get("annotations", []))
    if "actions" in body:
        check.actions = list(body["actions"])
    return None


@route("POST", "/repos/{owner}/{repo}/check-runs", permissions=CHECKS_WRITE)
async def create_check_run(ctx: Context) -> web.StreamResponse:
    repo = ctx.the_repo
    check = CheckRun(
        id=ctx.double.state.next_id(),
        name=ctx.body["name"],
        head_sha=ctx.body["head_sha"],
        app_id=ctx.double.app_id,
    )
    problem = _apply_check_fields(check, ctx.body)
    if problem is not None:
        return problem
    repo.check_runs[check.id] = check
    return json_response(ctx.double.payloads.check_run(repo, check), status=201)


@route("PATCH", "/repos/{owner}/{repo}/check-runs/{check_run_id}", permissions=CHECKS_WRITE)
async def update_check_run(ctx: Context) -> web.StreamResponse:
    repo = ctx.the_repo
    check = repo.check_runs.get(ctx.int_param("check_run_id"))
    if check is None:
        return not_found()
    if check.app_id != ctx.double.app_id:
        return error(
            403,
            f"Invalid app_id `{ctx.double.app_id}` - check run can only be modified by the "
            "GitHub App that created it.",
        )
    problem = _apply_check_fields(check, ctx.body)
    if problem is not None:
        return problem
    check.updates += 1
    return json_response(ctx.double.payloads.check_run(repo, check))


@route("GET", "/repos/{owner}/{repo}/commits/{ref}/check-runs", permissions=(("checks", "read"),))
async def list_check_runs_for_ref(ctx: Context) -> web.StreamResponse:
    repo, query = ctx.the_repo, ctx.request.query
    sha = repo.resolve(ctx.request.match_info["ref"])
    checks = sorted((c for c in repo.check_runs.values() if c.head_sha == sha), key=lambda c: -c.id)
    if "check_name" in query:
        checks = [c for c in checks if c.name == query["check_name"]]
    if "status" in query:
        checks = [c for c in checks if c.status == query["status"]]
    if "app_id" in query:
        checks = [c for c in checks if str(c.app_id) == query["app_id"]]
    if query.get("filter", "latest") == "latest":
        seen: set[tuple[str, int]] = set()
        latest = []
        for check in checks:
            if (check.name, check.app_id) not in seen:
                seen.add((check.name, check.app_id))
                latest.append(check)
        checks = latest
    page, headers = paginate(ctx.request, ctx.double.api_url, checks)
    body = {
        "total_count": len(checks),
        "check_runs": [ctx.double.payloads.check_run(repo, c) for c in page],
    }
    return json_response(body, headers=headers)


# --- pull requests, issues -------------------------------------------------------------

ISSUES_OR_PULLS_WRITE = (("issues", "write"), ("pull_requests", "write"))


@route("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", permissions=(("pull_requests", "read"),))
async def get_pull(ctx: Context) -> web.StreamResponse:
    pr = ctx.the_repo.pulls.get(ctx.int_param("pull_number"))
    if pr is None:
        return not_found()
    return json_response(ctx.double.payloads.pull(ctx.the_repo, pr))


ISSUES_READ = (("issues", "read"),)


@route("GET", "/repos/{owner}/{repo}/issues", permissions=ISSUES_READ)
async def list_issues(ctx: Context) -> web.StreamResponse:
    """https://docs.github.com/en/rest/issues/issues#list-repository-issues: pull requests
    are issues too and are listed (with a `pull_request` key); `creator`, `labels`, `state`,
    `sort=created` and `direction` filter and order as GitHub does."""
    repo, query = ctx.the_repo, ctx.request.query
    state = query.get("state", "open")
    issues = [i for i in repo.issues.values() if state == "all" or i.state == state]
    if "creator" in query:
        issues = [i for i in issues if i.user == query["creator"]]
    if "since" in query:
        # "Only show results that were last updated after the given time"; the double's
        # issues are never updated after they are opened.
        since = datetime.fromisoformat(query["since"].replace("Z", "+00:00")).timestamp()
        issues = [i for i in issues if i.created_at >= since]
    if "labels" in query:
        wanted = {name.strip() for name in query["labels"].split(",") if name.strip()}
        issues = [i for i in issues if wanted <= set(i.labels)]
    issues.sort(key=lambda i: (i.created_at, i.number), reverse=query.get("direction") != "asc")
    page, headers = paginate(ctx.request, ctx.double.api_url, issues)
    return json_response([ctx.double.payloads.issue(repo, i) for i in page], headers=headers)


@route("POST", "/repos/{owner}/{repo}/issues", permissions=(("issues", "write"),))
async def create_issue(ctx: Context) -> web.StreamResponse:
    """https://docs.github.com/en/rest/issues/issues#create-an-issue (labels the App may not
    set are dropped silently, as GitHub does for those without push access)."""
    repo = ctx.the_repo
    number = max([*repo.pulls, *repo.issues, 0]) + 1
    labels = [
        label if isinstance(label, str) else str(label.get("name"))
        for label in ctx.body.get("labels") or []
    ]
    issue = Issue(
        number,
        title=str(ctx.body["title"]),
        body=ctx.body.get("body"),
        user=f"{ctx.double.app_slug}[bot]",
        labels=labels,
    )
    repo.issues[number] = issue
    return json_response(ctx.double.payloads.issue(repo, issue), status=201)


@route(
    "POST",
    "/repos/{owner}/{repo}/issues/{issue_number}/comments",
    permissions=ISSUES_OR_PULLS_WRITE,
)
async def create_comment(ctx: Context) -> web.StreamResponse:
    repo = ctx.the_repo
    number = ctx.int_param("issue_number")
    if number not in repo.pulls and number not in repo.issues:
        return not_found()
    comment = Comment(
        ctx.double.state.next_id(), number, ctx.body["body"], f"{ctx.double.app_slug}[bot]"
    )
    repo.comments[comment.id] = comment
    return json_response(ctx.double.payloads.comment(repo, comment), status=201)


@route(
    "POST",
    "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions",
    permissions=ISSUES_OR_PULLS_WRITE,
)
async def create_reaction(ctx: Context) -> web.StreamResponse:
    repo = ctx.the_repo
    comment_id = ctx.int_param("comment_id")
    if comment_id not in repo.comments:
        return not_found()
    user = f"{ctx.double.app_slug}[bot]"
    for existing in repo.reactions:
        if (existing.comment_id, existing.content, existing.user) == (
            comment_id,
            ctx.body["content"],
            user,
        ):
            return json_response(ctx.double.payloads.reaction(existing), status=200)
    reaction = Reaction(ctx.double.state.next_id(), comment_id, ctx.body["content"], user)
    repo.reactions.append(reaction)
    return json_response(ctx.double.payloads.reaction(reaction), status=201)


# --- releases --------------------------------------------------------------------------

_RELEASE_FIELDS = ("tag_name", "target_commitish", "name", "body", "draft", "prerelease")


@route("GET", "/repos/{owner}/{repo}/releases/{release_id}", permissions=CONTENTS_READ)
async def get_release(ctx: Context) -> web.StreamResponse:
    release = ctx.the_repo.releases.get(ctx.int_param("release_id"))
    if release is None:
        return not_found()
    return json_response(ctx.double.payloads.release(ctx.the_repo, release))


IMMUTABLE_STATE: Final = "state cannot be changed when release is immutable"
"""What GitHub answers (422) to a draft edit of a published immutable release."""
CONTENTS_WRITE = (("contents", "write"),)


@route("GET", "/repos/{owner}/{repo}/releases", permissions=CONTENTS_READ)
async def list_releases(ctx: Context) -> web.StreamResponse:
    """Newest first; drafts are listed only here (and only to those who may push), never by
    `GET .../releases/tags/{tag}` (https://docs.github.com/en/rest/releases/releases#list-releases)."""
    repo = ctx.the_repo
    releases = sorted(repo.releases.values(), key=lambda r: r.id, reverse=True)
    page, headers = paginate(ctx.request, ctx.double.api_url, releases)
    return json_response(
        [ctx.double.payloads.release(repo, release) for release in page], headers=headers
    )


@route("GET", "/repos/{owner}/{repo}/releases/tags/{tag}", permissions=CONTENTS_READ)
async def get_release_by_tag(ctx: Context) -> web.StreamResponse:
    """A published release only: "Get a published release with the specified tag"
    (https://docs.github.com/en/rest/releases/releases#get-a-release-by-tag-name); a draft of
    that tag is a 404 here and shows only in the listing."""
    repo, tag = ctx.the_repo, ctx.request.match_info["tag"]
    for release in repo.releases.values():
        if release.tag_name == tag and not release.draft:
            return json_response(ctx.double.payloads.release(repo, release))
    return not_found()


@route("PATCH", "/repos/{owner}/{repo}/releases/{release_id}", permissions=CONTENTS_WRITE)
async def update_release(ctx: Context) -> web.StreamResponse:
    repo = ctx.the_repo
    release = repo.releases.get(ctx.int_param("release_id"))
    if release is None:
        return not_found()
    if release.immutable and any(
        name in ctx.body and ctx.body[name] != getattr(release, name)
        for name in ("draft", "tag_name", "target_commitish")
    ):
        # Only the title, the notes and the prerelease/latest flags of an immutable release
        # can change (https://docs.github.com/en/code-security/concepts/supply-chain-security/
        # immutable-releases).
        return error(
            422,
            "Validation Failed",
            docs="https://docs.github.com/rest/releases/releases#update-a-release",
            errors=[
                {"resource": "Release", "code": "custom", "field": "draft",
                 "message": IMMUTABLE_STATE}
            ],
        )  # fmt: skip
    for name in _RELEASE_FIELDS:
        if name in ctx.body:
            setattr(release, name, ctx.body[name])
    if not release.draft and repo.immutable_releases:
        release.immutable = True
    return json_response(ctx.double.payloads.release(repo, release))


@route("DELETE", "/repos/{owner}/{repo}/releases/{release_id}", permissions=CONTENTS_WRITE)
async def delete_release(ctx: Context) -> web.StreamResponse:
    """https://docs.github.com/en/rest/releases/releases#delete-a-release: the release and its
    assets go; the tag stays (and an immutable release's tag name can never be used again)."""
    repo = ctx.the_repo
    release = repo.releases.pop(ctx.int_param("release_id"), None)
    if release is None:
        return not_found()
    for asset_id in [a.id for a in repo.assets.values() if a.release_id == release.id]:
        del repo.assets[asset_id]
    repo.deleted_releases.append(release)
    return web.Response(status=204)


@route("GET", "/repos/{owner}/{repo}/releases/{release_id}/assets", permissions=CONTENTS_READ)
async def list_release_assets(ctx: Context) -> web.StreamResponse:
    repo = ctx.the_repo
    release = repo.releases.get(ctx.int_param("release_id"))
    if release is None:
        return not_found()
    assets = [a for a in repo.assets.values() if a.release_id == release.id]
    page, headers = paginate(ctx.request, ctx.double.api_url, assets)
    return json_response(
        [ctx.double.payloads.asset(repo, release, a) for a in page], headers=headers
    )


@route("GET", "/repos/{owner}/{repo}/releases/assets/{asset_id}", permissions=CONTENTS_READ)
async def get_release_asset(ctx: Context) -> web.StreamResponse:
    repo = ctx.the_repo
    asset = repo.assets.get(ctx.int_param("asset_id"))
    if asset is None:
        return not_found()
    if ctx.request.headers.get("Accept", "").startswith("application/octet-stream"):
        return web.Response(
            status=302, headers={"Location": ctx.double.storage.signed_url(f"asset-{asset.id}")}
        )
    release = repo.releases[asset.release_id]
    return json_response(ctx.double.payloads.asset(repo, release, asset))
