"""A release as GitHub shows it now, and the commit it is about.

Shared by the release handler and the deployment gate (which looks for the draft release of
the tag a waiting run was started by).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from bot.github import GitHubClient, NotFound

_SHA: Final = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_MAX_TAG_DEPTH: Final = 4
"""Annotated tags may point at other tags; this many are followed before giving up."""
_TAG_SHOWN: Final = 60
_DRAFTS_LOOKED_AT: Final = 1000
"""Releases of `GET .../releases` (newest first, 100 a page) looked through for a tag's
draft; a draft older than the newest thousand releases is not found."""


@dataclass(frozen=True, slots=True)
class ReleaseInfo:
    """The fields of a release the App uses, as GitHub shows it now."""

    id: int
    tag_name: str
    target_commitish: str | None
    draft: bool
    prerelease: bool
    html_url: str | None
    immutable: bool = False
    """Published with immutable releases on: its assets and tag are locked and it cannot go
    back to draft (https://docs.github.com/en/code-security/concepts/supply-chain-security/
    immutable-releases; the release object's `immutable`)."""
    created_at: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ReleaseInfo:
        created_at = data.get("created_at")
        return cls(
            id=int(data["id"]),
            tag_name=str(data["tag_name"]),
            target_commitish=data.get("target_commitish"),
            draft=bool(data.get("draft")),
            prerelease=bool(data.get("prerelease")),
            html_url=data.get("html_url"),
            immutable=data.get("immutable") is True,
            created_at=created_at if isinstance(created_at, str) else None,
        )

    @property
    def state(self) -> str:
        if self.draft:
            return "draft"
        state = "published prerelease" if self.prerelease else "published"
        return f"{state}, immutable" if self.immutable else state

    @property
    def shown_tag(self) -> str:
        tag = self.tag_name
        return tag if len(tag) <= _TAG_SHOWN else tag[: _TAG_SHOWN - 1] + "…"


async def get_release(gh: GitHubClient, repository: str, release_id: int) -> ReleaseInfo | None:
    """https://docs.github.com/en/rest/releases/releases#get-a-release (None: deleted)."""
    try:
        return ReleaseInfo.from_api(await gh.getitem(f"/repos/{repository}/releases/{release_id}"))
    except NotFound:
        return None


async def resolve_tag(gh: GitHubClient, repository: str, tag: str) -> str | None:
    """Return the commit a tag points to, peeling annotated tags; None when there is no tag.

    https://docs.github.com/en/rest/git/refs#get-a-reference and
    https://docs.github.com/en/rest/git/tags#get-a-tag (an annotated tag is an object of its
    own whose `object` is the commit, or another tag).
    """
    try:
        ref = await gh.getitem(f"/repos/{repository}/git/ref/tags/{quote(tag, safe='/')}")
    except NotFound:
        return None
    target = ref.get("object") or {}
    for _ in range(_MAX_TAG_DEPTH):
        kind, sha = target.get("type"), str(target.get("sha") or "")
        if not _SHA.fullmatch(sha):
            return None
        if kind == "commit":
            return sha
        if kind != "tag":
            return None  # a tag on a tree or a blob: no commit to report on
        tag_object = await gh.getitem(f"/repos/{repository}/git/tags/{sha}")
        target = tag_object.get("object") or {}
    return None


async def resolve_commitish(gh: GitHubClient, repository: str, commitish: str) -> str | None:
    """Return the commit a draft's `target_commitish` names (a SHA or a branch), or None."""
    if _SHA.fullmatch(commitish):
        return commitish
    try:
        ref = await gh.getitem(f"/repos/{repository}/git/ref/heads/{quote(commitish, safe='/')}")
    except NotFound:
        return None
    sha = str((ref.get("object") or {}).get("sha") or "")
    return sha if _SHA.fullmatch(sha) else None


async def release_commit(gh: GitHubClient, repository: str, release: ReleaseInfo) -> str | None:
    """The commit to report on: the tag's, else (a draft's tag may not exist yet) the target's."""
    sha = await resolve_tag(gh, repository, release.tag_name)
    if sha is None and release.target_commitish:
        sha = await resolve_commitish(gh, repository, release.target_commitish)
    return sha


async def draft_of_tag(gh: GitHubClient, repository: str, tag: str) -> ReleaseInfo | None:
    """The draft release of `tag`, if there is one (the newest, if several).

    Drafts are only in the listing (https://docs.github.com/en/rest/releases/releases#list-releases,
    which shows them to an App that may push); `GET .../releases/tags/{tag}` finds published
    releases only.
    """
    seen = 0
    async for data in gh.getiter(
        f"/repos/{repository}/releases{{?per_page}}", url_vars={"per_page": "100"}
    ):
        if isinstance(data, dict) and data.get("draft") is True and data.get("tag_name") == tag:
            return ReleaseInfo.from_api(data)
        seen += 1
        if seen >= _DRAFTS_LOOKED_AT:
            break
    return None
