"""`serve` and `worker`: settings checks, the handler seam, --no-worker, a clean stop."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.app.serve import build_handler, serve, work
from bot.app.worker import WorkerOptions
from bot.cli.main import main
from bot.events import JobKind
from bot.handlers.pull_requests import PullRequestChecks
from bot.jobs import HandlerByKind, JobHandler
from bot.secrets import PrivateKey, Secret
from bot.settings import Settings, SettingsError
from bot.store import JobState, SqliteStore
from tests.apphelpers import (
    RecordingHandler,
    delivery,
    new_secret,
    pull_request_payload,
    spec,
    wait_until,
    webhook_headers,
)

FAST = WorkerOptions(poll_interval=0.05)


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return PrivateKey(pem)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def app_settings(tmp_path: Path, key: PrivateKey, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "app_id": 1,
        "private_key": key,
        "webhook_secret": Secret(new_secret()),
        "host": "127.0.0.1",
        "port": free_port(),
        # Never GitHub itself: a job that gets as far as calling it finds nothing listening.
        "github_api_url": "http://127.0.0.1:9",
    }
    values.update(changes)
    return Settings.for_data_dir(tmp_path, **values)


async def send(settings: Settings, payload: dict[str, Any], host: str = "127.0.0.1") -> int:
    body = json.dumps(payload).encode()
    secret = settings.webhook_secret.reveal() if settings.webhook_secret else None
    url = f"http://{host}:{settings.port}{settings.webhook_path}"
    async with aiohttp.ClientSession() as session:
        for _ in range(200):  # until the server listens
            try:
                async with session.post(
                    url, data=body, headers=webhook_headers(secret, body, "pull_request")
                ) as response:
                    return response.status
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
    raise AssertionError("the server never listened")


async def job_states(settings: Settings) -> list[JobState]:
    store = SqliteStore(settings.data_dir / "release-guard.sqlite3")
    await store.open()
    try:
        return [job.state for job in await store.list_jobs()]
    finally:
        await store.close()


@pytest.mark.asyncio
async def test_serve_receives_runs_and_stops(tmp_path: Path, key: PrivateKey) -> None:
    settings = app_settings(tmp_path, key)
    handler = RecordingHandler()
    stop = asyncio.Event()
    running = asyncio.create_task(
        serve(settings, handler_factory=lambda s, session: handler, options=FAST, stop=stop)
    )
    assert await send(settings, pull_request_payload()) == 202
    await wait_until(lambda: len(handler.runs) == 1)
    await wait_until(lambda: _done(settings))
    stop.set()
    await asyncio.wait_for(running, 10)


async def _done(settings: Settings) -> bool:
    return await job_states(settings) == [JobState.DONE]


@pytest.mark.asyncio
async def test_no_worker_only_records(tmp_path: Path, key: PrivateKey) -> None:
    settings = app_settings(tmp_path, key)
    handler = RecordingHandler()
    stop = asyncio.Event()
    running = asyncio.create_task(
        serve(settings, handler_factory=lambda s, session: handler, with_worker=False, stop=stop)
    )
    assert await send(settings, pull_request_payload()) == 202
    stop.set()
    await asyncio.wait_for(running, 10)
    assert handler.runs == []
    assert await job_states(settings) == [JobState.QUEUED]


@pytest.mark.asyncio
async def test_worker_runs_what_serve_recorded(tmp_path: Path, key: PrivateKey) -> None:
    settings = app_settings(tmp_path, key)
    store = SqliteStore(settings.data_dir / "release-guard.sqlite3")
    await store.open()
    await store.record_delivery(delivery(), [spec()])
    await store.close()
    handler = RecordingHandler()
    stop = asyncio.Event()
    running = asyncio.create_task(
        work(settings, handler_factory=lambda s, session: handler, options=FAST, stop=stop)
    )
    await wait_until(lambda: _done(settings))
    stop.set()
    await asyncio.wait_for(running, 10)


@pytest.mark.asyncio
async def test_the_default_handler_runs_pull_request_checks(
    key: PrivateKey, tmp_path: Path
) -> None:
    settings = app_settings(tmp_path, key)
    async with aiohttp.ClientSession() as session:
        handler = build_handler(settings, session)
        assert isinstance(handler, HandlerByKind)
        for kind in (JobKind.CHECK, JobKind.WORKFLOW_RUN):
            assert isinstance(handler.handler_for(kind), PullRequestChecks)


@pytest.mark.asyncio
async def test_without_credentials_no_job_kind_has_a_handler(tmp_path: Path) -> None:
    settings = Settings.for_data_dir(tmp_path / "data")
    async with aiohttp.ClientSession() as session:
        handler = build_handler(settings, session)
        assert isinstance(handler, HandlerByKind)
        assert handler.handler_for(JobKind.CHECK) is None


async def _failed(store: SqliteStore) -> bool:
    jobs = await store.list_jobs()
    return bool(jobs) and jobs[0].state is JobState.FAILED


@pytest.mark.asyncio
async def test_a_local_demo_listens_on_loopback_only(
    tmp_path: Path, key: PrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    settings = app_settings(tmp_path, key, webhook_secret=None, host="0.0.0.0")
    stop = asyncio.Event()
    with caplog.at_level(logging.INFO):
        running = asyncio.create_task(
            serve(
                settings,
                handler_factory=lambda s, session: RecordingHandler(),
                local_demo=True,
                options=FAST,
                stop=stop,
            )
        )
        assert await send(settings, pull_request_payload()) == 202  # unsigned
        stop.set()
        await asyncio.wait_for(running, 10)
    listening = [r.getMessage() for r in caplog.records if r.getMessage().startswith("listening")]
    assert listening == [f"listening on http://127.0.0.1:{settings.port}/api/github/webhooks"]
    with pytest.raises(SettingsError, match="loopback only"):
        await serve(
            app_settings(tmp_path, key, webhook_secret=None), host="192.0.2.1", local_demo=True
        )


@pytest.mark.asyncio
async def test_a_busy_port_is_a_clear_error(tmp_path: Path, key: PrivateKey) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SettingsError, match=f"cannot listen on 127.0.0.1:{port}"):
            await serve(app_settings(tmp_path, key, port=port), options=FAST)


def test_build_handler_is_the_seam(tmp_path: Path, key: PrivateKey) -> None:
    async def make() -> JobHandler:
        async with aiohttp.ClientSession() as session:
            return build_handler(app_settings(tmp_path, key), session)

    handler = asyncio.run(make())
    assert hasattr(handler, "run") and hasattr(handler, "give_up")


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in (
        "APP_ID",
        "PRIVATE_KEY",
        "PRIVATE_KEY_PATH",
        "WEBHOOK_SECRET",
        "DATABASE_URL",
        "DATA_DIR",
        "HOST",
        "PORT",
        "LOG_FORMAT",
        "LOG_LEVEL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    root = logging.getLogger()
    handlers = list(root.handlers)
    yield tmp_path
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)


def test_serve_without_app_id_or_app_yml_explains_registration(
    clean_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # With an app.yml, serve shows the setup page instead (tests/test_setup_page.py).
    monkeypatch.setattr("bot.app.setup_page.find_manifest", lambda cwd: None)
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "APP_ID is not set" in err and "settings/apps/new" in err and "app.yml" in err


def test_serve_without_webhook_secret_refuses(
    clean_env: Path,
    capsys: pytest.CaptureFixture[str],
    key: PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_ID", "5")
    monkeypatch.setenv("PRIVATE_KEY", key.reveal().decode())
    assert main(["serve", "--port", "0"]) == 2
    assert "--local-demo" in capsys.readouterr().err


def test_worker_without_app_id_is_exit_2(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["worker"]) == 2
    assert "APP_ID is not set" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "x"],
        ["serve", "--concurrency", "0"],
        ["worker", "--concurrency", "65"],
        ["worker", "--stalled-after", "1"],
        ["serve", "--stalled-after", "soon"],
    ],
)
def test_serve_usage_errors(args: list[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(args)
    assert caught.value.code == 2


def test_migrate_creates_the_sqlite_schema_and_says_so(
    clean_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATA_DIR", str(clean_env / "data"))
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0  # nothing to do the second time
    assert (clean_env / "data" / "release-guard.sqlite3").is_file()
    assert (
        capsys.readouterr().out.splitlines() == ["the SQLite database's schema is up to date"] * 2
    )


def test_migrate_on_postgresql_installs_the_queue_too(
    clean_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    pg_schema_url: str,
) -> None:
    monkeypatch.setenv("DATABASE_URL", pg_schema_url)
    assert main(["migrate"]) == 0
    assert main(["migrate"]) == 0
    assert (
        capsys.readouterr().out.splitlines()
        == ["the PostgreSQL database's schema is up to date"] * 2
    )
    import psycopg

    with psycopg.connect(pg_schema_url) as conn:
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = current_schema()"
            )
        }
    assert {"deliveries", "jobs", "audit_events", "procrastinate_jobs", "queue_schema"} <= tables
    assert not (clean_env / "data").exists()  # nothing of SQLite was created


def test_an_unreachable_postgresql_is_a_clear_error_without_the_password(
    clean_env: Path,
    capsys: pytest.CaptureFixture[str],
    key: PrivateKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_ID", "5")
    monkeypatch.setenv("PRIVATE_KEY", key.reveal().decode())
    monkeypatch.setenv("DATABASE_URL", "postgresql://rg:s3cr3t-pw@127.0.0.1:1/rg?connect_timeout=2")
    assert main(["worker"]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("release-guard: ") and "127.0.0.1:1" in last
    assert "s3cr3t-pw" not in err and "Traceback" not in err
