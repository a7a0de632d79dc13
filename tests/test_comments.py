"""Rescans on request, from the `issue_comment` or `check_run` payload to what the double got."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bot.app.worker import Worker, WorkerOptions
from bot.checks.output import could_not_finish
from bot.double.faults import ServerError
from bot.double.server import GitHubDouble
from bot.double.state import Comment, Repository
from bot.events import route
from bot.github import GitHubApp
from bot.handlers.check_runs import RESCAN_BUTTON, publish
from bot.handlers.comments import RescanCommands, RescanResult, SingleFlight, parse_command
from bot.handlers.pull_requests import PullRequestChecks
from bot.jobs import JobContext, RetryLater
from bot.store import SqliteStore
from bot.store.base import Delivery, Job, JobState, StoreError
from tests.apphelpers import examples, wait_until
from tests.test_releases import FakeContext, job_from, the_check_run

pytest_plugins = ["tests.ghdouble.fixtures"]

REAL = Path(__file__).parent / "fixtures" / "real"
LEAKY = (REAL / "actions-artifact-leaky.zip").read_bytes()
HEAD = "be4d" + "2" * 36
NUMBER = 12
CHECK_RUNS = "/repos/{owner}/{repo}/check-runs"
COMMENTS = "/repos/{owner}/{repo}/issues/{issue_number}/comments"
REACTIONS = "/repos/{owner}/{repo}/issues/comments/{comment_id}/reactions"
PERMISSION = "/repos/{owner}/{repo}/collaborators/{username}/permission"


def a_pull_request(ghdouble: GitHubDouble) -> Repository:
    """A pull request whose head commit's build uploaded a leaky npm package."""
    repo = ghdouble.add_repo("octo-org/octo-app")
    ghdouble.add_pull(repo, head_sha=HEAD, number=NUMBER)
    run = ghdouble.add_run(repo, head_sha=HEAD, name="build")
    ghdouble.add_artifact(repo, run, name="npm-package", data=LEAKY)
    return repo


def comment_payload(
    ghdouble: GitHubDouble,
    repo: Repository,
    body: str,
    *,
    login: str = "mona",
    user_type: str = "User",
    association: str = "MEMBER",
    comment_id: int | None = None,
) -> dict[str, Any]:
    """GitHub's example `issue_comment.created`, as a comment on the double's pull request."""
    example = next(
        e.payload
        for e in examples()
        if e.event == "issue_comment" and e.payload.get("action") == "created"
    )
    payload = copy.deepcopy(example)
    comment_id = comment_id or ghdouble.state.next_id()
    repo.comments[comment_id] = Comment(comment_id, NUMBER, body, login)
    payload["installation"] = {"id": repo.installation_id}
    payload["repository"]["full_name"] = repo.full_name
    payload["issue"]["number"] = NUMBER
    payload["issue"]["pull_request"] = {"url": f"{ghdouble.api_url}/repos/x/pulls/{NUMBER}"}
    payload["comment"].update(id=comment_id, body=body, author_association=association)
    payload["comment"]["user"].update(login=login, type=user_type)
    return payload


def replies(ghdouble: GitHubDouble) -> list[str]:
    """The comments the App posted."""
    return [r.json["body"] for r in ghdouble.requests_to("POST", COMMENTS) if r.status == 201]


def command_events(ctx: FakeContext) -> list[dict[str, Any]]:
    return [data for message, data in ctx.events("command") if "who" in data]


async def command(
    ghdouble: GitHubDouble,
    handler: RescanCommands,
    repo: Repository,
    body: str,
    **kwargs: Any,
) -> tuple[str | None, FakeContext]:
    ctx = FakeContext()
    job = job_from("issue_comment", comment_payload(ghdouble, repo, body, **kwargs))
    return await handler.run(job, ctx), ctx


def rescans(github_app: GitHubApp) -> RescanCommands:
    return RescanCommands(github_app, PullRequestChecks(github_app))


