"""Recovering failed webhook deliveries (issue 14): the sweep against the GitHub double.

The double keeps the App's deliveries with every attempt and, asked to redeliver one, sends
the stored payload again, signed, with its original GUID, to the App under test. The App is
the real `serve` (in this process, SQLite, a recording job handler); the sweep is the real
one, talking to the double through `GitHubApp`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from bot.app.recovery import Recovery, RecoveryOptions, parse_interval
from bot.app.serve import serve
from bot.app.worker import WorkerOptions
from bot.double.faults import PrimaryRateLimit, Respond, ServerError, Slow
from bot.double.server import GitHubDouble
from bot.github import AuthenticationFailed, GitHubApp, NotFound
from bot.ops.metrics import Metrics
from bot.secrets import Secret
from bot.settings import PostgresDatabase, Settings, SettingsError
from bot.store import PostgresStore, SqliteStore
from tests.apphelpers import (
    FakeClock,
    RecordingHandler,
    delivery,
    new_secret,
    pull_request_payload,
    wait_until,
)
from tests.test_serve import free_port

pytest_plugins = ["tests.ghdouble.fixtures"]
pytestmark = pytest.mark.asyncio

FAST = WorkerOptions(poll_interval=0.05)
SWEEP = RecoveryOptions(interval=3600.0)  # the sweep at start; the next is out of the test
LISTED = "/app/hook/deliveries"
REDELIVER = "/app/hook/deliveries/{delivery_id}/attempts"


def settings_for(tmp_path: Path, ghdouble: GitHubDouble, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "app_id": ghdouble.app_id,
        "private_key": ghdouble.private_key,
        "webhook_secret": Secret(new_secret()),
        "host": "127.0.0.1",
        "port": free_port(),
        "github_api_url": ghdouble.api_url,
    }
    values.update(changes)
    return Settings.for_data_dir(tmp_path, **values)


def point_hook(ghdouble: GitHubDouble, settings: Settings) -> None:
    """Make the double's webhook deliver to the App under test (which may not listen yet)."""
    assert settings.webhook_secret is not None
    ghdouble.hooks.target_url = f"http://127.0.0.1:{settings.port}{settings.webhook_path}"
    ghdouble.hooks.secret = settings.webhook_secret.reveal()


class Running:
    """One in-process `serve`, its handler, and a way to stop it."""

    def __init__(self, settings: Settings, recovery: RecoveryOptions | None) -> None:
        self.settings = settings
        self.handler = RecordingHandler()
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(
            serve(
                settings,
                handler_factory=lambda s, session: self.handler,
                options=FAST,
                stop=self.stop,
                recovery=recovery,
            )
        )

    async def finish(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 15)


@pytest_asyncio.fixture
async def running() -> AsyncIterator[list[Running]]:
    started: list[Running] = []
    yield started
    for server in started:
        if not server.task.done():
            await server.finish()


async def store_of(settings: Settings) -> SqliteStore:
    store = SqliteStore(settings.data_dir / "release-guard.sqlite3")
    await store.open()
    return store


async def deliveries_recorded(settings: Settings) -> set[str]:
    store = await store_of(settings)
    try:
        rows = await store.execute("SELECT delivery_id FROM deliveries")
        return {str(row[0]) for row in rows}
    finally:
        await store.close()


def payload(n: int) -> dict[str, Any]:
    return pull_request_payload(sha=f"{n:040x}", number=n)


def recovery_for(
    ghdouble: GitHubDouble,
    store: SqliteStore | PostgresStore,
    options: RecoveryOptions = SWEEP,
    **kwargs: Any,
) -> Recovery:
    app = GitHubApp(
        app_id=ghdouble.app_id,
        private_key=ghdouble.private_key,
        session=kwargs.pop("session"),
        api_url=ghdouble.api_url,
    )
    return Recovery(app, store, options, **kwargs)


# -- the whole story ---------------------------------------------------------------------------


