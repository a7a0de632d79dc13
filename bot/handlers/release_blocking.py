"""What release-guard does with a published release that fails, as `release.on_failure` says.

- `draft` (the default): edit it back to a draft
  (https://docs.github.com/en/rest/releases/releases#update-a-release). An immutable release
  cannot go back (its object says `"immutable": true`; a draft edit gets 422 "state cannot be
  changed when release is immutable"), nor can one GitHub refuses to edit: those are handled
  as `issue`, and the check run never claims a revert that did not happen.
- `issue`: open one issue in the repository about it (`release_issues`), touch nothing.
- `delete` (opt-in): delete the release
  (https://docs.github.com/en/rest/releases/releases#delete-a-release), but only once every
  failing asset is retained: without the kept bytes nobody could tell later what was shipped.
  Otherwise, or when the delete is refused, it falls back to `draft`.
- `none`: report only.

A release that was deleted, or went back to draft, while the job ran is left as it is now.
Each outcome is one audit event (`blocking`, with `action`) and the lead of the check run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from bot.checks import output
from bot.engine.policy import OnFailure
from bot.github import GitHubClient, NotFound, PermissionMissing, ValidationFailed
from bot.handlers.release_info import ReleaseInfo, get_release
from bot.handlers.release_issues import IssueOutcome, IssueText, ensure_release_issue
from bot.jobs import JobContext
from bot.store.base import Job

_IMMUTABLE_WORDS: Final = "immutable"
_WHAT_YOU_CAN_DO: Final = (
    "What you can do: publish a fixed version under a new tag; delete the release (for an "
    "immutable release the tag name can then never be used for a release again); deprecate or "
    "yank the affected version on the registries it was published to."
)


@dataclass(frozen=True, slots=True)
class Blocked:
    """What was done with a release: the check run's lead paragraph and title prefix."""

    lead: str
    title_prefix: str


@dataclass(frozen=True, slots=True)
class Failing:
    """What is known about a failing release when deciding what to do with it."""

    why: str
    """Why it fails, as a clause: "its assets have 1 error-level finding"."""
    findings: str
    """Markdown list of what was found, for the issue."""
    retained_id: str | None = None
    fully_retained: bool = False
    """Every failing asset was kept (what `delete` needs before it deletes anything)."""
    check_run_url: str | None = None


