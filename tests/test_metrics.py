"""`/metrics`: what is counted, under which labels, by the web app, the worker and the GitHub
layer; and that each app instance counts on its own."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from bot.app.serve import work
from bot.app.web import make_app
from bot.app.worker import Worker, WorkerOptions
from bot.double.faults import ServerError
from bot.double.helpers import SleepRecorder, make_keypair
from bot.double.server import GitHubDouble
from bot.engine.model import ArtifactReport, Finding, Report, Rule, Severity
from bot.github import GitHubApp, RateLimitTracker, RetryPolicy
from bot.github.ratelimit import RateLimitState
from bot.jobs import JobContext
from bot.ops.metrics import Metrics, conclusion_of
from bot.secrets import Secret
from bot.settings import Settings
from bot.store import Job, JobState, SqliteStore, StoreError
from tests.apphelpers import (
    RecordingHandler,
    delivery,
    new_secret,
    pull_request_payload,
    retry,
    spec,
    wait_until,
    webhook_headers,
)

pytest_plugins = ["tests.ghdouble.fixtures"]

ClientFactory = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]
FAST = WorkerOptions(concurrency=1, lease=5, poll_interval=0.05, max_attempts=2, drain_timeout=5)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Parse the exposition into {(sample name, labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset(labels.items())))


# -- Metrics itself -------------------------------------------------------------------------


def test_each_instance_has_its_own_registry() -> None:
    one, two = Metrics(), Metrics()
    one.delivery("push", "queued")
    one.set_retained_bytes(1234)
    text_one, text_two = one.render().decode(), two.render().decode()
    assert value(text_one, "release_guard_deliveries_total", event="push", outcome="queued") == 1
    assert value(text_two, "release_guard_deliveries_total", event="push", outcome="queued") is None
    assert value(text_one, "release_guard_retained_bytes") == 1234
    assert value(text_two, "release_guard_retained_bytes") == 0
    assert value(text_one, "release_guard_build_info", version="0.1.0") == 1


def test_unverified_deliveries_do_not_name_their_event() -> None:
    metrics = Metrics()
    for n in range(5):
        metrics.delivery(f"made_up_{n}", "bad_signature")
    metrics.delivery("", "malformed")
    text = metrics.render().decode()
    assert (
        value(text, "release_guard_deliveries_total", event="unverified", outcome="bad_signature")
        == 5
    )
    assert "made_up" not in text


def test_findings_count_known_rules_only() -> None:
    metrics = Metrics()
    metrics.stage_entered(
        "check",
        "reporting",
        {"findings_by_rule": {"sourcemap/map-file": 2, "no/such-rule": 9, "files/forbidden": 0}},
    )
    text = metrics.render().decode()
    assert value(text, "release_guard_findings_total", rule="sourcemap/map-file") == 2
    assert "no/such-rule" not in text
    assert value(text, "release_guard_job_stages_total", kind="check", stage="reporting") == 1


def test_findings_by_rule_counts_a_report() -> None:
    def finding(rule: Rule) -> Finding:
        return Finding(rule=rule, severity=Severity.ERROR, path="p", message="m")

    report = Report(
        artifacts=[
            ArtifactReport(
                name="a",
                path="a",
                sha256=None,
                size=1,
                files=1,
                findings=[finding(Rule.FORBIDDEN), finding(Rule.FORBIDDEN), finding(Rule.MAP_FILE)],
            )
        ]
    )
    assert report.findings_by_rule() == {"files/forbidden": 2, "sourcemap/map-file": 1}


@pytest.mark.parametrize(
    ("summary", "conclusion"),
    [
        ("failure: 1 error in npm-package", "failure"),
        ("success: no finding", "success"),
        ("neutral: no artifact to scan", "neutral"),
        ("waiting for builds", "none"),
        (None, "none"),
        ("successful", "none"),
    ],
)
def test_conclusion_of(summary: str | None, conclusion: str) -> None:
    assert conclusion_of(summary) == conclusion


def test_rate_limit_gauges() -> None:
    metrics = Metrics()
    tracker = RateLimitTracker(clock=lambda: 0.0, on_update=metrics.rate_limit)
    tracker.observe(
        42,
        {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4990",
            "x-ratelimit-reset": "1700000000",
            "x-ratelimit-resource": "core",
        },
    )
    metrics.rate_limit(None, RateLimitState(5000, 4999, 1.0, None, 0.0))
    text = metrics.render().decode()
    remaining = "release_guard_github_rate_limit_remaining"
    assert value(text, remaining, installation="42", resource="core") == 4990
    assert value(text, remaining, installation="app", resource="core") == 4999
    assert (
        value(
            text,
            "release_guard_github_rate_limit_reset_timestamp_seconds",
            installation="42",
            resource="core",
        )
        == 1700000000
    )


# -- the web app ----------------------------------------------------------------------------


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "rg.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.mark.asyncio
async def test_get_metrics_counts_deliveries(
    aiohttp_client: ClientFactory, tmp_path: Path, store: SqliteStore
) -> None:
    secret = new_secret()
    metrics = Metrics()
    settings = Settings.for_data_dir(tmp_path, webhook_secret=Secret(secret))
    client = await aiohttp_client(make_app(settings, store, metrics=metrics))
    body = json.dumps(pull_request_payload()).encode()
    for _ in range(2):  # the second is a duplicate of the first
        headers = webhook_headers(secret, body, "pull_request", delivery="d-1")
        assert (await client.post("/api/github/webhooks", data=body, headers=headers)).status in (
            200,
            202,
        )
    bad = webhook_headers("wrong", body, "pull_request")
    assert (await client.post("/api/github/webhooks", data=body, headers=bad)).status == 401

    answer = await client.get("/metrics")
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = await answer.text()
    deliveries = "release_guard_deliveries_total"
    assert value(text, deliveries, event="pull_request", outcome="queued") == 1
    assert value(text, deliveries, event="pull_request", outcome="duplicate") == 1
    assert value(text, deliveries, event="unverified", outcome="bad_signature") == 1
    assert value(metrics.render().decode(), deliveries, event="pull_request", outcome="queued")


@pytest.mark.asyncio
async def test_an_app_without_metrics_given_still_serves_them(
    aiohttp_client: ClientFactory, tmp_path: Path, store: SqliteStore
) -> None:
    settings = Settings.for_data_dir(tmp_path, webhook_secret=Secret(new_secret()))
    client = await aiohttp_client(make_app(settings, store))
    text = await (await client.get("/metrics")).text()
    assert "release_guard_deliveries_total" in text and "python_gc" not in text


# -- the worker -----------------------------------------------------------------------------


class AuditingHandler(RecordingHandler):
    """Reports findings the way the real handlers do (`findings_by_rule` in the audit)."""

    async def run(self, job: Job, ctx: JobContext) -> str | None:
        await ctx.audit("downloading", "1 artifact")
        await asyncio.sleep(0.02)
        await ctx.audit(
            "reporting",
            "failure: 2 errors",
            findings_by_rule={"sourcemap/embedded-sources": 2},
        )
        return "failure: 2 errors in npm-package"


@pytest.mark.asyncio
async def test_worker_counts_jobs_stages_durations_and_findings(store: SqliteStore) -> None:
    metrics = Metrics()
    await store.record_delivery(delivery(), [spec("a" * 40), spec("b" * 40)])
    handler = AuditingHandler()
    worker = Worker(store, handler, FAST, metrics=metrics)
    task = asyncio.create_task(worker.run())

    async def all_done() -> bool:
        return all(j.state is JobState.DONE for j in await store.list_jobs())

    await wait_until(all_done)
    worker.stop()
    await task
    text = metrics.render().decode()
    assert (
        value(text, "release_guard_jobs_total", kind="check", state="done", conclusion="failure")
        == 2
    )
    assert value(text, "release_guard_jobs_running") == 0
    for stage in ("started", "downloading", "reporting"):
        assert value(text, "release_guard_job_stages_total", kind="check", stage=stage) == 2
    assert (
        value(
            text,
            "release_guard_job_stage_duration_seconds_count",
            kind="check",
            stage="downloading",
        )
        == 2
    )
    downloading = value(
        text, "release_guard_job_stage_duration_seconds_sum", kind="check", stage="downloading"
    )
    assert downloading is not None and downloading >= 0.04
    assert value(text, "release_guard_job_duration_seconds_count", kind="check") == 2
    assert value(text, "release_guard_findings_total", rule="sourcemap/embedded-sources") == 4


@pytest.mark.asyncio
async def test_worker_counts_retries_and_failures(store: SqliteStore) -> None:
    metrics = Metrics()
    await store.record_delivery(delivery(), [spec("c" * 40)])
    handler = RecordingHandler(script=[retry(), RuntimeError("boom")])
    worker = Worker(store, handler, FAST, metrics=metrics)
    task = asyncio.create_task(worker.run())

    async def failed() -> bool:
        return all(j.state is JobState.FAILED for j in await store.list_jobs())

    await wait_until(failed)
    worker.stop()
    await task
    text = metrics.render().decode()
    jobs = "release_guard_jobs_total"
    assert value(text, jobs, kind="check", state="retried", conclusion="none") == 1
    assert value(text, jobs, kind="check", state="failed", conclusion="failure") == 1


# -- the GitHub layer -----------------------------------------------------------------------


@pytest.mark.asyncio
async def test_github_calls_retries_and_rate_limits(
    ghdouble: GitHubDouble, github_session: aiohttp.ClientSession
) -> None:
    metrics = Metrics()
    app = GitHubApp(
        app_id=ghdouble.app_id,
        private_key=ghdouble.private_key,
        api_url=ghdouble.api_url,
        session=github_session,
        sleep=SleepRecorder(),
        policy=RetryPolicy(timeout=5.0),
        rate_limits=RateLimitTracker(on_update=metrics.rate_limit),
        observer=metrics,
    )
    repo = ghdouble.add_repo("octo-org/metered")
    ghdouble.faults.add("GET", "/repos/{owner}/{repo}/pulls/{pull_number}", ServerError(502))
    ghdouble.add_pull(repo, head_sha="d" * 40, number=3)
    assert repo.installation_id is not None
    gh = await app.installation(repo.installation_id)
    await gh.getitem("/repos/octo-org/metered/pulls/3")

    text = metrics.render().decode()
    inst = str(repo.installation_id)
    requests = "release_guard_github_requests_total"
    assert value(text, requests, installation="app", method="POST", status="201") == 1
    assert value(text, requests, installation=inst, method="GET", status="502") == 1
    assert value(text, requests, installation=inst, method="GET", status="200") == 1
    assert (
        value(text, "release_guard_github_retries_total", installation=inst, reason="server error")
        == 1
    )
    remaining = value(
        text, "release_guard_github_rate_limit_remaining", installation=inst, resource="core"
    )
    assert remaining is not None and 0 < remaining < 5000


@pytest.mark.asyncio
async def test_a_worker_process_serves_its_metrics_when_asked(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    settings = Settings.for_data_dir(tmp_path, app_id=1, private_key=make_keypair()[0])
    store = SqliteStore(settings.data_dir / "release-guard.sqlite3")
    await store.open()
    await store.record_delivery(delivery(), [spec("e" * 40)])
    await store.close()
    stop = asyncio.Event()
    task = asyncio.create_task(
        work(
            settings,
            handler_factory=lambda s, session: RecordingHandler(),
            options=FAST,
            stop=stop,
            metrics_host="127.0.0.1",
            metrics_port=port,
        )
    )
    try:

        async def counted() -> bool:
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{port}/metrics") as answer,
                ):
                    text = await answer.text()
            except aiohttp.ClientConnectionError:
                return False
            return (
                value(
                    text, "release_guard_jobs_total", kind="check", state="done", conclusion="none"
                )
                == 1
            )

        await wait_until(counted, timeout=10)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


@pytest.mark.asyncio
async def test_the_queue_depth_is_read_from_the_database_at_each_scrape(
    aiohttp_client: ClientFactory, tmp_path: Path, store: SqliteStore
) -> None:
    metrics = Metrics()
    metrics.watch_queue(store.pending_jobs)
    settings = Settings.for_data_dir(tmp_path, webhook_secret=Secret(new_secret()))
    client = await aiohttp_client(make_app(settings, store, metrics=metrics))
    await store.record_delivery(delivery(), [spec("a" * 40), spec("b" * 40)])
    text = await (await client.get("/metrics")).text()
    assert value(text, "release_guard_jobs_pending", state="queued") == 2
    assert value(text, "release_guard_jobs_pending", state="running") == 0
    assert await store.claim("w", 30) is not None
    text = await (await client.get("/metrics")).text()
    assert value(text, "release_guard_jobs_pending", state="queued") == 1
    assert value(text, "release_guard_jobs_pending", state="running") == 1


@pytest.mark.asyncio
async def test_a_scrape_answers_when_the_database_does_not(
    aiohttp_client: ClientFactory, tmp_path: Path, store: SqliteStore
) -> None:
    async def down() -> dict[JobState, int]:
        raise StoreError("the database is down")

    metrics = Metrics()
    metrics.watch_queue(down)
    settings = Settings.for_data_dir(tmp_path, webhook_secret=Secret(new_secret()))
    client = await aiohttp_client(make_app(settings, store, metrics=metrics))
    answer = await client.get("/metrics")
    assert answer.status == 200
    assert "release_guard_deliveries" in await answer.text()
