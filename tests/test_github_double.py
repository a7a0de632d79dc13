"""The GitHub double itself: credentials, shapes, pagination, storage, faults, OpenAPI checks."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import aiohttp
import jwt
import pytest

from bot.double.faults import (
    ConnectionReset,
    PrimaryRateLimit,
    SecondaryRateLimit,
    ServerError,
    too_many_requests,
)
from bot.double.server import GitHubDouble
from bot.double.spec import load_operations, source
from bot.double.state import Repository
from bot.github import app_jwt

pytest_plugins = ["tests.ghdouble.fixtures", "pytester"]


class Caller:
    """Raw HTTP against the double, to see exactly what it answers."""

    def __init__(self, double: GitHubDouble, session: aiohttp.ClientSession) -> None:
        self.double = double
        self.session = session

    async def __call__(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        jwt_token: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, Any]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"token {token}"
        if jwt_token is not None:
            sent["Authorization"] = f"Bearer {jwt_token}"
        url = path if path.startswith("http") else self.double.api_url + path
        async with self.session.request(
            method, url, headers=sent, json=body, allow_redirects=False
        ) as response:
            raw = await response.read()
            data = json.loads(raw) if response.content_type == "application/json" else raw
            return response.status, response.headers, data

    def jwt(self, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iat": now - 60, "exp": now + 480, "iss": str(self.double.app_id)}
        payload.update(claims)
        return jwt.encode(payload, self.double.private_key.reveal(), algorithm="RS256")


@pytest.fixture
def call(ghdouble: GitHubDouble, github_session: aiohttp.ClientSession) -> Caller:
    return Caller(ghdouble, github_session)


def repo_and_token(ghdouble: GitHubDouble) -> tuple[Repository, str]:
    repo = ghdouble.add_repo("octo-org/octo-repo")
    return repo, ghdouble.token_for(ghdouble.installation_of(repo))


# --- credentials --------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({}, None),
        # Times are offsets from when the test runs (collection can be long before).
        ({"exp": -5}, "'Expiration time' claim ('exp') must be"),
        ({"exp": 700}, "is too far in the future"),
        ({"iat": 30}, "'Issued at' claim ('iat')"),
        ({"iss": "999"}, "'Issuer' claim"),
    ],
)
async def test_app_jwt_rules(call: Caller, claims: dict[str, Any], message: str | None) -> None:
    now = int(time.time())
    claims = {k: now + v if k in ("iat", "exp") else v for k, v in claims.items()}
    status, headers, data = await call("GET", "/app", jwt_token=call.jwt(**claims))
    if message is None:
        assert status == 200
        assert data["id"] == call.double.app_id
        assert data["slug"] == call.double.app_slug
    else:
        assert status == 401
        assert message in data["message"]
        assert data["documentation_url"].startswith("https://docs.github.com/")
        assert headers["x-ratelimit-limit"] == "60"


@pytest.mark.asyncio
async def test_app_endpoints_refuse_a_foreign_key_and_tokens(
    call: Caller, ghdouble: GitHubDouble
) -> None:
    from bot.double.helpers import make_keypair

    other, _ = make_keypair()
    forged = app_jwt(app_id=ghdouble.app_id, private_key=other)
    status, _, data = await call("GET", "/app", jwt_token=forged)
    assert (status, data["message"]) == (401, "A JSON web token could not be decoded")
    _, token = repo_and_token(ghdouble)
    status, _, _ = await call("GET", "/app", token=token)
    assert status == 401
    status, _, data = await call("GET", "/app")
    assert (status, data["message"]) == (401, "Requires authentication")


@pytest.mark.asyncio
async def test_access_tokens(call: Caller, ghdouble: GitHubDouble) -> None:
    repo = ghdouble.add_repo()
    installation = ghdouble.installation_of(repo)
    ghdouble.token_ttl = 120
    status, _, data = await call(
        "POST",
        f"/app/installations/{installation.id}/access_tokens",
        jwt_token=call.jwt(),
        body={"permissions": {"contents": "read"}},
    )
    assert status == 201
    assert data["token"].startswith("ghs_") and len(data["token"]) == 40
    assert data["permissions"] == {"contents": "read"}
    expires = time.mktime(time.strptime(data["expires_at"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert 100 < expires - time.time() <= 121
    # The narrowed token lacks actions: read.
    run = ghdouble.add_run(repo)
    status, _, _ = await call(
        "GET", f"/repos/{repo.full_name}/actions/runs/{run.id}", token=data["token"]
    )
    assert status == 403
    status, _, _ = await call(
        "POST", "/app/installations/999/access_tokens", jwt_token=call.jwt(), body={}
    )
    assert status == 404
    installation.suspended = True
    status, _, data = await call(
        "POST", f"/app/installations/{installation.id}/access_tokens", jwt_token=call.jwt()
    )
    assert (status, data["message"]) == (403, "This installation has been suspended")


@pytest.mark.asyncio
async def test_repository_endpoints_take_only_a_live_token_of_the_owner(
    call: Caller, ghdouble: GitHubDouble
) -> None:
    repo, token = repo_and_token(ghdouble)
    run = ghdouble.add_run(repo)
    path = f"/repos/{repo.full_name}/actions/runs/{run.id}"
    assert (await call("GET", path, token=token))[0] == 200
    assert (await call("GET", path, jwt_token=token))[0] == 200  # "Bearer <token>" works too
    status, _, data = await call("GET", path, token="ghs_" + "x" * 36)
    assert (status, data["message"]) == (401, "Bad credentials")
    status, _, _ = await call("GET", path, jwt_token=call.jwt())
    assert status == 401
    other = ghdouble.add_repo("someone/else")
    foreign = ghdouble.token_for(ghdouble.installation_of(other))
    assert (await call("GET", path, token=foreign))[0] == 404
    ghdouble.clock_skew = ghdouble.token_ttl + 1  # the token has expired
    status, _, data = await call("GET", path, token=token)
    assert (status, data["message"]) == (401, "Bad credentials")


@pytest.mark.asyncio
async def test_missing_permission_names_it(call: Caller, ghdouble: GitHubDouble) -> None:
    installation = ghdouble.add_installation(permissions={"checks": "read"})
    repo = ghdouble.add_repo("octo-org/r", installation=installation)
    status, headers, data = await call(
        "POST",
        f"/repos/{repo.full_name}/check-runs",
        token=ghdouble.token_for(installation),
        body={"name": "x", "head_sha": "a"},
    )
    assert (status, data["message"]) == (403, "Resource not accessible by integration")
    assert headers["x-accepted-github-permissions"] == "checks=write"


# --- answers ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_answers_keep_the_shape_of_githubs_examples(
    call: Caller, ghdouble: GitHubDouble
) -> None:
    repo, token = repo_and_token(ghdouble)
    run = ghdouble.add_run(repo, head_sha="c" * 40)
    pr = ghdouble.add_pull(repo, head_sha="c" * 40)
    release = ghdouble.add_release(repo, tag_name="v1")
    cases = {
        "GET /repos/{owner}/{repo}/actions/runs/{run_id}": f"/actions/runs/{run.id}",
        "GET /repos/{owner}/{repo}/pulls/{pull_number}": f"/pulls/{pr.number}",
        "GET /repos/{owner}/{repo}/releases/{release_id}": f"/releases/{release.id}",
    }
    for operation, suffix in cases.items():
        status, headers, data = await call("GET", f"/repos/{repo.full_name}{suffix}", token=token)
        assert status == 200
        example = load_operations()[operation].example
        assert set(example) <= set(data), operation
        assert "api.github.com" not in json.dumps(data)
        assert headers["x-ratelimit-resource"] == "core"
    _, _, data = await call("GET", f"/repos/{repo.full_name}/actions/runs/{run.id}", token=token)
    assert data["repository"]["full_name"] == repo.full_name
    assert data["pull_requests"][0]["number"] == pr.number
    assert data["artifacts_url"].startswith(ghdouble.api_url)


@pytest.mark.asyncio
async def test_rate_limit_headers_count_down(call: Caller, ghdouble: GitHubDouble) -> None:
    repo, token = repo_and_token(ghdouble)
    seen = []
    for _ in range(3):
        _, headers, _ = await call("GET", f"/repos/{repo.full_name}/actions/runs", token=token)
        seen.append(int(headers["x-ratelimit-remaining"]))
        assert int(headers["x-ratelimit-reset"]) > time.time()
    assert seen == [4999, 4998, 4997]


@pytest.mark.asyncio
async def test_pagination_links_like_githubs(call: Caller, ghdouble: GitHubDouble) -> None:
    repo, token = repo_and_token(ghdouble)
    run = ghdouble.add_run(repo)
    for index in range(7):
        ghdouble.add_artifact(repo, run, name=f"a{index}", data=b"x")
    base = f"/repos/{repo.full_name}/actions/runs/{run.id}/artifacts"
    _, headers, data = await call("GET", f"{base}?per_page=3", token=token)
    assert data["total_count"] == 7 and len(data["artifacts"]) == 3
    assert headers["Link"] == (
        f'<{ghdouble.api_url}{base}?per_page=3&page=2>; rel="next", '
        f'<{ghdouble.api_url}{base}?per_page=3&page=3>; rel="last"'
    )
    _, headers, data = await call("GET", f"{base}?per_page=3&page=2", token=token)
    rels = [part.split("rel=")[1] for part in headers["Link"].split(", ")]
    assert rels == ['"prev"', '"next"', '"last"', '"first"']
    _, headers, data = await call("GET", f"{base}?per_page=3&page=3", token=token)
    assert [a["name"] for a in data["artifacts"]] == ["a6"]
    assert "next" not in headers["Link"]
    _, headers, data = await call("GET", f"{base}?name=a2", token=token)
    assert [a["name"] for a in data["artifacts"]] == ["a2"] and "Link" not in headers


@pytest.mark.asyncio
async def test_runs_filter_by_head_sha(call: Caller, ghdouble: GitHubDouble) -> None:
    repo, token = repo_and_token(ghdouble)
    wanted = ghdouble.add_run(repo, head_sha="a" * 40)
    ghdouble.add_run(repo, head_sha="b" * 40)
    _, _, data = await call(
        "GET", f"/repos/{repo.full_name}/actions/runs?head_sha={'a' * 40}", token=token
    )
    assert [r["id"] for r in data["workflow_runs"]] == [wanted.id]
    assert data["total_count"] == 1


@pytest.mark.asyncio
async def test_contents_at_a_ref(call: Caller, ghdouble: GitHubDouble) -> None:
    repo, token = repo_and_token(ghdouble)
    text = "rules:\n  sourcemap/map-file: error\n" * 10
    ghdouble.add_file(repo, ".github/release-guard.yml", text, ref="d" * 40)
    ghdouble.add_file(repo, ".github/release-guard.yml", "on main\n")
    path = f"/repos/{repo.full_name}/contents/.github/release-guard.yml"
    status, _, data = await call("GET", f"{path}?ref={'d' * 40}", token=token)
    assert status == 200 and data["encoding"] == "base64" and data["type"] == "file"
    assert all(len(line) <= 60 for line in data["content"].splitlines())
    assert base64.b64decode(data["content"]).decode() == text
    _, _, data = await call("GET", path, token=token)
    assert base64.b64decode(data["content"]) == b"on main\n"
    status, _, raw = await call(
        "GET", path, token=token, headers={"Accept": "application/vnd.github.raw+json"}
    )
    assert (status, raw) == (200, b"on main\n")
    status, _, data = await call("GET", f"{path}?ref=nope", token=token)
    assert (status, data["message"]) == (404, "Not Found")
    _, _, listing = await call("GET", f"/repos/{repo.full_name}/contents/.github", token=token)
    assert [(e["name"], e["type"]) for e in listing] == [("release-guard.yml", "file")]


@pytest.mark.asyncio
async def test_tags_lightweight_and_annotated(call: Caller, ghdouble: GitHubDouble) -> None:
    repo, token = repo_and_token(ghdouble)
    ghdouble.add_tag(repo, "v1", commit="1" * 40)
    tag_sha = ghdouble.add_tag(repo, "v2", commit="2" * 40, annotated=True, message="Release 2")
    _, _, data = await call("GET", f"/repos/{repo.full_name}/git/ref/tags/v1", token=token)
    assert data["object"] == {
        "type": "commit",
        "sha": "1" * 40,
        "url": f"{ghdouble.api_url}/repos/{repo.full_name}/git/commits/{'1' * 40}",
    }
    _, _, data = await call("GET", f"/repos/{repo.full_name}/git/ref/tags/v2", token=token)
    assert data["ref"] == "refs/tags/v2"
    assert (data["object"]["type"], data["object"]["sha"]) == ("tag", tag_sha)
    _, _, data = await call("GET", f"/repos/{repo.full_name}/git/tags/{tag_sha}", token=token)
    assert (data["tag"], data["message"], data["object"]["sha"]) == ("v2", "Release 2", "2" * 40)
    assert (await call("GET", f"/repos/{repo.full_name}/git/ref/tags/v3", token=token))[0] == 404
    assert repo.resolve("v2") == "2" * 40


@pytest.mark.asyncio
async def test_check_runs_lifecycle_and_listing(call: Caller, ghdouble: GitHubDouble) -> None:
    repo, token = repo_and_token(ghdouble)
    sha = "e" * 40
    ghdouble.add_ref(repo, "heads/feature", sha)
    ghdouble.add_check_run(repo, name="release-guard", head_sha=sha, conclusion="failure")
    ghdouble.add_check_run(repo, name="other", head_sha=sha, app_id=77)
    status, _, created = await call(
        "POST",
        f"/repos/{repo.full_name}/check-runs",
        token=token,
        body={"name": "release-guard", "head_sha": sha, "status": "in_progress"},
    )
    assert status == 201 and created["status"] == "in_progress" and created["started_at"]
    _, _, listed = await call(
        "GET",
        f"/repos/{repo.full_name}/commits/feature/check-runs?check_name=release-guard",
        token=token,
    )
    assert [c["id"] for c in listed["check_runs"]] == [created["id"]]  # latest only
    _, _, listed = await call(
        "GET",
        f"/repos/{repo.full_name}/commits/{sha}/check-runs?check_name=release-guard&filter=all",
        token=token,
    )
    assert len(listed["check_runs"]) == 2
    other = next(c for c in repo.check_runs.values() if c.app_id == 77)
    status, _, _ = await call(
        "PATCH", f"/repos/{repo.full_name}/check-runs/{other.id}", token=token, body={}
    )
    assert status == 403


@pytest.mark.asyncio
async def test_comments_reactions_permissions_and_deployments(
    call: Caller, ghdouble: GitHubDouble
) -> None:
    repo, token = repo_and_token(ghdouble)
    pr = ghdouble.add_pull(repo, head_sha="f" * 40)
    status, _, comment = await call(
        "POST",
        f"/repos/{repo.full_name}/issues/{pr.number}/comments",
        token=token,
        body={"body": "release-guard: 1 error"},
    )
    assert status == 201 and comment["user"]["login"] == f"{ghdouble.app_slug}[bot]"
    assert repo.comments[comment["id"]].body == "release-guard: 1 error"
    reaction_path = f"/repos/{repo.full_name}/issues/comments/{comment['id']}/reactions"
    first = await call("POST", reaction_path, token=token, body={"content": "eyes"})
    again = await call("POST", reaction_path, token=token, body={"content": "eyes"})
    assert (first[0], again[0]) == (201, 200) and first[2]["id"] == again[2]["id"]
    missing = await call(
        "POST", f"/repos/{repo.full_name}/issues/999/comments", token=token, body={"body": "x"}
    )
    assert missing[0] == 404

    ghdouble.set_permission(repo, "maintainer", "write")
    base = f"/repos/{repo.full_name}/collaborators"
    _, _, data = await call("GET", f"{base}/maintainer/permission", token=token)
    assert (data["permission"], data["user"]["login"]) == ("write", "maintainer")
    _, _, data = await call("GET", f"{base}/octocat/permission", token=token)
    assert data["permission"] == "none"
    assert (await call("GET", f"{base}/ghost/permission", token=token))[0] == 404

    run = ghdouble.add_run(repo)
    review = {"environment_name": "production", "state": "approved", "comment": "clean"}
    status, _, _ = await call(
        "POST",
        f"/repos/{repo.full_name}/actions/runs/{run.id}/deployment_protection_rule",
        token=token,
        body=review,
    )
    assert status == 204 and run.deployment_reviews == [review]


@pytest.mark.asyncio
async def test_releases_and_assets(call: Caller, ghdouble: GitHubDouble) -> None:
    repo, token = repo_and_token(ghdouble)
    release = ghdouble.add_release(repo, tag_name="v1.0.0", draft=True)
    asset = ghdouble.add_asset(
        repo, release, name="pkg.tgz", data=b"tgz", content_type="application/gzip"
    )
    _, _, data = await call("GET", f"/repos/{repo.full_name}/releases/{release.id}", token=token)
    assert data["draft"] is True and [a["name"] for a in data["assets"]] == ["pkg.tgz"]
    status, _, data = await call(
        "PATCH",
        f"/repos/{repo.full_name}/releases/{release.id}",
        token=token,
        body={"draft": False},
    )
    assert status == 200 and data["draft"] is False and release.draft is False
    _, _, listed = await call(
        "GET", f"/repos/{repo.full_name}/releases/{release.id}/assets", token=token
    )
    assert [a["id"] for a in listed] == [asset.id]
    asset_path = f"/repos/{repo.full_name}/releases/assets/{asset.id}"
    _, _, meta = await call("GET", asset_path, token=token)
    assert meta["size"] == 3 and meta["content_type"] == "application/gzip"
    status, headers, _ = await call(
        "GET", asset_path, token=token, headers={"Accept": "application/octet-stream"}
    )
    assert status == 302 and headers["Location"].startswith(ghdouble.storage_url)
    status, headers, body = await call("GET", headers["Location"])
    assert (status, body, headers["Content-Type"]) == (200, b"tgz", "application/gzip")


# --- storage ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_artifact_download_redirects_to_signed_storage(
    call: Caller, ghdouble: GitHubDouble
) -> None:
    repo, token = repo_and_token(ghdouble)
    run = ghdouble.add_run(repo)
    artifact = ghdouble.add_artifact(repo, run, name="dist", data=b"PK\x03\x04zip")
    zip_path = f"/repos/{repo.full_name}/actions/artifacts/{artifact.id}/zip"
    status, headers, _ = await call("GET", zip_path, token=token)
    assert status == 302
    location = headers["Location"]
    assert location.startswith(ghdouble.storage_url) and ghdouble.storage_url != ghdouble.api_url
    assert (await call("GET", location))[2] == b"PK\x03\x04zip"
    status, _, body = await call("GET", location, token=token)
    assert status == 400 and b"Only one auth mechanism" in body
    assert (await call("GET", location.replace("sig=", "sig=0")))[0] == 403
    ghdouble.clock_skew = 61  # signed URLs last a minute
    assert (await call("GET", location))[0] == 403
    ghdouble.clock_skew = 0
    assert (await call("GET", f"{zip_path[:-3]}tar", token=token))[0] == 404
    artifact.expired = True
    status, _, data = await call("GET", zip_path, token=token)
    assert (status, data["message"]) == (410, "Artifact has expired")
    assert [r.had_authorization for r in ghdouble.requests_to(host="storage")] == [
        False,
        True,
        False,
        False,
    ]


# --- faults -------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_faults_are_served_once_each_in_order(call: Caller, ghdouble: GitHubDouble) -> None:
    repo, token = repo_and_token(ghdouble)
    path = f"/repos/{repo.full_name}/actions/runs"
    ghdouble.faults.add(
        "GET",
        "/repos/{owner}/{repo}/actions/runs",
        ServerError(503),
        SecondaryRateLimit(retry_after=12),
        too_many_requests(retry_after=4),
        SecondaryRateLimit(retry_after=None),
        PrimaryRateLimit(reset_in=90),
    )
    status, _, data = await call("GET", path, token=token)
    assert (status, data["message"]) == (503, "Server Error")
    status, headers, data = await call("GET", path, token=token)
    assert (status, headers["Retry-After"]) == (403, "12")
    assert "secondary rate limit" in data["message"]
    status, headers, _ = await call("GET", path, token=token)
    assert (status, headers["Retry-After"]) == (429, "4")
    status, headers, data = await call("GET", path, token=token)
    assert status == 403 and "Retry-After" not in headers
    assert "secondary rate limit" in data["message"]
    status, headers, data = await call("GET", path, token=token)
    assert (status, headers["x-ratelimit-remaining"]) == (403, "0")
    assert 85 <= int(headers["x-ratelimit-reset"]) - time.time() <= 91
    assert "rate limit exceeded" in data["message"]
    assert ghdouble.faults.pending() == 0
    assert (await call("GET", path, token=token))[0] == 200


@pytest.mark.asyncio
async def test_connection_reset_fault(call: Caller, ghdouble: GitHubDouble) -> None:
    repo, token = repo_and_token(ghdouble)
    ghdouble.faults.add("POST", "/repos/*/check-runs", ConnectionReset())
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(
            "POST",
            f"/repos/{repo.full_name}/check-runs",
            token=token,
            body={"name": "x", "head_sha": "a"},
        )


# --- OpenAPI ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_invalid_annotation_level_is_a_violation(
    call: Caller, ghdouble: GitHubDouble
) -> None:
    ghdouble.allow_violations()
    repo, token = repo_and_token(ghdouble)
    annotation = {
        "path": "a.js",
        "start_line": 1,
        "end_line": 1,
        "annotation_level": "error",  # GitHub's levels are notice, warning, failure
        "message": "m",
    }
    status, _, data = await call(
        "POST",
        f"/repos/{repo.full_name}/check-runs",
        token=token,
        body={
            "name": "x",
            "head_sha": "a",
            "output": {"title": "t", "summary": "s", "annotations": [annotation]},
        },
    )
    assert status == 422 and "annotation_level" in data["message"]
    (violation,) = ghdouble.violations
    assert violation.route == "/repos/{owner}/{repo}/check-runs"
    assert "body/output/annotations/0/annotation_level" in violation.problem
    assert "'error' is not one of" in violation.problem
    assert repo.check_runs == {}


@pytest.mark.asyncio
async def test_unknown_query_parameters_and_routes_are_violations(
    call: Caller, ghdouble: GitHubDouble
) -> None:
    ghdouble.allow_violations()
    repo, token = repo_and_token(ghdouble)
    await call("GET", f"/repos/{repo.full_name}/actions/runs?per-page=5", token=token)
    await call("GET", f"/repos/{repo.full_name}/actions/runs?per_page=lots", token=token)
    status, _, data = await call("GET", f"/repos/{repo.full_name}/hooks", token=token)
    assert (status, data["message"]) == (404, "Not Found")
    problems = [v.problem for v in ghdouble.violations]
    assert problems[0] == "query parameter 'per-page' is not in the description"
    assert problems[1].startswith("query per_page: 'lots' is not of type 'integer'")
    assert problems[2] == "no operation of the extract matches this request"


def test_a_violation_fails_the_test_at_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import aiohttp
        import pytest

        pytest_plugins = ["tests.ghdouble.fixtures"]

        @pytest.mark.asyncio
        async def test_sends_a_bad_body(ghdouble):
            repo = ghdouble.add_repo("o/r")
            token = ghdouble.token_for(ghdouble.installation_of(repo))
            async with aiohttp.ClientSession() as session:
                await session.post(
                    f"{ghdouble.api_url}/repos/o/r/check-runs",
                    json={"name": 5, "head_sha": "a"},
                    headers={"Authorization": f"token {token}"},
                )
        """
    )
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "-W", "ignore::DeprecationWarning"
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*OpenAPI description does not allow*", "*body/name: 5 is not of type 'string'*"]
    )


def test_extract_is_small_and_names_its_origin() -> None:
    from bot.double.spec import EXTRACT

    origin = source()
    assert origin["package"] == "@octokit/openapi"
    assert origin["file"] == "generated/api.github.com.json"
    assert len(origin["file_sha256"]) == 64
    assert EXTRACT.stat().st_size < 1_000_000
    operations = load_operations()
    assert len(operations) == 31
    check_runs = operations["POST /repos/{owner}/{repo}/check-runs"].request_body
    assert check_runs is not None
    assert "$ref" not in json.dumps(check_runs)
