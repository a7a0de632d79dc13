"""Parse the webhook events the App subscribes to, and decide which job each one makes.

Each model reads only the fields release-guard uses (kodiak's approach): a payload that lacks
one of them, or has it with the wrong type, is rejected with its JSON path, and everything
else in the payload is left alone, so GitHub can add fields without breaking anything.
Payload reference: https://docs.github.com/webhooks/webhook-events-and-payloads
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol, TypeAlias

from bot.engine.policy import DEFAULT_COMMAND_PREFIX
from bot.errors import ReleaseGuardError

JSONValue: TypeAlias = "str | int | float | bool | list[JSONValue] | dict[str, JSONValue] | None"

COMMAND_PREFIX: Final = DEFAULT_COMMAND_PREFIX
"""The default command prefix; a repository can choose another (`comments.prefix`)."""
RESCAN_ACTION: Final = "rescan"
"""The identifier of the check run's "Rescan" button (its `requested_action`)."""
MAX_COMMENT_CHARS: Final = 2000
MAX_COMMAND_CHARS: Final = 200
MAX_ID: Final = 2**63 - 1
"""The largest id or number a payload may carry: the stores keep them in signed 64-bit
columns (SQLite INTEGER, PostgreSQL bigint). GitHub's ids and numbers are positive."""
_SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # SHA-1, or SHA-256 repositories
_FULL_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")


class MalformedPayload(ReleaseGuardError):
    """A delivery's payload lacks a field the App needs, or has it with the wrong type."""


class JobKind(StrEnum):
    """What a job does; the worker's handler dispatches on it."""

    CHECK = "check"  # scan what a commit builds and report a check run on it
    WORKFLOW_RUN = "workflow_run"  # scan one workflow run's artifacts
    RELEASE = "release"  # scan a release's assets
    DEPLOYMENT_GATE = "deployment_gate"  # approve or reject a deployment protection rule
    COMMENT_COMMAND = "comment_command"  # `/release-guard rescan`, or the "Rescan" button


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A job to queue: what to do, where, and the few payload fields it needs.

    Two specs with the same `dedupe_key` describe the same work: while one such job waits or
    runs, the store folds a new one into it (a push sends both `pull_request.synchronize` and
    `check_suite.requested` for one commit).
    """

    kind: JobKind
    installation_id: int
    repository: str  # owner/name
    head_sha: str | None
    details: dict[str, JSONValue]
    dedupe_key: str


@dataclass(frozen=True, slots=True)
class Routed:
    """What one delivery asks for: jobs to queue, or the reason it is ignored."""

    event: str
    action: str | None
    jobs: tuple[JobSpec, ...] = ()
    ignored: str | None = None


# -- reading fields ---------------------------------------------------------------------------


def _get(obj: Mapping[str, Any], path: str, key: str) -> Any:
    if key not in obj:
        raise MalformedPayload(f"{path}{key}: missing")
    return obj[key]


def _obj(obj: Mapping[str, Any], key: str, path: str = "") -> Mapping[str, Any]:
    value = _get(obj, path, key)
    if not isinstance(value, dict):
        raise MalformedPayload(f"{path}{key}: expected an object")
    return value


def _int(obj: Mapping[str, Any], key: str, path: str = "") -> int:
    """Read an id or a number: a positive integer that fits the stores' 64-bit columns."""
    return _positive(_get(obj, path, key), f"{path}{key}")