async def test_app_down_three_deliveries_fail_then_all_processed_each_redelivered_once(
    tmp_path: Path, ghdouble: GitHubDouble, running: list[Running]
) -> None:
    settings = settings_for(tmp_path, ghdouble)
    point_hook(ghdouble, settings)
    # While the App is up, one delivery goes through.
    first = Running(settings, None)
    running.append(first)
    await wait_until(lambda: _listening(settings))
    delivered = await ghdouble.hooks.deliver("pull_request", payload(1))
    assert delivered.status == "OK" and delivered.status_code == 202
    await first.finish()
    # Down: three deliveries fail (nothing listens).
    failed = [await ghdouble.hooks.deliver("pull_request", payload(n)) for n in (2, 3, 4)]
    assert [a.status_code for a in failed] == [0, 0, 0]
    assert all(a.status != "OK" for a in failed)
    # Restarted, with the sweep on.
    second = Running(settings, SWEEP)
    running.append(second)
    guids = {a.guid for a in failed}
    await wait_until(lambda: len(second.handler.runs) == 3, timeout=20)
    await ghdouble.hooks.settle()
    assert await deliveries_recorded(settings) == guids | {delivered.guid}
    for guid in guids:
        (again,) = ghdouble.hooks.redeliveries_of(guid)  # exactly once
        assert again.status == "OK" and again.status_code == 202 and again.guid == guid
    assert ghdouble.hooks.redeliveries_of(delivered.guid) == []  # an OK one, never
    asked = ghdouble.requests_to("POST", REDELIVER)
    assert len(asked) == 3 and all(r.auth == "jwt" and r.status == 202 for r in asked)
    await second.finish()
    # A third start sweeps again: everything is recorded, nothing is asked for.
    third = Running(settings, SWEEP)
    running.append(third)
    await wait_until(lambda: _metric(settings, 'sweeps_total{outcome="complete"} 1.0'))
    await third.finish()
    assert len(ghdouble.requests_to("POST", REDELIVER)) == 3
    store = await store_of(settings)
    try:
        trail = await store.execute(
            "SELECT delivery_id, stage FROM audit_events WHERE job_id IS NULL"
            " AND stage LIKE 'redelivery%' ORDER BY id"
        )
    finally:
        await store.close()
    assert sorted(trail) == sorted((guid, "redelivery_requested") for guid in guids)


async def _listening(settings: Settings) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{settings.port}/healthz") as response,
        ):
            return response.status == 200
    except aiohttp.ClientError:
        return False


async def test_a_redelivery_already_recorded_is_answered_200_and_changes_nothing(
    tmp_path: Path, ghdouble: GitHubDouble, running: list[Running]
) -> None:
    """The App recorded it but GitHub saw a failure (say, a timeout): the sweep leaves it."""
    settings = settings_for(tmp_path, ghdouble)
    point_hook(ghdouble, settings)
    server = Running(settings, None)
    running.append(server)
    await wait_until(lambda: _listening(settings))
    attempt = await ghdouble.hooks.deliver("pull_request", payload(1))
    assert attempt.status_code == 202
    attempt.status, attempt.status_code = "timed out", 0  # GitHub gave up waiting
    stored = ghdouble.hooks.deliveries[attempt.guid]
    await ghdouble.hooks.attempt(stored, redelivery=True)  # an operator's redelivery
    assert stored.attempts[-1].status_code == 200  # already recorded: 200, nothing new
    await wait_until(lambda: len(server.handler.runs) == 1)
    store = await store_of(settings)
    try:
        async with aiohttp.ClientSession() as session:
            report = await recovery_for(ghdouble, store, session=session).sweep()
    finally:
        await store.close()
    assert report.complete and report.requested == [] and report.failed == []
    assert len(server.handler.runs) == 1


# -- the sweep's rules --------------------------------------------------------------------------


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "rg.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


@pytest_asyncio.fixture
async def session() -> AsyncIterator[Any]:
    async with aiohttp.ClientSession() as opened:
        yield opened


def failed_delivery(ghdouble: GitHubDouble, n: int, *, at: float | None = None) -> str:
    stored = ghdouble.hooks.store("pull_request", payload(n))
    ghdouble.hooks.record_attempt(stored, status_code=503, at=at)
    return stored.guid


async def test_ok_deliveries_and_recorded_ones_are_never_redelivered(
    ghdouble: GitHubDouble, store: SqliteStore, session: Any
) -> None:
    ok = ghdouble.hooks.store("pull_request", payload(1))
    ghdouble.hooks.record_attempt(ok, status_code=200)
    # Failed first, then redelivered successfully by someone: OK overall.
    healed = ghdouble.hooks.store("pull_request", payload(2))
    ghdouble.hooks.record_attempt(healed, status_code=503)
    ghdouble.hooks.record_attempt(healed, status_code=202, redelivery=True)
    # Failed in GitHub's eyes, yet recorded by the App (its answer was lost).
    lost_answer = failed_delivery(ghdouble, 3)
    await store.record_delivery(delivery(lost_answer), [])
    failing = failed_delivery(ghdouble, 4)
    report = await recovery_for(ghdouble, store, session=session).sweep()
    assert [c.guid for c in report.requested] == [failing]
    (asked,) = ghdouble.requests_to("POST", REDELIVER)
    assert asked.path.endswith(f"/{ghdouble.hooks.deliveries[failing].attempts[0].id}/attempts")