# --- Done means -----------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_an_authorised_rescan(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    repo = a_pull_request(ghdouble)
    ghdouble.set_permission(repo, "mona", "write")
    result, ctx = await command(ghdouble, rescans(github_app), repo, "/release-guard rescan")

    # Authorised through the permission endpoint, acknowledged with a reaction...
    [asked] = ghdouble.requests_to("GET", PERMISSION)
    assert asked.path.endswith("/collaborators/mona/permission")
    [reaction] = repo.reactions
    assert reaction.content == "eyes"
    # ...the head commit checked again, with a "Rescan" button on the check run...
    check = the_check_run(repo, HEAD)
    assert (check.status, check.conclusion) == ("completed", "failure")
    assert [a["identifier"] for a in check.actions] == ["rescan"]
    # ...and answered with the result and a link to the check run.
    [answer] = replies(ghdouble)
    assert answer.startswith("@mona rescanned `be4d22222222`: ❌ **failure**: 1 error")
    assert f"(https://github.com/{repo.full_name}/runs/{check.id})" in answer
    assert result is not None and result.startswith("rescanned be4d22222222: failure")
    [event] = command_events(ctx)
    assert event["who"] == "mona" and event["allowed"] is True and event["permission"] == "write"


@pytest.mark.asyncio
@pytest.mark.parametrize("association", ["NONE", "COLLABORATOR"])
async def test_a_refused_rescan_gets_one_polite_reply(
    ghdouble: GitHubDouble, github_app: GitHubApp, association: str
) -> None:
    # COLLABORATOR is what the payload says; the permission endpoint says read: refused.
    repo = a_pull_request(ghdouble)
    ghdouble.set_permission(repo, "octocat", "read")
    handler = rescans(github_app)
    result, ctx = await command(
        ghdouble, handler, repo, "/release-guard rescan", login="octocat", association=association
    )
    assert result == "refused: octocat has read access"
    [answer] = replies(ghdouble)
    assert answer.startswith("Thanks for asking, @octocat.")
    assert "write, maintain or admin access" in answer and "(yours is `read`)" in answer
    assert not repo.check_runs and not repo.reactions
    assert not ghdouble.requests_to("GET", "*", host="storage")
    [event] = command_events(ctx)
    assert event["who"] == "octocat" and event["allowed"] is False
    assert event["author_association"] == association

    # Asking again does not get a second reply, and is audited again.
    result, ctx = await command(ghdouble, handler, repo, "/release-guard rescan", login="octocat")
    assert result == "refused: octocat has read access (already answered)"
    assert len(replies(ghdouble)) == 1
    assert command_events(ctx)[0]["allowed"] is False


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("login", "user_type"),
    [("dependabot[bot]", "Bot"), ("release-guard-test[bot]", "Bot"), ("renovate[bot]", "User")],
)
async def test_a_bots_comment_is_ignored(
    ghdouble: GitHubDouble, github_app: GitHubApp, login: str, user_type: str
) -> None:
    repo = a_pull_request(ghdouble)
    payload = comment_payload(
        ghdouble, repo, "/release-guard rescan", login=login, user_type=user_type
    )
    routed = route("issue_comment", payload)
    assert routed.ignored == "a bot's comment" and routed.jobs == ()
    # Even a job that got through (an older ingest) is dropped by the handler, unanswered.
    payload["comment"]["user"].update(login="mona", type="User")
    job = job_from("issue_comment", payload)
    job.details.update(author=login, author_type=user_type)
    ctx = FakeContext()
    assert await rescans(github_app).run(job, ctx) == "ignored: a bot's comment"
    assert not ghdouble.requests_to("*", "/repos/*")
    assert not repo.check_runs and not replies(ghdouble) and not repo.reactions


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "rg.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.mark.asyncio
async def test_a_burst_of_five_identical_commands_starts_one_scan(
    ghdouble: GitHubDouble, github_app: GitHubApp, store: SqliteStore
) -> None:
    repo = a_pull_request(ghdouble)
    people = ["mona", "hubot", "octocat", "mona", "hubot"]
    for login in set(people):
        ghdouble.set_permission(repo, login, "write")
    # Five deliveries recorded as the ingest does, before any of them runs.
    for n, login in enumerate(people):
        payload = comment_payload(ghdouble, repo, "/release-guard rescan", login=login)
        body = json.dumps(payload).encode()
        routed = route("issue_comment", payload)
        recorded = Delivery(
            f"burst-{n}", "issue_comment", "created", hashlib.sha256(body).hexdigest()
        )
        assert await store.record_delivery(recorded, routed.jobs)
    jobs = await store.list_jobs()
    assert len(jobs) == 5

    options = WorkerOptions(concurrency=5, lease=10, poll_interval=0.02, max_attempts=2)
    worker = Worker(store, rescans(github_app), options)
    running = asyncio.create_task(worker.run())

    async def all_done() -> bool:
        states = [await store.get_job(job.id) for job in jobs]
        return all(j is not None and j.state is JobState.DONE for j in states)

    try:
        await wait_until(all_done, timeout=20)
    finally:
        worker.stop()
        await running

    # One scan: one check run, one download; every command acknowledged, one answer.
    assert len(ghdouble.requests_to("POST", CHECK_RUNS)) == 1
    assert len(ghdouble.requests_to("GET", "*", host="storage")) == 1
    assert len(repo.reactions) == 5 and {r.content for r in repo.reactions} == {"eyes"}
    assert len(replies(ghdouble)) == 1
    # Every command is in the audit trail with who asked.
    asked = []
    for job in jobs:
        trail = await store.audit_trail(job.id)
        asked += [e.data["who"] for e in trail if e.stage == "command" and "who" in e.data]
    assert sorted(asked) == sorted(people)


