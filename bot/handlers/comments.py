"""Rescan on request: `/release-guard rescan` on a pull request, and the "Rescan" button.

Runs the `comment_command` jobs. A comment (https://docs.github.com/webhooks/webhook-events-and-payloads#issue_comment)
is a command when its first line starts with the repository's `comments.prefix` (default
`/release-guard`) or with `@<app-slug>`; the check run's "Rescan" button sends
`check_run.requested_action` (https://docs.github.com/webhooks/webhook-events-and-payloads#check_run).
Either way:

- bots, this App included, are ignored;
- the person who asked is authorised through "Get repository permissions for a user"
  (https://docs.github.com/en/rest/collaborators/collaborators#get-repository-permissions-for-a-user):
  `admin`, `maintain` or `write`. The payload's `author_association` is not proof (a
  `COLLABORATOR` may have read access only), so it is recorded, never trusted;
- every command, allowed or refused, is an audit event naming who asked;
- a refused comment gets one polite reply that says who may ask, and no scan;
- an allowed comment gets an `eyes` reaction, the pull request's head commit is checked again
  by the pull-request flow (`PullRequestChecks`), and a reply gives the result with a link.

Several commands for one commit while its rescan runs start one scan (single-flight): the
others join it, and a command recorded before a rescan started is answered by that rescan.
Across processes the queue runs one command per pull request at a time (`Job.lock_key`), and
finished rescans are shared through the App's database (`RescanLedger`), so a burst spread
over several workers still scans once. The store's dedupe folds repeated presses of the
button by one person.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from bot.checks import output
from bot.commit_locks import CommitLocks, LocalCommitLocks, commit_key
from bot.engine.policy import DEFAULT_COMMAND_PREFIX
from bot.events import RESCAN_ACTION, JobKind, is_bot
from bot.github import GitHubApp, GitHubClient, GitHubError, NotFound
from bot.handlers.check_runs import get_check_run, offer_rescan
from bot.handlers.pull_requests import PullRequestChecks
from bot.handlers.repo_config import load_repo_config
from bot.handlers.reporting import TRANSIENT, retry_later
from bot.jobs import JobContext, RetryLater
from bot.store.base import Job, StoreError

log = logging.getLogger(__name__)

ALLOWED_ROLES: Final = frozenset({"admin", "maintain", "write"})
"""Who may ask for a rescan: people who could push the fix themselves."""
ACK_REACTION: Final = "eyes"
RECENT_SECONDS: Final = 600.0
"""How long a finished rescan answers commands recorded before it started."""
REFUSAL_QUIET_SECONDS: Final = 3600.0
"""After a refusal, the same person on the same pull request is not answered again this long."""
_REMEMBERED: Final = 512
_LOGIN: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})")

Clock = Callable[[], float]


# --- asking GitHub ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Access:
    """A person's access to the repository, as GitHub reports it."""

    login: str
    permission: str
    """`admin`, `write`, `read` or `none` (maintain shows as `write`, triage as `read`)."""
    role: str | None
    """The finer role name: `admin`, `maintain`, `write`, `triage`, `read` or a custom one."""

    @property
    def allowed(self) -> bool:
        return self.permission in ALLOWED_ROLES or self.role in ALLOWED_ROLES

    @property
    def shown(self) -> str:
        return self.role or self.permission


async def repository_access(gh: GitHubClient, repository: str, login: str) -> Access:
    """https://docs.github.com/en/rest/collaborators/collaborators#get-repository-permissions-for-a-user

    A 404 (not a collaborator, or no such user) is no access.
    """
    try:
        data = await gh.getitem(
            f"/repos/{repository}/collaborators/{{username}}/permission",
            url_vars={"username": login},
        )
    except NotFound:
        return Access(login, "none", None)
    role = data.get("role_name")
    return Access(
        login, str(data.get("permission") or "none"), role if isinstance(role, str) else None
    )


@dataclass(frozen=True, slots=True)
class PullInfo:
    number: int
    head_sha: str
    state: str