async def test_one_request_per_guid_per_sweep_even_with_many_failed_attempts(
    ghdouble: GitHubDouble, store: SqliteStore, session: Any
) -> None:
    stored = ghdouble.hooks.store("pull_request", payload(1))
    for _ in range(5):
        ghdouble.hooks.record_attempt(stored, status_code=503)
    newest = stored.attempts[-1].id
    report = await recovery_for(ghdouble, store, session=session).sweep()
    assert len(report.requested) == 1
    (asked,) = ghdouble.requests_to("POST", REDELIVER)
    assert asked.path == f"/app/hook/deliveries/{newest}/attempts"


async def test_the_sweep_is_bounded_and_leaves_the_rest_for_the_next(
    ghdouble: GitHubDouble, store: SqliteStore, session: Any
) -> None:
    guids = [failed_delivery(ghdouble, n) for n in range(7)]
    options = RecoveryOptions(interval=None, max_redeliveries=3)
    sweeper = recovery_for(ghdouble, store, options, session=session)
    first = await sweeper.sweep()
    assert len(first.requested) == 3 and first.deferred == 4 and not first.complete
    assert await store.recovery_mark() is None  # not complete: the mark stays
    second = await sweeper.sweep()
    third = await sweeper.sweep()
    asked = [c.guid for r in (first, second, third) for c in r.requested]
    assert sorted(asked) == sorted(guids)  # each once: the asked ones wait out the cooldown
    assert third.complete and await store.recovery_mark() is not None


async def test_paging_follows_the_cursor_and_stops_at_the_high_water_mark(
    ghdouble: GitHubDouble, store: SqliteStore, session: Any
) -> None:
    now = ghdouble.now()
    old = [failed_delivery(ghdouble, n, at=now - 7200 + 10 * n) for n in range(120)]
    sweeper = recovery_for(
        ghdouble, store, RecoveryOptions(interval=None, max_redeliveries=500), session=session
    )
    first = await sweeper.sweep()
    await ghdouble.hooks.settle()  # 120 redeliveries, failing: nothing listens
    assert len(first.requested) == 120 and first.complete
    pages = ghdouble.requests_to("GET", LISTED)
    assert len(pages) == 2 and "cursor" in pages[1].query  # 100 + 20, by the Link header
    mark = await store.recovery_mark()
    assert mark is not None and abs(mark - (now - 7200 + 1190)) < 1
    fresh = failed_delivery(ghdouble, 999)
    second = await sweeper.sweep()
    assert [c.guid for c in second.requested] == [fresh]
    assert second.waiting == 120  # asked for a moment ago: their redeliveries failed too
    # Read: the 120 failed redeliveries, the new one, then the originals back to the mark
    # less its margin (300 s: 31 of them), and the first one past it.
    assert second.seen == 120 + 1 + 31 + 1
    assert set(old).isdisjoint(c.guid for c in second.requested)


async def test_the_high_water_mark_survives_a_restart(
    tmp_path: Path, ghdouble: GitHubDouble, session: Any
) -> None:
    now = ghdouble.now()
    for n in range(3):
        failed_delivery(ghdouble, n, at=now - 86_400 + n)
    path = tmp_path / "rg.sqlite3"
    store = SqliteStore(path)
    await store.open()
    await recovery_for(ghdouble, store, session=session).sweep()
    mark = await store.recovery_mark()
    await store.close()
    reopened = SqliteStore(path)
    await reopened.open()
    try:
        assert await reopened.recovery_mark() == mark
        listed_before = len(ghdouble.requests_to("GET", LISTED))
        report = await recovery_for(ghdouble, reopened, session=session).sweep()
        assert report.requested == [] and report.complete
        assert len(ghdouble.requests_to("GET", LISTED)) == listed_before + 1
    finally:
        await reopened.close()