class OneJob:
    """A handler that runs one job, then stops its worker (which drains that job)."""

    def __init__(self, inner: RescanCommands) -> None:
        self.inner = inner
        self.worker: Worker | None = None

    async def run(self, job: Job, ctx: JobContext) -> str | None:
        assert self.worker is not None
        self.worker.stop()
        return await self.inner.run(job, ctx)

    async def give_up(self, job: Job, ctx: JobContext, reason: str) -> None:
        await self.inner.give_up(job, ctx, reason)


@pytest.mark.asyncio
async def test_a_burst_spread_over_two_workers_still_scans_once(
    ghdouble: GitHubDouble, github_app: GitHubApp, store: SqliteStore
) -> None:
    """Two worker processes (each its own handler, so nothing shared in memory) on one
    database: the queue runs one command of the pull request at a time, and the second
    worker answers from the rescan the first recorded in the database."""
    repo = a_pull_request(ghdouble)
    people = ["mona", "hubot", "octocat", "mona"]
    for login in set(people):
        ghdouble.set_permission(repo, login, "write")
    for n, login in enumerate(people):
        payload = comment_payload(ghdouble, repo, "/release-guard rescan", login=login)
        body = json.dumps(payload).encode()
        recorded = Delivery(
            f"spread-{n}", "issue_comment", "created", hashlib.sha256(body).hexdigest()
        )
        assert await store.record_delivery(recorded, route("issue_comment", payload).jobs)
    jobs = await store.list_jobs()
    options = WorkerOptions(concurrency=2, lease=10, poll_interval=0.02, max_attempts=2)
    handlers = [
        RescanCommands(github_app, PullRequestChecks(github_app), ledger=store) for _ in (1, 2)
    ]
    one_job = OneJob(handlers[0])
    first = Worker(store, one_job, options, worker_id="host/1/token/worker")
    one_job.worker = first
    second = Worker(store, handlers[1], options, worker_id="host/2/token/worker")

    async def done() -> bool:
        states = [await store.get_job(job.id) for job in jobs]
        return all(j is not None and j.state is JobState.DONE for j in states)

    # The first worker answers one command (it scans), then stops; the second, a process
    # that never scanned, answers the rest.
    await asyncio.wait_for(first.run(), 20)
    running = asyncio.create_task(second.run())
    try:
        await wait_until(done, timeout=20)
    finally:
        second.stop()
        await running

    assert len(ghdouble.requests_to("POST", CHECK_RUNS)) == 1
    assert len(ghdouble.requests_to("GET", "*", host="storage")) == 1
    assert len(replies(ghdouble)) == 1
    ran_by = set()
    for job in jobs:
        for event in await store.audit_trail(job.id):
            if event.stage == "started":
                ran_by.add(event.data["worker"])
    assert len(ran_by) == 2  # both workers took commands