class Blocker:
    """Carries out `release.on_failure` for one job; `creator` is the App's `<slug>[bot]`."""

    def __init__(self, gh: GitHubClient, job: Job, ctx: JobContext, *, creator: str) -> None:
        self._gh = gh
        self._job = job
        self._ctx = ctx
        self._creator = creator

    async def block(self, release: ReleaseInfo, on_failure: OnFailure, failing: Failing) -> Blocked:
        """Do what the config says with a failing release, and say what was done."""
        tag = output.md_code(release.tag_name)
        why = failing.why
        live = await get_release(self._gh, self._job.repository, release.id)
        if live is None:
            await self._audit(f"the release fails ({why}) but was deleted meanwhile", "none")
            return Blocked(
                f"**Release {tag} fails** because {why}; it has been deleted since.",
                f"{release.shown_tag} (deleted): ",
            )
        if live.draft:
            await self._audit(f"the release fails ({why}); it is a draft: left a draft", "none")
            return Blocked(
                f"**Release {tag} fails** because {why}. It is a draft and stays one: fix what "
                "the findings below point at, replace the assets, and publish it once this "
                "check passes.",
                f"{live.shown_tag} (draft): ",
            )
        if on_failure is OnFailure.NONE:
            await self._audit(
                f"the release fails ({why}); left {live.state}: release.on_failure is none", "none"
            )
            return Blocked(
                f"**Release {tag} fails** because {why}, and it is still {live.state}: "
                "`release.on_failure: none` asks release-guard only to report. Anyone can "
                "download these assets.",
                f"{live.shown_tag} ({live.state}): ",
            )
        if on_failure is OnFailure.ISSUE:
            return await self._issue_only(
                live,
                failing,
                f"**Release {tag} fails** because {why}, and it is still {live.state}: "
                "`release.on_failure: issue` asks release-guard to open an issue and change "
                "nothing. Anyone can download these assets.",
            )
        preface = ""
        if on_failure is OnFailure.DELETE:
            if failing.fully_retained:
                deleted = await self._delete(live, failing)
                if isinstance(deleted, Blocked):
                    return deleted
                preface = f"It could not be deleted ({output.md_escape(deleted, limit=300)}); "
            else:
                await self._audit(
                    f"the release fails ({why}); not deleted: its failing assets are not all "
                    "retained",
                    "none",
                )
                preface = (
                    "It was not deleted: `release.on_failure: delete` deletes a release only "
                    "once its failing assets are retained, and they were not; "
                )
        return await self._draft(live, failing, preface)

    # --- the actions --------------------------------------------------------------------------

    async def _draft(self, live: ReleaseInfo, failing: Failing, preface: str) -> Blocked:
        tag = output.md_code(live.tag_name)
        why = failing.why
        if live.immutable:
            return await self._immutable(live, failing, preface, "the release says so")
        try:
            edited = await self._gh.patch(
                f"/repos/{self._job.repository}/releases/{live.id}", data={"draft": True}
            )
        except ValidationFailed as exc:
            if _IMMUTABLE_WORDS in str(exc).lower():
                return await self._immutable(live, failing, preface, "GitHub refused the edit")
            return await self._refused(live, failing, preface, exc)
        except NotFound as exc:
            if await get_release(self._gh, self._job.repository, live.id) is None:
                await self._audit(f"the release fails ({why}); deleted before the edit", "none")
                return Blocked(
                    f"**Release {tag} fails** because {why}; it has been deleted since.",
                    f"{live.shown_tag} (deleted): ",
                )
            return await self._refused(live, failing, preface, exc)
        except PermissionMissing as exc:
            return await self._refused(live, failing, preface, exc)
        if not (isinstance(edited, dict) and edited.get("draft") is True):
            # Never claim a revert that did not happen: GitHub must show it as a draft.
            return await self._refused(
                live, failing, preface, "GitHub answered the edit but still shows it published"
            )
        await self._audit(
            f"the release fails ({why}): moved back to draft (it was {live.state})", "draft"
        )
        return Blocked(
            f"**Release {tag} was moved back to draft** because {why}. It is no longer "
            "public; its assets were kept as they were. "
            + preface_sentence(preface)
            + "Fix what the findings below point at, replace the assets, and publish it again: "
            "release-guard scans it again when it is published.",
            f"{live.shown_tag} moved back to draft: ",
        )

    async def _immutable(
        self, live: ReleaseInfo, failing: Failing, preface: str, how: str
    ) -> Blocked:
        tag = output.md_code(live.tag_name)
        await self._audit(
            f"the release fails ({failing.why}); it is immutable ({how}): it cannot go back "
            "to draft, nothing was changed",
            "immutable",
        )
        issue = await self._open_issue(
            live,
            failing,
            "It is immutable: release-guard could not move it back to draft and changed nothing.",
        )
        return Blocked(
            f"**Release {tag} is public and immutable, and it fails** because {failing.why}. "
            "GitHub does not let an immutable release go back to draft or change its assets, "
            "so release-guard changed nothing: anyone can download these assets. "
            + preface_sentence(preface)
            + _kept_sentence(failing)
            + " "
            + _issue_sentence(issue)
            + "\n\n"
            + _WHAT_YOU_CAN_DO,
            f"{live.shown_tag} is public and immutable: ",
        )

    async def _refused(
        self,
        live: ReleaseInfo,
        failing: Failing,
        preface: str,
        exc: Exception | str,
    ) -> Blocked:
        tag = output.md_code(live.tag_name)
        await self._audit(
            f"the release fails ({failing.why}) but could not be moved back to draft: {exc}",
            "failed",
        )
        issue = await self._open_issue(
            live, failing, "release-guard could not move it back to draft: GitHub refused."
        )
        return Blocked(
            f"**Release {tag} fails** because {failing.why}, and it is still {live.state}: "
            "release-guard could not move it back to draft "
            f"({output.md_escape(str(exc), limit=300)}). "
            + preface_sentence(preface)
            + "Grant the App `contents: write`, or edit the release to a draft yourself. "
            + _kept_sentence(failing)
            + " "
            + _issue_sentence(issue),
            f"{live.shown_tag} ({live.state}): ",
        )

    async def _issue_only(self, live: ReleaseInfo, failing: Failing, lead: str) -> Blocked:
        await self._audit(
            f"the release fails ({failing.why}); left {live.state}: release.on_failure is issue",
            "issue",
        )
        issue = await self._open_issue(
            live, failing, "`release.on_failure: issue`: release-guard changed nothing."
        )
        return Blocked(
            lead
            + " "
            + _kept_sentence(failing)
            + " "
            + _issue_sentence(issue)
            + "\n\n"
            + _WHAT_YOU_CAN_DO,
            f"{live.shown_tag} ({live.state}): ",
        )

    async def _delete(self, live: ReleaseInfo, failing: Failing) -> Blocked | str:
        """Delete the release (its failing assets are retained), or say why GitHub refused."""
        tag = output.md_code(live.tag_name)
        try:
            await self._gh.delete(f"/repos/{self._job.repository}/releases/{live.id}")
        except NotFound:
            await self._audit(f"the release fails ({failing.why}); deleted meanwhile", "none")
            return Blocked(
                f"**Release {tag} fails** because {failing.why}; it has been deleted since.",
                f"{live.shown_tag} (deleted): ",
            )
        except (PermissionMissing, ValidationFailed) as exc:
            await self._audit(
                f"the release fails ({failing.why}) but could not be deleted: {exc}", "failed"
            )
            return str(exc)
        await self._audit(
            f"the release fails ({failing.why}): deleted (it was {live.state}); its failing "
            f"assets are retained as {failing.retained_id}",
            "delete",
        )
        retired = (
            " It was immutable: its tag name can never be used for a release again."
            if live.immutable
            else ""
        )
        return Blocked(
            f"**Release {tag} was deleted** because {failing.why} "
            "(`release.on_failure: delete`). Its assets are no longer served; the git tag "
            f"stays.{retired} "
            + _kept_sentence(failing)
            + " Publish a fixed version under a new tag; deprecate or yank the affected version "
            "on the registries it was published to.",
            f"{live.shown_tag} deleted: ",
        )

    async def _open_issue(self, live: ReleaseInfo, failing: Failing, done: str) -> IssueOutcome:
        outcome = await ensure_release_issue(
            self._gh,
            self._job.repository,
            live.id,
            IssueText(
                tag=live.tag_name,
                why=failing.why,
                state=live.state,
                findings=failing.findings,
                check_run_url=failing.check_run_url,
                retained_id=failing.retained_id,
                what_was_done=done,
            ),
            creator=self._creator,
            since=live.created_at,
        )
        if outcome.ok:
            said = "opened" if outcome.created else "found, opened earlier:"
            await self._ctx.audit(
                "issue", f"issue #{outcome.number} {said} {outcome.url}", issue=outcome.number
            )
        else:
            await self._ctx.audit("issue", f"could not open the issue: {outcome.problem}")
        return outcome

    async def _audit(self, message: str, action: str) -> None:
        await self._ctx.audit("blocking", message, action=action)


def preface_sentence(preface: str) -> str:
    """`preface` (why `delete` did not delete) as the start of a sentence, or nothing."""
    if not preface:
        return ""
    return preface[0].upper() + preface[1:].rstrip("; ") + ". "


def _kept_sentence(failing: Failing) -> str:
    if failing.retained_id:
        return (
            f"The failing bytes are retained as `{failing.retained_id}` "
            f"(`release-guard retained show {failing.retained_id}`)."
        )
    return "The failing bytes were not retained."


def _issue_sentence(issue: IssueOutcome) -> str:
    if issue.ok:
        return f"{output.md_link(f'Issue {issue.number}', issue.url)} in this repository tracks it."
    if issue.permission_missing:
        return (
            "release-guard could not open an issue about it: the App lacks `issues: write` "
            "(accept the App's new permissions in the installation's settings)."
        )
    return (
        "release-guard could not open an issue about it "
        f"({output.md_escape(str(issue.problem), limit=300)})."
    )