async def test_a_guid_that_keeps_failing_is_asked_for_three_times_in_all(
    tmp_path: Path, ghdouble: GitHubDouble, session: Any
) -> None:
    clock = FakeClock(ghdouble.now())
    store = SqliteStore(tmp_path / "clocked.sqlite3", clock=clock)
    await store.open()
    guid = failed_delivery(ghdouble, 1)  # the App keeps failing it: redeliveries fail too
    sweeper = recovery_for(ghdouble, store, session=session, clock=clock)
    counts = []
    try:
        for _ in range(6):
            report = await sweeper.sweep()
            await ghdouble.hooks.settle()
            counts.append(len(report.requested))
            clock.advance(3600)  # past the cooldown
    finally:
        await store.close()
    assert counts == [1, 1, 1, 0, 0, 0]
    assert ("recovery_sweep",) in await _stages_of(tmp_path / "clocked.sqlite3")
    assert len(ghdouble.hooks.redeliveries_of(guid)) == 3
    assert report.given_up and report.given_up[0].guid == guid


# -- bad input and faults -----------------------------------------------------------------------


async def _stages_of(path: Path) -> list[tuple[str]]:
    store = SqliteStore(path)
    await store.open()
    try:
        rows = await store.execute(
            "SELECT stage FROM audit_events WHERE message LIKE '%not asked again%'"
        )
        return [(str(row[0]),) for row in rows]
    finally:
        await store.close()