# --- spellings ------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_the_app_can_be_mentioned(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    repo = a_pull_request(ghdouble)
    ghdouble.set_permission(repo, "mona", "admin")
    result, _ = await command(
        ghdouble, rescans(github_app), repo, "@Release-Guard-Test rescan\nthanks"
    )
    assert result is not None and result.startswith("rescanned")
    assert the_check_run(repo, HEAD).conclusion == "failure"


@pytest.mark.asyncio
async def test_the_prefix_is_configurable(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    repo = a_pull_request(ghdouble)
    ghdouble.set_permission(repo, "mona", "write")
    ghdouble.add_file(repo, ".github/release-guard.yml", "comments:\n  prefix: /guard\n", ref=HEAD)
    handler = rescans(github_app)
    result, _ = await command(ghdouble, handler, repo, "/release-guard rescan")
    assert result == "ignored: not a release-guard command"
    assert not repo.check_runs and not ghdouble.requests_to("GET", PERMISSION)
    result, _ = await command(ghdouble, handler, repo, "/guard rescan")
    assert result is not None and result.startswith("rescanned")


@pytest.mark.asyncio
async def test_other_commands_are_not_ours(ghdouble: GitHubDouble, github_app: GitHubApp) -> None:
    repo = a_pull_request(ghdouble)
    handler = rescans(github_app)
    assert (await command(ghdouble, handler, repo, "/assign @mona"))[0] == (
        "ignored: not a release-guard command"
    )
    assert (await command(ghdouble, handler, repo, "@mona please look"))[0] == (
        "ignored: not a release-guard command"
    )
    assert not replies(ghdouble) and not repo.reactions


@pytest.mark.asyncio
async def test_an_unknown_verb_gets_the_usage(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = a_pull_request(ghdouble)
    ghdouble.set_permission(repo, "mona", "write")
    result, _ = await command(ghdouble, rescans(github_app), repo, "/release-guard scan-it")
    assert result == "answered: scan-it command is not known"
    [answer] = replies(ghdouble)
    assert (
        "does not know `/release-guard scan-it`" in answer and "`/release-guard rescan`" in answer
    )
    assert not repo.check_runs


@pytest.mark.asyncio
async def test_a_rescan_that_cannot_finish_says_so(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = a_pull_request(ghdouble)
    ghdouble.set_permission(repo, "mona", "write")
    ghdouble.faults.add("GET", "/repos/*/actions/runs", ServerError(502), times=50)
    handler = rescans(github_app)
    job = job_from("issue_comment", comment_payload(ghdouble, repo, "/release-guard rescan"))
    ctx = FakeContext()
    with pytest.raises(RetryLater):
        await handler.run(job, ctx)
    await handler.give_up(job, ctx, "GitHub answered 502 five times")
    check = the_check_run(repo, HEAD)
    assert check.conclusion == "failure"
    [answer] = replies(ghdouble)
    assert answer.startswith("@mona the rescan of `be4d22222222` could not finish")


@pytest.mark.asyncio
async def test_a_rescan_while_builds_run_says_when_it_completes(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo("octo-org/octo-app")
    ghdouble.add_pull(repo, head_sha=HEAD, number=NUMBER)
    ghdouble.add_run(repo, head_sha=HEAD, status="in_progress", conclusion=None)
    ghdouble.set_permission(repo, "mona", "write")
    result, _ = await command(ghdouble, rescans(github_app), repo, "/release-guard rescan")
    assert result == "rescanned be4d22222222: waiting for builds"
    [answer] = replies(ghdouble)
    assert "the builds of `be4d22222222` have not finished yet (Waiting for builds)" in answer
    assert the_check_run(repo, HEAD).status == "queued"


# --- the "Rescan" button ---------------------------------------------------------------------


def button_payload(repo: Repository, check_run_id: int, *, login: str = "mona") -> dict[str, Any]:
    example = next(
        e.payload
        for e in examples()
        if e.event == "check_run" and e.payload.get("action") == "requested_action"
    )
    payload = copy.deepcopy(example)
    payload["installation"] = {"id": repo.installation_id}
    payload["repository"]["full_name"] = repo.full_name
    payload["check_run"].update(id=check_run_id, name="release-guard", head_sha=HEAD)
    payload["requested_action"] = {"identifier": "rescan"}
    payload["sender"].update(login=login, type="User")
    return payload


@pytest.mark.asyncio
async def test_the_rescan_button_rescans_under_the_same_rule(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = a_pull_request(ghdouble)
    old = ghdouble.add_check_run(repo, name="release-guard", head_sha=HEAD, conclusion="success")
    ghdouble.set_permission(repo, "mona", "maintain")
    ghdouble.set_permission(repo, "octocat", "read")
    handler = rescans(github_app)

    ctx = FakeContext()
    refused = await handler.run(
        job_from("check_run", button_payload(repo, old.id, login="octocat")), ctx
    )
    assert refused == "refused: octocat has read access"
    assert command_events(ctx)[0]["who"] == "octocat" and not replies(ghdouble)
    assert not ghdouble.requests_to("POST", CHECK_RUNS)

    ctx = FakeContext()
    result = await handler.run(job_from("check_run", button_payload(repo, old.id)), ctx)
    assert result is not None and result.startswith("rescanned be4d22222222: failure")
    assert command_events(ctx)[0] == command_events(ctx)[0] | {"who": "mona", "allowed": True}
    [new] = [c for c in repo.check_runs.values() if c.id != old.id]
    assert new.conclusion == "failure" and [a["label"] for a in new.actions] == ["Rescan"]


# --- pieces -----------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_publish_can_offer_the_button_with_the_verdict(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    check = ghdouble.add_check_run(repo, name="release-guard", head_sha=HEAD, status="queued")
    gh = await github_app.installation(repo.installation_id)
    update = could_not_finish(reason="testing")
    url = await publish(gh, repo.full_name, check.id, update, actions=(RESCAN_BUTTON,))
    assert url == f"https://github.com/{repo.full_name}/runs/{check.id}"
    assert check.conclusion == "failure" and check.actions == [RESCAN_BUTTON]


def test_parse_command() -> None:
    assert parse_command("/release-guard rescan", prefix="/release-guard", slug="rg") is not None
    command = parse_command("@RG  Rescan now", prefix="/release-guard", slug="rg")
    assert command is not None and command.verb == "rescan"
    assert parse_command("/release-guardx rescan", prefix="/release-guard", slug="rg") is None
    assert parse_command("", prefix="/release-guard", slug="rg") is None
    bare = parse_command("/release-guard", prefix="/release-guard", slug="rg")
    assert bare is not None and bare.verb == ""


@pytest.mark.asyncio
async def test_single_flight_joins_and_reuses() -> None:
    now = [100.0]
    flights = SingleFlight(clock=lambda: now[0], keep=60)
    gate = asyncio.Event()
    started: list[float] = []

    async def scan(at: float) -> RescanResult:
        started.append(at)
        await gate.wait()
        return result(f"result-{len(started)}", at)

    first = asyncio.create_task(flights.run(("k",), 99.0, scan))
    await asyncio.sleep(0)
    second = asyncio.create_task(flights.run(("k",), 99.5, scan))
    await asyncio.sleep(0)
    gate.set()
    assert await first == (result("result-1", 100.0), True)
    assert await second == (result("result-1", 100.0), False)
    # Asked before that scan started: answered by it. Asked after: a new scan.
    assert await flights.run(("k",), 99.9, scan) == (result("result-1", 100.0), False)
    now[0] = 130.0
    assert await flights.run(("k",), 120.0, scan) == (result("result-2", 130.0), True)
    assert started == [100.0, 130.0]
    # Long after, even a command asked before it gets a scan of its own.
    now[0] = 1000.0
    assert (await flights.run(("k",), 110.0, scan))[1] is True


@pytest.mark.asyncio
async def test_single_flight_shares_a_failure_and_forgets_it() -> None:
    flights = SingleFlight(clock=lambda: 1.0)

    async def broken(at: float) -> RescanResult:
        raise RetryLater("GitHub is down")

    with pytest.raises(RetryLater):
        await flights.run(("k",), 0.0, broken)

    async def fine(at: float) -> RescanResult:
        return result("ok", at)

    assert await flights.run(("k",), 0.0, fine) == (result("ok", 1.0), True)


@pytest.mark.asyncio
async def test_single_flight_tells_joiners_when_the_leader_is_interrupted() -> None:
    flights = SingleFlight(clock=lambda: 1.0)
    gate = asyncio.Event()

    async def slow(at: float) -> RescanResult:
        await gate.wait()
        return result("never", at)

    leader = asyncio.create_task(flights.run(("k",), 0.0, slow))
    await asyncio.sleep(0)
    joiner = asyncio.create_task(flights.run(("k",), 0.0, slow))
    await asyncio.sleep(0)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    with pytest.raises(RetryLater, match="interrupted"):
        await joiner


def result(summary: str, started_at: float) -> RescanResult:
    return RescanResult(
        head_sha=HEAD,
        summary=summary,
        check_run_id=None,
        status=None,
        conclusion=None,
        title=None,
        html_url=None,
        started_at=started_at,
        job_id=1,
    )


class Ledger:
    """A RescanLedger in memory, or one whose database is down."""

    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.rows: dict[str, dict[str, Any]] = {}

    async def recent_rescan(self, key: str) -> dict[str, Any] | None:
        if self.down:
            raise StoreError("the database is down")
        return self.rows.get(key)

    async def record_rescan(self, key: str, result: Mapping[str, Any]) -> None:
        if self.down:
            raise StoreError("the database is down")
        self.rows[key] = dict(result)


@pytest.mark.asyncio
async def test_single_flight_shares_results_through_the_ledger() -> None:
    now = [100.0]
    ledger = Ledger()
    first, second = (SingleFlight(clock=lambda: now[0], keep=60, ledger=ledger) for _ in "ab")
    started: list[float] = []

    async def scan(at: float) -> RescanResult:
        started.append(at)
        return result(f"result-{len(started)}", at)

    assert await first.run(("k", 1), 99.0, scan) == (result("result-1", 100.0), True)
    # Another process, asked before that scan started: answered from the ledger.
    assert await second.run(("k", 1), 99.5, scan) == (result("result-1", 100.0), False)
    assert list(ledger.rows) == ["k:1"]
    # Garbage in the ledger is not an answer.
    ledger.rows["k:1"] = {"head_sha": 5}
    now[0] = 101.0
    assert (await second.run(("k", 1), 99.5, scan))[1] is True
    assert started == [100.0, 101.0]


@pytest.mark.asyncio
async def test_single_flight_rescans_when_the_ledger_is_down() -> None:
    flights = SingleFlight(clock=lambda: 100.0, keep=60, ledger=Ledger(down=True))

    async def scan(at: float) -> RescanResult:
        return result("fresh", at)

    assert await flights.run(("k",), 99.0, scan) == (result("fresh", 100.0), True)
