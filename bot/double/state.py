"""What the double knows: installations, repositories and everything in them.

Plain dataclasses that tests build through `GitHubDouble`'s helpers and read back to assert
what the App did (check runs created, comments posted, releases changed...).
"""

from __future__ import annotations

import hashlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PERMISSIONS: dict[str, str] = {
    "actions": "read",
    "checks": "write",
    "contents": "write",
    "deployments": "write",
    "issues": "write",
    "metadata": "read",
    "pull_requests": "write",
}


def fake_sha(*parts: object) -> str:
    """Return a stable 40-hex "git" sha for anything."""
    return hashlib.sha1(":".join(map(str, parts)).encode(), usedforsecurity=False).hexdigest()


@dataclass
class Installation:
    id: int
    account: str
    permissions: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PERMISSIONS))
    suspended: bool = False


@dataclass
class IssuedToken:
    installation_id: int
    expires_at: float
    permissions: dict[str, str]


@dataclass
class WorkflowRun:
    id: int
    head_sha: str
    head_branch: str = "main"
    name: str = "CI"
    event: str = "push"
    status: str = "completed"
    conclusion: str | None = "success"
    workflow_id: int = 1
    run_number: int = 1
    run_attempt: int = 1
    path: str = ".github/workflows/ci.yml"
    created_at: float = field(default_factory=time.time)
    deployment_reviews: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Artifact:
    id: int
    run_id: int
    name: str
    data: bytes
    expired: bool = False
    created_at: float = field(default_factory=time.time)
    retention_days: int = 90

    @property
    def expires_at(self) -> float:
        return self.created_at + self.retention_days * 86400


@dataclass
class CheckRun:
    id: int
    name: str
    head_sha: str
    app_id: int
    status: str = "queued"
    conclusion: str | None = None
    details_url: str | None = None
    external_id: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    updates: int = 0


@dataclass
class PullRequest:
    number: int
    head_sha: str
    head_ref: str = "feature"
    base_ref: str = "main"
    title: str = "A change"
    state: str = "open"
    user: str = "octocat"
    draft: bool = False
    merged: bool = False


@dataclass
class ReleaseAsset:
    id: int
    release_id: int
    name: str
    data: bytes
    content_type: str = "application/octet-stream"
    label: str | None = None
    state: str = "uploaded"
    """`open` while the upload is under way; GitHub shows `uploaded` once it can be downloaded
    (https://docs.github.com/en/rest/releases/assets#get-a-release-asset, `state`)."""


@dataclass
class Release:
    id: int
    tag_name: str
    name: str | None = None
    body: str | None = None
    draft: bool = False
    prerelease: bool = False
    target_commitish: str = "main"
    author: str = "octocat"
    created_at: float = field(default_factory=time.time)
    immutable: bool = False
    """Published while the repository has immutable releases on: its assets and tag are locked
    and it can no longer go back to draft
    (https://docs.github.com/en/code-security/concepts/supply-chain-security/immutable-releases)."""


@dataclass
class Issue:
    """An issue (not a pull request): what the App opened, or one a test added."""

    number: int
    title: str = "An issue"
    body: str | None = None
    user: str = "octocat"
    labels: list[str] = field(default_factory=list)
    state: str = "open"
    created_at: float = field(default_factory=time.time)


@dataclass
class AnnotatedTag:
    sha: str
    tag: str
    object_sha: str
    object_type: str = "commit"
    message: str = ""


@dataclass
class Comment:
    id: int
    issue_number: int
    body: str
    user: str


@dataclass
class Reaction:
    id: int
    comment_id: int
    content: str
    user: str


@dataclass
class Repository:
    id: int
    owner: str
    name: str
    installation_id: int | None
    default_branch: str = "main"
    private: bool = True
    files: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (ref, path) -> bytes
    refs: dict[str, str] = field(default_factory=dict)  # "heads/main" -> sha
    tags: dict[str, AnnotatedTag] = field(default_factory=dict)  # tag object sha -> tag
    runs: dict[int, WorkflowRun] = field(default_factory=dict)
    artifacts: dict[int, Artifact] = field(default_factory=dict)
    check_runs: dict[int, CheckRun] = field(default_factory=dict)
    pulls: dict[int, PullRequest] = field(default_factory=dict)
    issues: dict[int, Issue] = field(default_factory=dict)
    releases: dict[int, Release] = field(default_factory=dict)
    deleted_releases: list[Release] = field(default_factory=list)
    immutable_releases: bool = False
    """The repository's "immutable releases" setting: a release published from now on is
    immutable."""
    assets: dict[int, ReleaseAsset] = field(default_factory=dict)
    collaborators: dict[str, str] = field(default_factory=dict)  # login -> admin/write/read
    comments: dict[int, Comment] = field(default_factory=dict)
    reactions: list[Reaction] = field(default_factory=list)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def resolve(self, ref: str) -> str:
        """Return the commit sha a ref names (a sha, a branch, a tag, `refs/...`), else `ref`."""
        short = ref.removeprefix("refs/")
        for candidate in (short, f"heads/{short}", f"tags/{short}"):
            if candidate in self.refs:
                sha = self.refs[candidate]
                while sha in self.tags:  # peel annotated tags
                    sha = self.tags[sha].object_sha
                return sha
        return ref


@dataclass
class State:
    """Everything the double serves; ids come from one counter so they never collide."""

    installations: dict[int, Installation] = field(default_factory=dict)
    repos: dict[str, Repository] = field(default_factory=dict)  # "owner/name" lowercased
    tokens: dict[str, IssuedToken] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))

    def next_id(self) -> int:
        return next(self._ids)

    def repo(self, owner: str, name: str) -> Repository | None:
        return self.repos.get(f"{owner}/{name}".lower())