async def test_malformed_entries_are_skipped_and_said(
    ghdouble: GitHubDouble,
    store: SqliteStore,
    session: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = failed_delivery(ghdouble, 1)
    entries = [
        {"id": 1, "status": "Invalid HTTP Response: 503", "status_code": 503},  # no guid
        {"id": 2, "guid": "g", "delivered_at": "yesterday", "status": "x", "status_code": 1},
        "not an object",
        {
            "id": ghdouble.hooks.deliveries[good].attempts[0].id,
            "guid": good,
            "delivered_at": "2099-01-01T00:00:00Z",  # a clock far off: GitHub's, in the future
            "status": "Invalid HTTP Response: 503",
            "status_code": 503,
            "redelivery": False,
            "event": "pull_request",
            "brand_new_field": {"nested": True},
        },
    ]
    ghdouble.faults.add("GET", LISTED, Respond(200, entries))
    with caplog.at_level(logging.WARNING):
        report = await recovery_for(ghdouble, store, session=session).sweep()
    assert report.malformed == 3 and [c.guid for c in report.requested] == [good]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "has no guid" in messages and "future" in messages
    [(summary,)] = await store.execute(
        "SELECT message FROM audit_events WHERE stage = 'recovery_sweep'"
    )
    assert "3 unreadable entr(ies) skipped" in summary


@pytest.mark.parametrize(
    "fault",
    [ServerError(502), PrimaryRateLimit(reset_in=30), Respond(422, {"message": "nope"})],
    ids=["5xx", "rate-limited", "4xx"],
)
async def test_a_refused_redelivery_is_audited_counted_and_tried_a_later_sweep(
    ghdouble: GitHubDouble, store: SqliteStore, session: Any, fault: Any
) -> None:
    guid = failed_delivery(ghdouble, 1)
    for _ in range(20):  # more than the transport's retries
        ghdouble.faults.add("POST", REDELIVER, fault)
    metrics = Metrics()
    app = GitHubApp(
        app_id=ghdouble.app_id,
        private_key=ghdouble.private_key,
        session=session,
        api_url=ghdouble.api_url,
        sleep=_no_sleep,
    )
    report = await Recovery(app, store, SWEEP, metrics=metrics).sweep()
    assert [c.guid for c, _ in report.failed] == [guid] and not report.complete
    assert await store.recovery_mark() is None
    rows = await store.execute(
        "SELECT stage, delivery_id FROM audit_events WHERE job_id IS NULL ORDER BY id"
    )
    assert rows == [("redelivery_failed", guid), ("recovery_sweep", None)]
    text = metrics.render().decode()
    assert 'release_guard_redeliveries_total{outcome="failed"} 1.0' in text
    assert 'release_guard_recovery_sweeps_total{outcome="partial"} 1.0' in text


async def _no_sleep(seconds: float) -> None:
    return None


async def test_a_refused_jwt_fails_the_sweep_without_a_crash(
    ghdouble: GitHubDouble, store: SqliteStore, session: Any
) -> None:
    failed_delivery(ghdouble, 1)
    metrics = Metrics()
    sweeper = recovery_for(ghdouble, store, session=session, metrics=metrics)
    ghdouble.app_id += 1  # GitHub no longer knows the App the JWT names
    report = await sweeper.sweep()
    assert report.error is not None and "credentials" in report.error
    assert ghdouble.requests_to("POST", REDELIVER) == []
    rows = await store.execute("SELECT stage FROM audit_events WHERE job_id IS NULL")
    assert rows == [("recovery_failed",)]
    assert 'release_guard_recovery_sweeps_total{outcome="failed"} 1.0' in metrics.render().decode()


async def test_a_list_that_keeps_growing_is_read_to_a_bound(
    ghdouble: GitHubDouble, store: SqliteStore, session: Any
) -> None:
    for n in range(30):
        failed_delivery(ghdouble, n)
    original = ghdouble.hooks.attempts

    class Growing(list[Any]):
        """Every time the double sorts the attempts for a page, 150 new failures appear."""

        def __iter__(self) -> Any:
            for n in range(150):
                stored = ghdouble.hooks.store("pull_request", payload(10_000 + len(self) + n))
                ghdouble.hooks.record_attempt(stored, status_code=503)  # appended to self
            return list.__iter__(self)

    ghdouble.hooks.attempts = Growing(original)
    options = RecoveryOptions(interval=None, max_seen=100, max_redeliveries=10)
    report = await recovery_for(ghdouble, store, options, session=session).sweep()
    assert report.seen == 100 and not report.complete
    assert len(report.requested) == 10 and report.deferred == 90
    asked = [c.guid for c in report.requested]
    assert len(asked) == len(set(asked))  # never twice the same GUID in a sweep


async def test_dry_run_changes_nothing(
    ghdouble: GitHubDouble, store: SqliteStore, session: Any
) -> None:
    guids = {failed_delivery(ghdouble, n) for n in range(3)}
    report = await recovery_for(ghdouble, store, session=session).sweep(dry_run=True)
    assert {c.guid for c in report.candidates} == guids
    assert ghdouble.requests_to("POST", REDELIVER) == []
    assert await store.recovery_mark() is None
    assert await store.redeliveries(guids) == {}
    assert await store.execute("SELECT count(*) FROM audit_events") == [(0,)]


async def test_a_page_that_is_not_a_list_is_bounded_work_and_a_few_log_lines(
    ghdouble: GitHubDouble,
    store: SqliteStore,
    session: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ghdouble.faults.add("GET", LISTED, Respond(200, {"unexpected": "shape", "n": [1] * 50}))
    with caplog.at_level(logging.WARNING):
        report = await recovery_for(ghdouble, store, session=session).sweep()
    assert report.requested == [] and report.malformed == report.seen == 2
    skipped = [r for r in caplog.records if "skipped a listed delivery" in r.getMessage()]
    assert len(skipped) == 2
    ghdouble.faults.add("GET", LISTED, Respond(200, [{"id": n} for n in range(1, 40)]))
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        report = await recovery_for(ghdouble, store, session=session).sweep()
    assert report.malformed == 39 and report.requested == []
    skipped = [r for r in caplog.records if "skipped a listed delivery" in r.getMessage()]
    assert len(skipped) == 5  # the rest are counted in the sweep's audit line


async def test_the_sweep_is_off_when_asked() -> None:
    assert parse_interval("off") is None and parse_interval("0") is None
    assert parse_interval(None) == 300.0 and parse_interval("60") == 60.0
    for bad in ("5", "soon", "-1", "100000"):
        with pytest.raises(SettingsError, match="RECOVERY_INTERVAL"):
            parse_interval(bad)
    assert RecoveryOptions.from_environment({"RECOVERY_INTERVAL": "off"}).interval is None


async def test_a_failed_sweep_leaves_readyz_alone(
    tmp_path: Path, ghdouble: GitHubDouble, running: list[Running]
) -> None:
    settings = settings_for(tmp_path, ghdouble)
    ghdouble.faults.add("GET", LISTED, Respond(403, {"message": "Forbidden"}))
    server = Running(settings, SWEEP)
    running.append(server)
    await wait_until(lambda: _metric(settings, 'sweeps_total{outcome="failed"} 1.0'))
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"http://127.0.0.1:{settings.port}/readyz") as ready,
    ):
        assert ready.status == 200
    assert not server.task.done()


async def _metric(settings: Settings, text: str) -> bool:
    try:
        async with (
            aiohttp.ClientSession() as client,
            client.get(f"http://127.0.0.1:{settings.port}/metrics") as response,
        ):
            return text in await response.text()
    except aiohttp.ClientError:
        return False


# -- PostgreSQL: several processes, one sweeper ---------------------------------------------------