async def get_pull(gh: GitHubClient, repository: str, number: int) -> PullInfo:
    """https://docs.github.com/en/rest/pulls/pulls#get-a-pull-request"""
    data = await gh.getitem(f"/repos/{repository}/pulls/{number}")
    return PullInfo(number, str(data["head"]["sha"]), str(data.get("state") or "open"))


async def react(gh: GitHubClient, repository: str, comment_id: int, content: str) -> None:
    """https://docs.github.com/en/rest/reactions/reactions#create-reaction-for-an-issue-comment"""
    await gh.post(
        f"/repos/{repository}/issues/comments/{comment_id}/reactions", data={"content": content}
    )


async def reply(gh: GitHubClient, repository: str, number: int, body: str) -> None:
    """https://docs.github.com/en/rest/issues/comments#create-an-issue-comment"""
    await gh.post(f"/repos/{repository}/issues/{number}/comments", data={"body": body})


# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    """A comment's first line, once it is known to be addressed to the App."""

    addressed: str
    """How it was addressed: the prefix or `@<slug>`, as typed."""
    verb: str
    """`rescan`, or whatever else followed (empty when nothing did)."""


def parse_command(line: str, *, prefix: str, slug: str) -> Command | None:
    """Return the command in `line`, or None when it is not addressed to the App.

    Both forms are compared case-blind: `/release-guard rescan`, `@release-guard rescan`.
    """
    words = line.split()
    if not words:
        return None
    head = words[0]
    if head.lower() not in (prefix.lower(), f"@{slug}".lower()):
        return None
    return Command(head, words[1].lower() if len(words) > 1 else "")


def _mention(login: str) -> str:
    """`@login` for a plain GitHub login, else the login as code (never a stray mention)."""
    return f"@{login}" if _LOGIN.fullmatch(login) else output.md_code(login)


# --- one rescan per commit at a time --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RescanResult:
    """What a rescan concluded, for every command it answers."""

    head_sha: str
    summary: str
    check_run_id: int | None
    status: str | None
    conclusion: str | None
    title: str | None
    html_url: str | None
    started_at: float
    job_id: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RescanResult | None:
        """The result as `to_json` wrote it; None for anything else (never trusted blindly)."""
        try:
            result = cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})
        except (KeyError, TypeError):
            return None
        numbers_ok = isinstance(result.started_at, int | float) and isinstance(result.job_id, int)
        texts_ok = isinstance(result.head_sha, str) and isinstance(result.summary, str)
        return result if numbers_ok and texts_ok else None


class RescanLedger(Protocol):
    """Finished rescans, shared by every worker of the App (its database implements it)."""

    async def recent_rescan(self, key: str) -> dict[str, Any] | None:
        """The last rescan recorded for `key`, as `RescanResult.to_json` gave it."""

    async def record_rescan(self, key: str, result: Mapping[str, Any]) -> None:
        """Record a finished rescan for `key` (replacing the one before)."""


