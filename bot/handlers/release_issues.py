"""One issue per failing release that release-guard cannot take back (immutable, or refused).

The issue is how a maintainer hears of a release that stays public with bad assets: the check
run is on the tag's commit, where nobody looks once the release is out. Exactly one issue per
release, however often the job runs (retries, redeliveries, a worker killed after the issue was
created and before the job was recorded done):

- the body carries a hidden marker naming the release id (`MARKER`);
- before creating, the repository's issues touched since the release was created are listed
  (https://docs.github.com/en/rest/issues/issues#list-repository-issues, `state=all`,
  `since`): the listing reads the issues themselves, without the lag of the search index, and
  `since` keeps it to the few issues updated after the release existed. Only an issue opened by
  the App itself (`<slug>[bot]`) counts, so nobody can silence it by pasting the marker;
- the creation (https://docs.github.com/en/rest/issues/issues#create-an-issue) is sent once
  (`post_once`): after a 5xx it may have taken effect, so the job is retried and lists again
  rather than posting twice. The queue never runs two jobs of one release at once (their
  `Job.lock_key`), so the listing and the creation are not raced by another worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from bot.checks import output
from bot.github import GitHubClient, NotFound, PermissionMissing, ValidationFailed

MARKER: Final = "<!-- release-guard:release-issue release-id={release_id} -->"
_MARKER_RE: Final = re.compile(r"<!-- release-guard:release-issue release-id=([0-9]+) -->")
_TITLE_TAG: Final = 120


@dataclass(frozen=True, slots=True)
class IssueOutcome:
    """What became of the release's issue: found, opened, or why not (`problem`)."""

    number: int | None = None
    url: str | None = None
    created: bool = False
    problem: str | None = None
    permission_missing: bool = False

    @property
    def ok(self) -> bool:
        return self.number is not None


@dataclass(frozen=True, slots=True)
class IssueText:
    """What the issue says; `findings` and the rest are Markdown written by the caller."""

    tag: str
    why: str
    state: str
    findings: str
    check_run_url: str | None
    retained_id: str | None
    what_was_done: str


def issue_title(tag: str) -> str:
    shown = tag if len(tag) <= _TITLE_TAG else tag[: _TITLE_TAG - 1] + "…"
    return f"release-guard: release {shown} is public and fails its scan"


def issue_body(release_id: int, text: IssueText) -> str:
    """The issue's Markdown: the marker, what was found, where it is kept, what to do."""
    tag = output.md_code(text.tag)
    check = (
        f"[the `release-guard` check run]({text.check_run_url})"
        if text.check_run_url and text.check_run_url.startswith("https://")
        else "the `release-guard` check run on the tagged commit"
    )
    kept = (
        f"The failing assets are retained as `{text.retained_id}`: an operator of "
        f"release-guard can read them with `release-guard retained show {text.retained_id}`."
        if text.retained_id
        else "release-guard did not retain the failing assets (retention is off or failed)."
    )
    return "\n".join(
        [
            MARKER.format(release_id=release_id),
            f"Release {tag} is {text.state} and fails release-guard's scan because {text.why}.",
            "",
            text.what_was_done,
            "",
            "### What was found",
            "",
            text.findings,
            "",
            f"Every finding, with its file and line, is in {check}.",
            "",
            kept,
            "",
            "### What you can do",
            "",
            "- Publish a fixed version under a new tag; the fixed release is scanned too.",
            "- Delete the release. Its assets stop being served; for an immutable release the "
            "tag name can then never be used for a release again.",
            "- Deprecate or yank the affected version on the registries it went to "
            "(`npm deprecate`, a PyPI yank, `cargo yank`), as anything published from it is "
            "out already.",
            "",
            "Close this issue once it is dealt with; release-guard opens one issue per release.",
        ]
    )


async def find_release_issue(
    gh: GitHubClient,
    repository: str,
    release_id: int,
    *,
    creator: str,
    since: str | None,
) -> dict[str, Any] | None:
    """The App's issue about `release_id`, if it opened one already."""
    url_vars = {"state": "all", "sort": "created", "direction": "desc", "per_page": "100"}
    template = f"/repos/{repository}/issues{{?state,sort,direction,per_page,since}}"
    if since:
        url_vars["since"] = since
    async for issue in gh.getiter(template, url_vars=url_vars):
        if not isinstance(issue, dict) or "pull_request" in issue:
            continue
        user = issue.get("user") or {}
        if not isinstance(user, dict) or str(user.get("login", "")).lower() != creator.lower():
            continue
        found = _MARKER_RE.search(str(issue.get("body") or ""))
        if found is not None and int(found.group(1)) == release_id:
            return issue
    return None


async def ensure_release_issue(
    gh: GitHubClient,
    repository: str,
    release_id: int,
    text: IssueText,
    *,
    creator: str,
    since: str | None,
) -> IssueOutcome:
    """Find the release's issue or open it; a refusal is an outcome, an outage is raised.

    `GitHubUnavailable`/`RateLimited` propagate: the job is retried, and the retry finds the
    issue if the failed creation took effect after all.
    """
    try:
        existing = await find_release_issue(
            gh, repository, release_id, creator=creator, since=since
        )
        if existing is not None:
            return IssueOutcome(number=int(existing["number"]), url=existing.get("html_url"))
        created = await gh.post_once(
            f"/repos/{repository}/issues",
            data={"title": issue_title(text.tag), "body": issue_body(release_id, text)},
        )
    except PermissionMissing as exc:
        return IssueOutcome(problem=str(exc), permission_missing=True)
    except (NotFound, ValidationFailed) as exc:
        # 404: issues are turned off in the repository (or hidden from the App); 410 is a
        # NotFound too. 422: GitHub refused the content.
        return IssueOutcome(problem=str(exc))
    return IssueOutcome(number=int(created["number"]), url=created.get("html_url"), created=True)
