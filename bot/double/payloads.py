"""Shape the double's answers like GitHub's.

Each answer starts from the example GitHub's OpenAPI description gives for the operation
(committed in `openapi/operations.json`), with its API and upload URLs pointed at the double,
and then takes every field the state knows from the state. Fields the state does not model
keep the example's values, as a real answer would have them filled in.
"""

from __future__ import annotations

import base64
import copy
import hashlib
from datetime import UTC, datetime
from typing import Any

from bot.double.spec import load_operations
from bot.double.state import (
    AnnotatedTag,
    Artifact,
    CheckRun,
    Comment,
    Issue,
    PullRequest,
    Reaction,
    Release,
    ReleaseAsset,
    Repository,
    WorkflowRun,
)

_HOSTS = (
    "https://api.github.com",
    "http://api.github.com",
    "https://uploads.github.com",
)
_RAW = "https://raw.githubusercontent.com"


def iso(timestamp: float) -> str:
    """Format a time as GitHub does: `2016-07-11T22:14:10Z`."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rewrite(value: Any, api: str, storage: str) -> Any:
    if isinstance(value, str):
        for host in _HOSTS:
            if value.startswith(host):
                return api + value[len(host) :]
        if value.startswith(_RAW):
            return storage + "/raw" + value[len(_RAW) :]
        return value
    if isinstance(value, dict):
        return {k: _rewrite(v, api, storage) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, api, storage) for v in value]
    return value


class Payloads:
    """Builds answers for one running double (its URLs, its App)."""

    def __init__(self, *, api_url: str, storage_url: str, app_id: int, app_slug: str) -> None:
        self.api = api_url
        self.storage = storage_url
        self.app_id = app_id
        self.app_slug = app_slug

    def example(self, operation: str) -> Any:
        """Return a fresh copy of the description's example for `operation`, URLs rewritten."""
        raw = load_operations()[operation].example
        return _rewrite(copy.deepcopy(raw), self.api, self.storage)

    def repo_url(self, repo: Repository) -> str:
        return f"{self.api}/repos/{repo.full_name}"

    def _repo(self, template: dict[str, Any], repo: Repository) -> dict[str, Any]:
        out = dict(template)
        owner = dict(out.get("owner") or {})
        owner["login"] = repo.owner
        out.update(
            id=repo.id,
            name=repo.name,
            full_name=repo.full_name,
            owner=owner,
            private=repo.private,
            url=self.repo_url(repo),
            html_url=f"https://github.com/{repo.full_name}",
            default_branch=repo.default_branch,
        )
        return out

    def _user(self, template: dict[str, Any] | None, login: str) -> dict[str, Any]:
        out = dict(template or {})
        out.update(login=login, url=f"{self.api}/users/{login}")
        return out

    # --- the App ---------------------------------------------------------------------

    def app(self, permissions: dict[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = self.example("GET /app")
        out.update(
            id=self.app_id,
            slug=self.app_slug,
            name=self.app_slug,
            html_url=f"https://github.com/apps/{self.app_slug}",
            permissions=dict(permissions),
        )
        return out

    def access_token(self, token: str, expires_at: float, permissions: dict[str, str]) -> Any:
        out = self.example("POST /app/installations/{installation_id}/access_tokens")
        out.pop("repositories", None)
        out.update(
            token=token,
            expires_at=iso(expires_at),
            permissions=dict(permissions),
            repository_selection="all",
        )
        return out

    def from_manifest(
        self,
        manifest: dict[str, Any],
        *,
        pem: str,
        webhook_secret: str,
        html_url: str,
        owner: str | None,
    ) -> dict[str, Any]:
        """The App GitHub registered from `manifest`, with its one-time credentials."""
        out: dict[str, Any] = self.example("POST /app-manifests/{code}/conversions")
        out.update(
            id=self.app_id,
            slug=self.app_slug,
            name=manifest.get("name", self.app_slug),
            description=manifest.get("description", ""),
            external_url=manifest.get("url", ""),
            html_url=html_url,
            events=list(manifest.get("default_events", [])),
            permissions=dict(manifest.get("default_permissions", {})),
            pem=pem,
            webhook_secret=webhook_secret,
            client_id="Iv1." + hashlib.sha256(pem.encode()).hexdigest()[:16],
            client_secret=hashlib.sha256(webhook_secret.encode()).hexdigest()[:40],
        )
        if owner is not None:
            out["owner"] = self._user(out.get("owner"), owner)
        return out

    # --- Actions ---------------------------------------------------------------------

    def run(self, repo: Repository, run: WorkflowRun) -> dict[str, Any]:
        out: dict[str, Any] = self.example("GET /repos/{owner}/{repo}/actions/runs/{run_id}")
        url = f"{self.repo_url(repo)}/actions/runs/{run.id}"
        out.update(
            id=run.id,
            name=run.name,
            head_sha=run.head_sha,
            head_branch=run.head_branch,
            event=run.event,
            status=run.status,
            conclusion=run.conclusion,
            workflow_id=run.workflow_id,
            run_number=run.run_number,
            run_attempt=run.run_attempt,
            path=run.path,
            created_at=iso(run.created_at),
            updated_at=iso(run.created_at),
            run_started_at=iso(run.created_at),
            url=url,
            html_url=f"https://github.com/{repo.full_name}/actions/runs/{run.id}",
            artifacts_url=f"{url}/artifacts",
            jobs_url=f"{url}/jobs",
            logs_url=f"{url}/logs",
            repository=self._repo(out["repository"], repo),
            head_repository=self._repo(out["head_repository"], repo),
            pull_requests=[
                self._pr_ref(repo, pr) for pr in repo.pulls.values() if pr.head_sha == run.head_sha
            ],
        )
        out["head_commit"] = {**out["head_commit"], "id": run.head_sha}
        return out

    def artifact(self, repo: Repository, artifact: Artifact) -> dict[str, Any]:
        run = repo.runs[artifact.run_id]
        url = f"{self.repo_url(repo)}/actions/artifacts/{artifact.id}"
        return {
            "id": artifact.id,
            "node_id": base64.b64encode(f"08:Artifact{artifact.id}".encode()).decode(),
            "name": artifact.name,
            "size_in_bytes": len(artifact.data),
            "url": url,
            "archive_download_url": f"{url}/zip",
            "expired": artifact.expired,
            "digest": "sha256:" + hashlib.sha256(artifact.data).hexdigest(),
            "created_at": iso(artifact.created_at),
            "updated_at": iso(artifact.created_at),
            "expires_at": iso(artifact.expires_at),
            "workflow_run": {
                "id": run.id,
                "repository_id": repo.id,
                "head_repository_id": repo.id,
                "head_branch": run.head_branch,
                "head_sha": run.head_sha,
            },
        }

    # --- contents, git ---------------------------------------------------------------

    def file(self, repo: Repository, path: str, ref: str, data: bytes) -> dict[str, Any]:
        out: dict[str, Any] = self.example("GET /repos/{owner}/{repo}/contents/{path}")
        encoded = base64.b64encode(data).decode()
        # GitHub wraps the base64 text in lines of 60 characters, each ending in "\n".
        wrapped = "".join(encoded[i : i + 60] + "\n" for i in range(0, len(encoded), 60))
        sha = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
        url = f"{self.repo_url(repo)}/contents/{path}?ref={ref}"
        out.update(
            type="file",
            encoding="base64",
            content=wrapped,
            size=len(data),
            name=path.rsplit("/", 1)[-1],
            path=path,
            sha=sha,
            url=url,
            git_url=f"{self.repo_url(repo)}/git/blobs/{sha}",
            html_url=f"https://github.com/{repo.full_name}/blob/{ref}/{path}",
            download_url=f"{self.storage}/raw/{repo.full_name}/{ref}/{path}",
            _links={"self": url, "git": f"{self.repo_url(repo)}/git/blobs/{sha}", "html": None},
        )
        out["_links"]["html"] = out["html_url"]
        return out

    def directory_entry(self, repo: Repository, path: str, ref: str, kind: str) -> dict[str, Any]:
        url = f"{self.repo_url(repo)}/contents/{path}?ref={ref}"
        return {
            "type": kind,
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": hashlib.sha1(f"{ref}:{path}".encode(), usedforsecurity=False).hexdigest(),
            "size": 0,
            "url": url,
            "git_url": None,
            "html_url": f"https://github.com/{repo.full_name}/tree/{ref}/{path}",
            "download_url": None,
            "_links": {"self": url, "git": None, "html": None},
        }

    def tree(
        self, repo: Repository, ref: str, entries: dict[str, tuple[str, int]]
    ) -> dict[str, Any]:
        """A root tree: `entries` maps each name to its type (`blob` or `tree`) and size."""
        sha = hashlib.sha1(f"tree:{ref}".encode(), usedforsecurity=False).hexdigest()
        tree = []
        for name, (kind, size) in sorted(entries.items()):
            entry_sha = hashlib.sha1(f"{ref}:{name}".encode(), usedforsecurity=False).hexdigest()
            kind_path = "blobs" if kind == "blob" else "trees"
            entry: dict[str, Any] = {
                "path": name,
                "mode": "100644" if kind == "blob" else "040000",
                "type": kind,
                "sha": entry_sha,
                "url": f"{self.repo_url(repo)}/git/{kind_path}/{entry_sha}",
            }
            if kind == "blob":
                entry["size"] = size
            tree.append(entry)
        return {
            "sha": sha,
            "url": f"{self.repo_url(repo)}/git/trees/{sha}",
            "tree": tree,
            "truncated": False,
        }

    def ref(self, repo: Repository, name: str, sha: str, object_type: str) -> dict[str, Any]:
        kind = "tags" if object_type == "tag" else "commits"
        return {
            "ref": f"refs/{name}",
            "node_id": base64.b64encode(f"03:Ref{repo.id}:{name}".encode()).decode(),
            "url": f"{self.repo_url(repo)}/git/refs/{name}",
            "object": {
                "type": object_type,
                "sha": sha,
                "url": f"{self.repo_url(repo)}/git/{kind}/{sha}",
            },
        }

    def tag(self, repo: Repository, tag: AnnotatedTag) -> dict[str, Any]:
        out: dict[str, Any] = self.example("GET /repos/{owner}/{repo}/git/tags/{tag_sha}")
        kind = "tags" if tag.object_type == "tag" else "commits"
        out.update(
            sha=tag.sha,
            tag=tag.tag,
            message=tag.message,
            url=f"{self.repo_url(repo)}/git/tags/{tag.sha}",
            object={
                "type": tag.object_type,
                "sha": tag.object_sha,
                "url": f"{self.repo_url(repo)}/git/{kind}/{tag.object_sha}",
            },
        )
        return out

    # --- checks ----------------------------------------------------------------------

    def check_run(self, repo: Repository, check: CheckRun) -> dict[str, Any]:
        out: dict[str, Any] = self.example("POST /repos/{owner}/{repo}/check-runs")
        url = f"{self.repo_url(repo)}/check-runs/{check.id}"
        out.update(
            id=check.id,
            node_id=base64.b64encode(f"08:CheckRun{check.id}".encode()).decode(),
            name=check.name,
            head_sha=check.head_sha,
            status=check.status,
            conclusion=check.conclusion,
            started_at=check.started_at,
            completed_at=check.completed_at,
            details_url=check.details_url,
            external_id=check.external_id,
            url=url,
            html_url=f"https://github.com/{repo.full_name}/runs/{check.id}",
            output={
                "title": check.output.get("title"),
                "summary": check.output.get("summary"),
                "text": check.output.get("text"),
                "annotations_count": len(check.annotations),
                "annotations_url": f"{url}/annotations",
            },
            pull_requests=[
                self._pr_ref(repo, pr)
                for pr in repo.pulls.values()
                if pr.head_sha == check.head_sha and pr.state == "open"
            ],
        )
        out["app"] = {**out["app"], "id": check.app_id}
        if check.app_id == self.app_id:
            out["app"].update(slug=self.app_slug, name=self.app_slug)
        return out

    # --- pull requests, issues -------------------------------------------------------

    def _pr_ref(self, repo: Repository, pr: PullRequest) -> dict[str, Any]:
        base = {"id": repo.id, "name": repo.name, "url": self.repo_url(repo)}
        return {
            "id": pr.number * 10,
            "number": pr.number,
            "url": f"{self.repo_url(repo)}/pulls/{pr.number}",
            "head": {"ref": pr.head_ref, "sha": pr.head_sha, "repo": base},
            "base": {"ref": pr.base_ref, "sha": repo.resolve(pr.base_ref), "repo": base},
        }

    def pull(self, repo: Repository, pr: PullRequest) -> dict[str, Any]:
        out: dict[str, Any] = self.example("GET /repos/{owner}/{repo}/pulls/{pull_number}")
        url = f"{self.repo_url(repo)}/pulls/{pr.number}"
        head = dict(out["head"])
        head.update(
            ref=pr.head_ref,
            sha=pr.head_sha,
            label=f"{repo.owner}:{pr.head_ref}",
            repo=self._repo(head["repo"], repo),
        )
        base = dict(out["base"])
        base.update(
            ref=pr.base_ref,
            sha=repo.resolve(pr.base_ref),
            label=f"{repo.owner}:{pr.base_ref}",
            repo=self._repo(base["repo"], repo),
        )
        out.update(
            id=pr.number * 10,
            number=pr.number,
            title=pr.title,
            state=pr.state,
            draft=pr.draft,
            merged=pr.merged,
            url=url,
            html_url=f"https://github.com/{repo.full_name}/pull/{pr.number}",
            issue_url=f"{self.repo_url(repo)}/issues/{pr.number}",
            comments_url=f"{self.repo_url(repo)}/issues/{pr.number}/comments",
            user=self._user(out.get("user"), pr.user),
            head=head,
            base=base,
        )
        return out

    def issue(self, repo: Repository, issue: Issue) -> dict[str, Any]:
        """An issue (never a pull request: the example's `pull_request` key is dropped)."""
        out: dict[str, Any] = self.example("POST /repos/{owner}/{repo}/issues")
        out.pop("pull_request", None)
        template = (out.get("labels") or [{}])[0]
        url = f"{self.repo_url(repo)}/issues/{issue.number}"
        out.update(
            id=issue.number * 1000 + repo.id,
            number=issue.number,
            title=issue.title,
            body=issue.body,
            state=issue.state,
            user=self._user(out.get("user"), issue.user),
            labels=[{**template, "name": name} for name in issue.labels],
            url=url,
            html_url=f"https://github.com/{repo.full_name}/issues/{issue.number}",
            comments_url=f"{url}/comments",
            created_at=iso(issue.created_at),
        )
        return out

    def comment(self, repo: Repository, comment: Comment) -> dict[str, Any]:
        out: dict[str, Any] = self.example(
            "POST /repos/{owner}/{repo}/issues/{issue_number}/comments"
        )
        out.update(
            id=comment.id,
            body=comment.body,
            url=f"{self.repo_url(repo)}/issues/comments/{comment.id}",
            html_url=(
                f"https://github.com/{repo.full_name}/issues/{comment.issue_number}"
                f"#issuecomment-{comment.id}"
            ),
            issue_url=f"{self.repo_url(repo)}/issues/{comment.issue_number}",
            user=self._user(out.get("user"), comment.user),
        )
        return out

    def reaction(self, reaction: Reaction) -> dict[str, Any]:
        out: dict[str, Any] = self.example(
            "POST /repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"
        )
        out.update(
            id=reaction.id,
            content=reaction.content,
            user=self._user(out.get("user"), reaction.user),
        )
        return out

    def permission(self, login: str, permission: str) -> dict[str, Any]:
        out: dict[str, Any] = self.example(
            "GET /repos/{owner}/{repo}/collaborators/{username}/permission"
        )
        out.update(
            permission=permission,
            role_name=permission,
            user=self._user(out.get("user"), login),
        )
        return out

    # --- releases --------------------------------------------------------------------

    def asset(self, repo: Repository, release: Release, asset: ReleaseAsset) -> dict[str, Any]:
        out: dict[str, Any] = self.example("GET /repos/{owner}/{repo}/releases/assets/{asset_id}")
        out.update(
            id=asset.id,
            name=asset.name,
            label=asset.label,
            size=len(asset.data),
            content_type=asset.content_type,
            state=asset.state,
            digest="sha256:" + hashlib.sha256(asset.data).hexdigest(),
            url=f"{self.repo_url(repo)}/releases/assets/{asset.id}",
            browser_download_url=(
                f"https://github.com/{repo.full_name}/releases/download/{release.tag_name}/"
                f"{asset.name}"
            ),
        )
        return out

    def release(self, repo: Repository, release: Release) -> dict[str, Any]:
        out: dict[str, Any] = self.example("GET /repos/{owner}/{repo}/releases/{release_id}")
        url = f"{self.repo_url(repo)}/releases/{release.id}"
        out.update(
            id=release.id,
            tag_name=release.tag_name,
            name=release.name,
            body=release.body,
            draft=release.draft,
            prerelease=release.prerelease,
            immutable=release.immutable,
            created_at=iso(release.created_at),
            target_commitish=release.target_commitish,
            url=url,
            assets_url=f"{url}/assets",
            upload_url=f"{self.api}/repos/{repo.full_name}/releases/{release.id}/assets{{?name,label}}",
            html_url=f"https://github.com/{repo.full_name}/releases/tag/{release.tag_name}",
            tarball_url=f"{self.repo_url(repo)}/tarball/{release.tag_name}",
            zipball_url=f"{self.repo_url(repo)}/zipball/{release.tag_name}",
            author=self._user(out.get("author"), release.author),
            assets=[
                self.asset(repo, release, asset)
                for asset in repo.assets.values()
                if asset.release_id == release.id
            ],
        )
        return out