class SingleFlight:
    """Run one rescan per key at a time; later callers join it or reuse a recent result.

    A caller joins the rescan that is running for its key. Once it has finished, its result
    still answers callers whose command was recorded (`asked_at`) before it started, for
    `RECENT_SECONDS`: they asked for exactly what it did. With a `ledger`, results are also
    shared with (and taken from) the other processes.
    """

    def __init__(
        self,
        clock: Clock = time.time,
        keep: float = RECENT_SECONDS,
        *,
        ledger: RescanLedger | None = None,
    ) -> None:
        self._clock = clock
        self._keep = keep
        self._ledger = ledger
        self._running: dict[tuple[object, ...], asyncio.Future[RescanResult]] = {}
        self._done: OrderedDict[tuple[object, ...], RescanResult] = OrderedDict()

    def _answers(self, recent: RescanResult | None, asked_at: float) -> bool:
        return (
            recent is not None
            and recent.started_at >= asked_at
            and self._clock() - recent.started_at <= self._keep
        )

    async def _shared(self, key: tuple[object, ...]) -> RescanResult | None:
        if self._ledger is None:
            return None
        try:
            data = await self._ledger.recent_rescan(_ledger_key(key))
        except StoreError:
            log.warning("cannot read the shared rescans; rescanning", exc_info=True)
            return None
        return None if data is None else RescanResult.from_json(data)

    async def _share(self, key: tuple[object, ...], result: RescanResult) -> None:
        if self._ledger is None:
            return
        try:
            await self._ledger.record_rescan(_ledger_key(key), result.to_json())
        except StoreError:
            log.warning("cannot share the rescan's result with other workers", exc_info=True)

    def now(self) -> float:
        return self._clock()

    async def run(
        self,
        key: tuple[object, ...],
        asked_at: float,
        start: Callable[[float], Awaitable[RescanResult]],
    ) -> tuple[RescanResult, bool]:
        """Return the result for `key` and whether this caller ran the rescan itself."""
        running = self._running.get(key)
        if running is not None:
            return await asyncio.shield(running), False
        recent = self._done.get(key)
        if recent is not None and self._answers(recent, asked_at):
            return recent, False
        from_ledger = await self._shared(key)
        if from_ledger is not None and self._answers(from_ledger, asked_at):
            return from_ledger, False
        running = self._running.get(key)  # one may have started while the ledger answered
        if running is not None:
            return await asyncio.shield(running), False
        future: asyncio.Future[RescanResult] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        started = self._clock()
        try:
            result = await start(started)
        except BaseException as exc:
            shared = (
                RetryLater("the rescan this command joined was interrupted", delay=0)
                if isinstance(exc, asyncio.CancelledError)
                else exc
            )
            future.set_exception(shared)
            future.exception()  # retrieved here: nobody may be waiting
            raise
        else:
            future.set_result(result)
            await self._share(key, result)
            self._done[key] = result
            self._done.move_to_end(key)
            while len(self._done) > _REMEMBERED:
                self._done.popitem(last=False)
            return result, True
        finally:
            del self._running[key]


def _ledger_key(key: tuple[object, ...]) -> str:
    return ":".join(str(part) for part in key)


# --- the handler ------------------------------------------------------------------------------