async def test_two_processes_on_postgresql_never_both_redeliver_a_guid(
    ghdouble: GitHubDouble, pg_url: str, session: Any
) -> None:
    guids = {failed_delivery(ghdouble, n) for n in range(5)}
    # Two stores, two connection pools: two processes as far as PostgreSQL can tell.
    stores = [PostgresStore(pg_url), PostgresStore(pg_url)]
    for store in stores:
        await store.open()
    try:
        sweepers = [
            Recovery(
                GitHubApp(
                    app_id=ghdouble.app_id,
                    private_key=ghdouble.private_key,
                    session=session,
                    api_url=ghdouble.api_url,
                ),
                store,
                SWEEP,
                owner=f"process-{n}",
            )
            for n, store in enumerate(stores)
        ]
        # The first listing is slow: both sweep at once, one holds the lock meanwhile.
        ghdouble.faults.add("GET", LISTED, Slow(0.5))
        together = await asyncio.gather(*(s.sweep() for s in sweepers))
        assert sorted(r.outcome for r in together) == ["complete", "skipped"]
        # Then one after the other: the second finds them asked for a moment ago.
        after = [await s.sweep() for s in reversed(sweepers)]
    finally:
        for store in stores:
            await store.close()
    asked = [c.guid for r in (*together, *after) for c in r.requested]
    assert sorted(asked) == sorted(guids)
    assert len(ghdouble.requests_to("POST", REDELIVER)) == 5


async def test_deliveries_answered_503_in_a_database_outage_are_recovered_after_it(
    tmp_path: Path, ghdouble: GitHubDouble, pg_url: str, running: list[Running], session: Any
) -> None:
    settings = settings_for(tmp_path, ghdouble, database=PostgresDatabase(Secret(pg_url)))
    point_hook(ghdouble, settings)
    server = Running(settings, None)
    running.append(server)
    await wait_until(lambda: _listening(settings))
    admin = PostgresStore(pg_url)
    await admin.open()
    try:
        # The outage: the database refuses the App's writes, so deliveries get 503.
        await admin.execute("ALTER TABLE deliveries RENAME TO deliveries_away")
        lost = [await ghdouble.hooks.deliver("pull_request", payload(n)) for n in (1, 2)]
        assert [a.status_code for a in lost] == [503, 503]
        assert all(a.status == "Invalid HTTP Response: 503" for a in lost)
        await admin.execute("ALTER TABLE deliveries_away RENAME TO deliveries")
        # After it, a sweep (from any process) asks for them again; the App processes them.
        report = await recovery_for(ghdouble, admin, session=session).sweep()
        assert sorted(c.guid for c in report.requested) == sorted(a.guid for a in lost)
        await ghdouble.hooks.settle()
        await wait_until(lambda: len(server.handler.runs) == 2, timeout=20)
        for attempt in lost:
            (again,) = ghdouble.hooks.redeliveries_of(attempt.guid)
            assert again.status_code == 202
        assert await admin.recorded_deliveries([a.guid for a in lost]) == {a.guid for a in lost}
    finally:
        await admin.close()


async def test_the_double_serves_deliveries_to_the_apps_jwt_only(
    ghdouble: GitHubDouble, github_app: GitHubApp
) -> None:
    repo = ghdouble.add_repo()
    failed_delivery(ghdouble, 1)
    gh = await github_app.installation(repo.installation_id)
    for method, path in (("GET", LISTED), ("POST", "/app/hook/deliveries/1000001/attempts")):
        with pytest.raises(AuthenticationFailed):
            await (gh.getitem(path) if method == "GET" else gh.post(path, data=b""))
    [listed] = await github_app.as_app().getitem(LISTED)
    attempt = await github_app.as_app().getitem(f"{LISTED}/{listed['id']}")
    assert attempt["guid"] == listed["guid"] and attempt["request"]["payload"]["number"] == 1
    with pytest.raises(NotFound):
        await github_app.as_app().post(f"{LISTED}/999/attempts", data=b"")


@pytest.mark.parametrize("skew", [10 * 86_400.0, -10 * 86_400.0], ids=["ahead", "behind"])
async def test_a_clock_far_off_neither_hides_deliveries_nor_reads_without_end(
    ghdouble: GitHubDouble, store: SqliteStore, session: Any, skew: float
) -> None:
    """The window is measured from GitHub's newest attempt when our clock is ahead of it,
    and a clock behind only widens it: the failed delivery is found either way."""
    guid = failed_delivery(ghdouble, 1)
    clock = FakeClock(ghdouble.now() + skew)
    report = await recovery_for(ghdouble, store, session=session, clock=clock).sweep()
    assert [c.guid for c in report.requested] == [guid] and report.complete