def _positive(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedPayload(f"{where}: expected an integer")
    if not 1 <= value <= MAX_ID:
        raise MalformedPayload(f"{where}: expected an integer from 1 to 2^63-1")
    return value


def _text(value: str, where: str) -> str:
    # PostgreSQL's text and jsonb cannot hold U+0000
    # (https://www.postgresql.org/docs/current/datatype-json.html); GitHub never sends it.
    if "\x00" in value:
        raise MalformedPayload(f"{where}: contains a NUL character")
    return value


def _str(obj: Mapping[str, Any], key: str, path: str = "") -> str:
    value = _get(obj, path, key)
    if not isinstance(value, str):
        raise MalformedPayload(f"{path}{key}: expected a string")
    return _text(value, f"{path}{key}")


def _opt_str(obj: Mapping[str, Any], key: str, path: str = "") -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise MalformedPayload(f"{path}{key}: expected a string or null")
    return None if value is None else _text(value, f"{path}{key}")


def _bool(obj: Mapping[str, Any], key: str, path: str = "") -> bool:
    value = _get(obj, path, key)
    if not isinstance(value, bool):
        raise MalformedPayload(f"{path}{key}: expected true or false")
    return value


def _sha(obj: Mapping[str, Any], key: str, path: str = "") -> str:
    value = _str(obj, key, path)
    if not _SHA.fullmatch(value):
        raise MalformedPayload(f"{path}{key}: expected a commit SHA")
    return value


def is_bot(login: str | None, user_type: str | None) -> bool:
    """Tell whether an account is a bot: type `Bot`, or a `…[bot]` login (Apps, this one too)."""
    return user_type == "Bot" or (login or "").lower().endswith("[bot]")


def _sender(payload: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Return the `sender`'s login and type (None for what is missing or not a string).

    Lenient on purpose: only the "Rescan" button needs a sender, and one it cannot read is
    ignored there rather than failing other check_run deliveries.
    """
    sender = payload.get("sender")
    if not isinstance(sender, dict):
        return None, None
    login, kind = sender.get("login"), sender.get("type")
    return (
        login if isinstance(login, str) else None,
        kind if isinstance(kind, str) else None,
    )


def _pull_numbers(obj: Mapping[str, Any], path: str) -> list[JSONValue]:
    """Read `pull_requests[].number` (empty for forks: GitHub omits them there)."""
    value = obj.get("pull_requests") or []
    if not isinstance(value, list):
        raise MalformedPayload(f"{path}pull_requests: expected an array")
    numbers: list[JSONValue] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise MalformedPayload(f"{path}pull_requests[{index}]: expected an object")
        numbers.append(_int(item, "number", f"{path}pull_requests[{index}]."))
    return numbers


# -- the parts every routed event shares -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """The installation that received the event and the repository it is about."""

    installation_id: int
    repository: str

    @classmethod
    def parse(cls, payload: Mapping[str, Any]) -> Target:
        installation = _obj(payload, "installation")
        repository = _str(_obj(payload, "repository"), "full_name", "repository.")
        if not _FULL_NAME.fullmatch(repository):
            raise MalformedPayload("repository.full_name: expected owner/name")
        return cls(_int(installation, "id", "installation."), repository)

    def key(self, kind: str, *parts: object) -> str:
        """Return a dedupe key; GitHub compares owner and repository names case-blind."""
        return ":".join([kind, self.repository.lower(), *map(str, parts)])

    def job(
        self, kind: JobKind, head_sha: str | None, dedupe: tuple[object, ...], **details: JSONValue
    ) -> JobSpec:
        return JobSpec(
            kind=kind,
            installation_id=self.installation_id,
            repository=self.repository,
            head_sha=head_sha,
            details=details,
            dedupe_key=self.key(kind.value, *dedupe),
        )


# -- one model per event -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PullRequestEvent:
    action: str
    target: Target
    number: int
    head_sha: str
    head_ref: str
    head_repository: str | None  # None when the fork was deleted

    @classmethod
    def parse(cls, payload: Mapping[str, Any], action: str) -> PullRequestEvent:
        pull = _obj(payload, "pull_request")
        head = _obj(pull, "head", "pull_request.")
        head_repo = head.get("repo")
        return cls(
            action=action,
            target=Target.parse(payload),
            number=_int(pull, "number", "pull_request."),
            head_sha=_sha(head, "sha", "pull_request.head."),
            head_ref=_str(head, "ref", "pull_request.head."),
            head_repository=(
                _str(head_repo, "full_name", "pull_request.head.repo.")
                if isinstance(head_repo, dict)
                else None
            ),
        )

    def jobs(self) -> tuple[JobSpec, ...]:
        return (
            self.target.job(
                JobKind.CHECK,
                self.head_sha,
                (self.head_sha,),
                event="pull_request",
                action=self.action,
                pull_number=self.number,
                head_ref=self.head_ref,
                head_repository=self.head_repository,
            ),
        )


@dataclass(frozen=True, slots=True)
class CheckSuiteEvent:
    action: str
    target: Target
    check_suite_id: int
    head_sha: str
    head_branch: str | None
    pull_numbers: list[JSONValue] = field(default_factory=list)

    @classmethod
    def parse(cls, payload: Mapping[str, Any], action: str) -> CheckSuiteEvent:
        suite = _obj(payload, "check_suite")
        return cls(
            action=action,
            target=Target.parse(payload),
            check_suite_id=_int(suite, "id", "check_suite."),
            head_sha=_sha(suite, "head_sha", "check_suite."),
            head_branch=_opt_str(suite, "head_branch", "check_suite."),
            pull_numbers=_pull_numbers(suite, "check_suite."),
        )

    def jobs(self) -> tuple[JobSpec, ...]:
        return (
            self.target.job(
                JobKind.CHECK,
                self.head_sha,
                (self.head_sha,),
                event="check_suite",
                action=self.action,
                check_suite_id=self.check_suite_id,
                head_branch=self.head_branch,
                pull_numbers=self.pull_numbers,
            ),
        )


@dataclass(frozen=True, slots=True)
class CheckRunEvent:
    action: str
    target: Target
    check_run_id: int
    name: str
    head_sha: str
    requested_action: str | None
    pull_numbers: list[JSONValue] = field(default_factory=list)
    sender: str | None = None
    sender_type: str | None = None

    @classmethod
    def parse(cls, payload: Mapping[str, Any], action: str) -> CheckRunEvent:
        run = _obj(payload, "check_run")
        requested = payload.get("requested_action")
        sender, sender_type = _sender(payload)
        return cls(
            action=action,
            target=Target.parse(payload),
            check_run_id=_int(run, "id", "check_run."),
            name=_str(run, "name", "check_run."),
            head_sha=_sha(run, "head_sha", "check_run."),
            requested_action=(
                _str(requested, "identifier", "requested_action.")
                if isinstance(requested, dict)
                else None
            ),
            pull_numbers=_pull_numbers(run, "check_run."),
            sender=sender,
            sender_type=sender_type,
        )

    def ignored(self) -> str | None:
        """Why a `requested_action` is not acted on (None: it is a person's "Rescan")."""
        if self.action != "requested_action":
            return None
        if self.requested_action != RESCAN_ACTION:
            return f"check_run.requested_action {self.requested_action!r} is not release-guard's"
        if self.sender is None or is_bot(self.sender, self.sender_type):
            return "the Rescan button was not pressed by a person"
        return None

    def jobs(self) -> tuple[JobSpec, ...]:
        if self.action == "requested_action":
            # The "Rescan" button: authorised like a comment command, by who pressed it
            # (https://docs.github.com/webhooks/webhook-events-and-payloads#check_run).
            # Presses by one person on one commit while a rescan waits fold into it.
            sender = self.sender or ""
            return (
                self.target.job(
                    JobKind.COMMENT_COMMAND,
                    self.head_sha,
                    (RESCAN_ACTION, self.head_sha, sender.lower()),
                    source="check_run",
                    command=RESCAN_ACTION,
                    check_run_id=self.check_run_id,
                    check_run_name=self.name,
                    author=sender,
                    author_type=self.sender_type,
                    pull_numbers=self.pull_numbers,
                ),
            )
        return (
            self.target.job(
                JobKind.CHECK,
                self.head_sha,
                (self.head_sha,),
                event="check_run",
                action=self.action,
                check_run_id=self.check_run_id,
                check_run_name=self.name,
                pull_numbers=self.pull_numbers,
            ),
        )


@dataclass(frozen=True, slots=True)
class WorkflowRunEvent:
    action: str
    target: Target
    run_id: int
    run_attempt: int
    workflow_name: str | None
    head_sha: str
    head_branch: str | None
    trigger: str
    conclusion: str | None
    pull_numbers: list[JSONValue] = field(default_factory=list)

    @classmethod
    def parse(cls, payload: Mapping[str, Any], action: str) -> WorkflowRunEvent:
        run = _obj(payload, "workflow_run")
        attempt = _positive(run.get("run_attempt", 1), "workflow_run.run_attempt")
        return cls(
            action=action,
            target=Target.parse(payload),
            run_id=_int(run, "id", "workflow_run."),
            run_attempt=attempt,
            workflow_name=_opt_str(run, "name", "workflow_run."),
            head_sha=_sha(run, "head_sha", "workflow_run."),
            head_branch=_opt_str(run, "head_branch", "workflow_run."),
            trigger=_str(run, "event", "workflow_run."),
            conclusion=_opt_str(run, "conclusion", "workflow_run."),
            pull_numbers=_pull_numbers(run, "workflow_run."),
        )

    def jobs(self) -> tuple[JobSpec, ...]:
        return (
            self.target.job(
                JobKind.WORKFLOW_RUN,
                self.head_sha,
                (self.run_id, self.run_attempt),
                workflow_run_id=self.run_id,
                run_attempt=self.run_attempt,
                workflow_name=self.workflow_name,
                head_branch=self.head_branch,
                trigger=self.trigger,
                conclusion=self.conclusion,
                pull_numbers=self.pull_numbers,
            ),
        )


@dataclass(frozen=True, slots=True)
class ReleaseEvent:
    action: str
    target: Target
    release_id: int
    tag_name: str
    target_commitish: str | None
    draft: bool
    prerelease: bool

    @classmethod
    def parse(cls, payload: Mapping[str, Any], action: str) -> ReleaseEvent:
        release = _obj(payload, "release")
        return cls(
            action=action,
            target=Target.parse(payload),
            release_id=_int(release, "id", "release."),
            tag_name=_str(release, "tag_name", "release."),
            target_commitish=_opt_str(release, "target_commitish", "release."),
            draft=_bool(release, "draft", "release."),
            prerelease=_bool(release, "prerelease", "release."),
        )

    def jobs(self) -> tuple[JobSpec, ...]:
        # A release names a tag, not a commit: the handler resolves the tag when it runs.
        # A release published directly sends created, published (and prereleased) at once:
        # one job. Publishing a draft is a job of its own, never folded into the draft's job
        # that may be running already (its assets were listed before the last uploads).
        return (
            self.target.job(
                JobKind.RELEASE,
                None,
                (self.release_id, "draft" if self.draft else "published"),
                action=self.action,
                release_id=self.release_id,
                tag_name=self.tag_name,
                target_commitish=self.target_commitish,
                draft=self.draft,
                prerelease=self.prerelease,
            ),
        )


@dataclass(frozen=True, slots=True)
class DeploymentProtectionRuleEvent:
    action: str
    target: Target
    environment: str
    callback_url: str
    trigger: str | None
    deployment_id: int | None
    head_sha: str | None

    @classmethod
    def parse(cls, payload: Mapping[str, Any], action: str) -> DeploymentProtectionRuleEvent:
        callback = _str(payload, "deployment_callback_url")
        if not callback.startswith(("https://", "http://")):
            raise MalformedPayload("deployment_callback_url: expected a URL")
        deployment = payload.get("deployment")
        if deployment is not None and not isinstance(deployment, dict):
            raise MalformedPayload("deployment: expected an object or null")
        return cls(
            action=action,
            target=Target.parse(payload),
            environment=_str(payload, "environment"),
            callback_url=callback,
            trigger=_opt_str(payload, "event"),
            deployment_id=_int(deployment, "id", "deployment.") if deployment else None,
            head_sha=_sha(deployment, "sha", "deployment.") if deployment else None,
        )

    def jobs(self) -> tuple[JobSpec, ...]:
        return (
            self.target.job(
                JobKind.DEPLOYMENT_GATE,
                self.head_sha,
                (self.callback_url,),
                environment=self.environment,
                callback_url=self.callback_url,
                trigger=self.trigger,
                deployment_id=self.deployment_id,
            ),
        )


@dataclass(frozen=True, slots=True)
class IssueCommentEvent:
    action: str
    target: Target
    issue_number: int
    is_pull_request: bool
    comment_id: int
    body: str
    author: str
    author_type: str
    author_association: str | None

    @classmethod
    def parse(cls, payload: Mapping[str, Any], action: str) -> IssueCommentEvent:
        issue = _obj(payload, "issue")
        comment = _obj(payload, "comment")
        user = _obj(comment, "user", "comment.")
        return cls(
            action=action,
            target=Target.parse(payload),
            issue_number=_int(issue, "number", "issue."),
            is_pull_request=isinstance(issue.get("pull_request"), dict),
            comment_id=_int(comment, "id", "comment."),
            body=_str(comment, "body", "comment."),
            author=_str(user, "login", "comment.user."),
            author_type=_str(user, "type", "comment.user."),
            author_association=_opt_str(comment, "author_association", "comment."),
        )

    @property
    def command(self) -> str | None:
        """Return the comment's first line if it may be a command (it starts with `/` or `@`).

        The ingest cannot read the repository's `comments.prefix` nor the App's slug, so it
        lets every such line through and the handler decides whether it is addressed to it.
        """
        first = self.body.lstrip().split("\n", 1)[0].strip()
        if first.startswith(("/", "@")):
            return first[:MAX_COMMAND_CHARS]
        return None

    def ignored(self) -> str | None:
        """Why the comment is not a job (None: it may be a command for release-guard)."""
        if not self.is_pull_request:
            return "not a comment on a pull request"
        if is_bot(self.author, self.author_type):
            return "a bot's comment"
        if self.command is None:
            return "not a command: the first line does not start with / or @"
        return None

    def jobs(self) -> tuple[JobSpec, ...]:
        return (
            self.target.job(
                JobKind.COMMENT_COMMAND,
                None,
                (self.comment_id,),
                source="comment",
                issue_number=self.issue_number,
                is_pull_request=self.is_pull_request,
                comment_id=self.comment_id,
                command=self.command,
                body=self.body[:MAX_COMMENT_CHARS],
                author=self.author,
                author_type=self.author_type,
                author_association=self.author_association,
            ),
        )


# -- routing -----------------------------------------------------------------------------------


class _Model(Protocol):
    """A parsed event that knows its jobs (the shape every model above has)."""

    def jobs(self) -> tuple[JobSpec, ...]: ...


_Parser = Callable[[Mapping[str, Any], str], _Model]

# (event, actions that make a job, model). Every other (event, action) is ignored.
ROUTES: Final[dict[str, tuple[frozenset[str], _Parser]]] = {
    "pull_request": (frozenset({"opened", "synchronize", "reopened"}), PullRequestEvent.parse),
    "check_suite": (frozenset({"requested", "rerequested"}), CheckSuiteEvent.parse),
    "check_run": (frozenset({"rerequested", "requested_action"}), CheckRunEvent.parse),
    "workflow_run": (frozenset({"completed"}), WorkflowRunEvent.parse),
    "release": (frozenset({"published", "prereleased", "created"}), ReleaseEvent.parse),
    "deployment_protection_rule": (
        frozenset({"requested"}),
        DeploymentProtectionRuleEvent.parse,
    ),
    "issue_comment": (frozenset({"created"}), IssueCommentEvent.parse),
}

# Events the App subscribes to (app.yml) but deliberately does nothing with.
ACKNOWLEDGED: Final = frozenset(
    {"ping", "installation", "installation_repositories", "installation_target"}
)


def route(event: str, payload: Mapping[str, Any]) -> Routed:
    """Decide what a delivery of `event` asks for; raise MalformedPayload if it cannot tell."""
    raw_action = payload.get("action")
    if raw_action is not None and not isinstance(raw_action, str):
        raise MalformedPayload("action: expected a string")
    action: str | None = raw_action
    if event not in ROUTES:
        why = "acknowledged" if event in ACKNOWLEDGED else "not an event release-guard acts on"
        return Routed(event, action, ignored=why)
    actions, parse = ROUTES[event]
    if action is None:
        raise MalformedPayload("action: missing")
    if action not in actions:
        return Routed(event, action, ignored=f"{event}.{action} is not acted on")
    if "installation" not in payload:
        # Only a GitHub App installation can be answered (its token writes the check run);
        # the same event sent by a repository or organisation webhook is not for us.
        return Routed(event, action, ignored="no installation: not sent to a GitHub App")
    model = parse(payload, action)
    if isinstance(model, IssueCommentEvent | CheckRunEvent):
        skipped = model.ignored()
        if skipped is not None:
            return Routed(event, action, ignored=skipped)
    jobs = model.jobs()
    for job in jobs:
        _check_storable(job)
    return Routed(event, action, jobs=jobs)


def _check_storable(job: JobSpec) -> None:
    """Refuse a job the stores could not keep: the last guard before the database.

    The models above already check each field they read; this walks what they built, so a
    field added later cannot bring an integer or a string the store would fail on (a 500
    instead of a 400).
    """
    _positive(job.installation_id, "installation.id")
    _text(job.repository, "repository.full_name")
    for key, value in job.details.items():
        _check_value(value, key)


def _check_value(value: JSONValue, where: str) -> None:
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return
    if isinstance(value, int):
        if not -MAX_ID - 1 <= value <= MAX_ID:
            raise MalformedPayload(f"{where}: an integer outside the 64-bit range")
    elif isinstance(value, str):
        _text(value, where)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, f"{where}[{index}]")
    else:
        for key, item in value.items():
            _check_value(item, f"{where}.{key}")