class RescanCommands:
    """The `JobHandler` for `comment_command` jobs (comments and the "Rescan" button)."""

    def __init__(
        self,
        app: GitHubApp,
        checks: PullRequestChecks,
        *,
        clock: Clock = time.time,
        ledger: RescanLedger | None = None,
        locks: CommitLocks | None = None,
    ) -> None:
        self._app = app
        self._checks = checks
        self._clock = clock
        self._locks: CommitLocks = locks or LocalCommitLocks()
        self._flights = SingleFlight(clock, ledger=ledger)
        self._refused: OrderedDict[tuple[str, int, str], float] = OrderedDict()

    # --- JobHandler ---------------------------------------------------------------------------

    async def run(self, job: Job, ctx: JobContext) -> str | None:
        try:
            gh = await self._app.installation(job.installation_id)
            if job.details.get("source") == "check_run":
                return await self._button(gh, job, ctx)
            return await self._comment(gh, job, ctx)
        except TRANSIENT as exc:
            raise retry_later(exc) from exc

    async def give_up(self, job: Job, ctx: JobContext, reason: str) -> None:
        """Complete the rescan's check run (if it was opened) and say so on the pull request."""
        if ctx.check_run_id is None:
            await ctx.audit("reporting", f"no rescan was started: {reason}")
            return
        try:
            gh = await self._app.installation(job.installation_id)
            number = job.details.get("issue_number")
            sha = job.head_sha
            if sha is None and isinstance(number, int):
                sha = (await get_pull(gh, job.repository, number)).head_sha
            if sha is None:
                return
            check_job = dataclasses.replace(job, kind=JobKind.CHECK, head_sha=sha)
            await self._checks.give_up(check_job, ctx, reason)
            if job.details.get("source") == "comment" and isinstance(number, int):
                who = _mention(str(job.details.get("author")))
                await reply(
                    gh,
                    job.repository,
                    number,
                    f"{who} the rescan of {output.md_code(sha[:12])} could not finish: "
                    f"{output.md_escape(reason, limit=500)}. The release-guard check run says "
                    "so too; ask again once GitHub answers.",
                )
        except GitHubError as exc:
            await ctx.audit("reporting", f"could not report the failure to GitHub: {exc}")

    # --- a comment ----------------------------------------------------------------------------

    async def _comment(self, gh: GitHubClient, job: Job, ctx: JobContext) -> str:
        details = job.details
        author = str(details.get("author") or "")
        number = _int(details, "issue_number")
        comment_id = _int(details, "comment_id")
        line = str(details.get("command") or "")
        slug = await self._app.slug()
        if _ignored_author(author, details.get("author_type"), slug):
            await ctx.audit("command", f"ignored: {author} is a bot", who=author)
            return "ignored: a bot's comment"

        pull: PullInfo | None = None
        prefix = DEFAULT_COMMAND_PREFIX
        if line.startswith("/"):
            # Only a slash command needs the repository's prefix, read at the head commit.
            pull = await get_pull(gh, job.repository, number)
            config = await load_repo_config(gh, job.repository, pull.head_sha)
            if config.error is None:
                prefix = config.policy.comments.prefix
        command = parse_command(line, prefix=prefix, slug=slug)
        if command is None:
            await ctx.audit("command", f"ignored: {line[:80]!r} is not addressed to {slug}")
            return "ignored: not a release-guard command"

        access = await repository_access(gh, job.repository, author)
        await self._audit_command(ctx, job, access, line, f"pull request #{number}")
        if not access.allowed:
            return await self._refuse(gh, job, ctx, number, access, prefix, slug)
        if command.verb != RESCAN_ACTION:
            await reply(gh, job.repository, number, _usage(author, command, prefix, slug))
            return f"answered: {command.verb or 'no'} command is not known"

        await react(gh, job.repository, comment_id, ACK_REACTION)
        pull = pull or await get_pull(gh, job.repository, number)
        result, led = await self._rescan(gh, job, ctx, pull.head_sha)
        if not led:
            await ctx.audit(
                "command",
                f"answered by the rescan of {result.head_sha} that job {result.job_id} ran",
                joined_job=result.job_id,
            )
            return f"joined the rescan of job {result.job_id}: {result.summary}"
        await reply(gh, job.repository, number, _result_text(author, result))
        await ctx.audit("reporting", f"answered {author} on pull request #{number}")
        return f"rescanned {result.head_sha[:12]}: {result.summary}"

    # --- the button ---------------------------------------------------------------------------

    async def _button(self, gh: GitHubClient, job: Job, ctx: JobContext) -> str:
        details = job.details
        author = str(details.get("author") or "")
        sha = job.head_sha
        if sha is None:
            raise ValueError(f"job {job.id} names no commit")
        slug = await self._app.slug()
        if _ignored_author(author, details.get("author_type"), slug):
            await ctx.audit("command", f"ignored: {author} is a bot", who=author)
            return "ignored: a bot pressed Rescan"
        access = await repository_access(gh, job.repository, author)
        await self._audit_command(
            ctx,
            job,
            access,
            "Rescan (check run button)",
            f"check run {details.get('check_run_id')}",
        )
        if not access.allowed:
            # A button press has no conversation to answer in; the audit trail keeps it.
            return f"refused: {author} has {access.shown} access"
        result, led = await self._rescan(gh, job, ctx, sha)
        if not led:
            return f"joined the rescan of job {result.job_id}: {result.summary}"
        return f"rescanned {sha[:12]}: {result.summary}"

    # --- shared -------------------------------------------------------------------------------

    async def _audit_command(
        self, ctx: JobContext, job: Job, access: Access, asked: str, where: str
    ) -> None:
        verdict = "allowed" if access.allowed else "refused"
        await ctx.audit(
            "command",
            f"{access.login} asked {asked[:80]!r} on {where}: {verdict} ({access.shown} access)",
            who=access.login,
            permission=access.permission,
            role=access.role,
            author_association=job.details.get("author_association"),
            allowed=access.allowed,
            command=asked[:200],
            source=job.details.get("source"),
        )

    async def _refuse(
        self,
        gh: GitHubClient,
        job: Job,
        ctx: JobContext,
        number: int,
        access: Access,
        prefix: str,
        slug: str,
    ) -> str:
        key = (job.repository.lower(), number, access.login.lower())
        now = self._clock()
        last = self._refused.get(key)
        if last is not None and now - last < REFUSAL_QUIET_SECONDS:
            await ctx.audit("command", f"{access.login} was already answered: no second reply")
            return f"refused: {access.login} has {access.shown} access (already answered)"
        self._refused[key] = now
        self._refused.move_to_end(key)
        while len(self._refused) > _REMEMBERED:
            self._refused.popitem(last=False)
        await reply(
            gh,
            job.repository,
            number,
            f"Thanks for asking, {_mention(access.login)}. release-guard runs rescans only for "
            "people with write, maintain or admin access to this repository "
            f"(yours is {output.md_code(access.shown)}), so nothing was scanned. A maintainer "
            f"can comment `{prefix} rescan` or `@{slug} rescan`, or press **Rescan** on the "
            "release-guard check run.",
        )
        return f"refused: {access.login} has {access.shown} access"

    async def _rescan(
        self, gh: GitHubClient, job: Job, ctx: JobContext, sha: str
    ) -> tuple[RescanResult, bool]:
        key = (job.installation_id, job.repository.lower(), sha)

        async def start(started: float) -> RescanResult:
            await ctx.audit("queued", f"rescanning {sha} with the pull-request check")
            check_job = dataclasses.replace(job, kind=JobKind.CHECK, head_sha=sha)
            key = commit_key(job.repository, sha)
            if key == job.lock_key:  # the worker holds this commit's lock for the job already
                summary = await self._checks.rescan(check_job, ctx) or "done"
            else:
                async with self._locks.hold(key):
                    summary = await self._checks.rescan(check_job, ctx) or "done"
            check_run_id = ctx.check_run_id
            shown: dict[str, Any] = {}
            if check_run_id is not None:
                await offer_rescan(gh, job.repository, check_run_id)
                shown = await get_check_run(gh, job.repository, sha, check_run_id) or {}
            title = (shown.get("output") or {}).get("title")
            return RescanResult(
                head_sha=sha,
                summary=summary,
                check_run_id=check_run_id,
                status=shown.get("status"),
                conclusion=shown.get("conclusion"),
                title=title if isinstance(title, str) else None,
                html_url=shown.get("html_url"),
                started_at=started,
                job_id=job.id,
            )

        return await self._flights.run(key, job.created_at, start)


def _int(details: dict[str, Any], key: str) -> int:
    value = details.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"the job has no {key}")
    return value


def _ignored_author(login: str, user_type: object, slug: str) -> bool:
    """Bots, this App's own `<slug>[bot]` included, never command the App."""
    kind = user_type if isinstance(user_type, str) else None
    return not login or is_bot(login, kind) or login.lower() == f"{slug}[bot]".lower()


_ICONS: Final = {"success": "✅", "failure": "❌", "neutral": "⚪"}


def _result_text(author: str, result: RescanResult) -> str:
    """The reply to an allowed rescan: the conclusion and a link to the check run."""
    commit = output.md_code(result.head_sha[:12])
    title = output.md_escape(result.title or result.summary, limit=200)
    link = output.md_link("the release-guard check run", result.html_url)
    if result.status == "completed" and result.conclusion:
        icon = _ICONS.get(result.conclusion, "")
        verdict = f"{icon} **{result.conclusion}**".strip()
        return f"{_mention(author)} rescanned {commit}: {verdict}: {title}. Details in {link}."
    return (
        f"{_mention(author)} the builds of {commit} have not finished yet ({title}); "
        f"{link} completes when they do."
    )


def _usage(author: str, command: Command, prefix: str, slug: str) -> str:
    asked = output.md_code(f"{command.addressed} {command.verb}".strip())
    return (
        f"{_mention(author)} release-guard does not know {asked}. It understands "
        f"`{prefix} rescan` (or `@{slug} rescan`): check this pull request's head commit "
        "again."
    )
