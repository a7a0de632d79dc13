"""Run the App: `release-guard serve` (webhooks, with an embedded worker) and `worker` (jobs only).

Both run until SIGTERM or SIGINT, then stop taking work, let running jobs finish (bounded by
the drain timeout) and exit 0. `serve` keeps answering webhooks while its jobs drain: GitHub
does not retry a delivery that finds no server, and what is recorded then simply waits in the
queue for the next worker. Which code runs a job is decided by `build_handler`; `serve()`
and `work()` take the factory as a parameter so tests can run the real process with a handler
of their own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any

import aiohttp
from aiohttp import web

from bot import __version__
from bot.app.backend import Backend, JobWorker
from bot.app.recovery import RecoveryOptions, build_recovery, recovery_chores
from bot.app.setup_page import CREDENTIAL_KEYS, run_setup
from bot.app.web import WebLimits, make_app
from bot.app.worker import WorkerOptions
from bot.commit_locks import CommitLocks
from bot.events import JobKind
from bot.github import GitHubApp, RateLimitGate, RateLimitTracker
from bot.handlers.comments import RescanCommands, RescanLedger
from bot.handlers.deployments import DeploymentGates
from bot.handlers.pull_requests import PullRequestChecks
from bot.handlers.releases import ReleaseChecks
from bot.jobs import HandlerByKind, JobHandler
from bot.ops.logs import configure_logging
from bot.ops.metrics import Metrics
from bot.retention import Retainer, build_retainer
from bot.retention.maintenance import retention_chores
from bot.settings import Settings, SettingsError, is_loopback
from bot.store import Store, StoreError
from bot.store.base import RetentionIndex, ScanLedger

log = logging.getLogger(__name__)

HandlerFactory = Callable[[Settings, aiohttp.ClientSession], JobHandler]
EXIT_OK = 0
EXIT_USAGE = 2


def build_handler(
    settings: Settings,
    session: aiohttp.ClientSession,
    *,
    metrics: Metrics | None = None,
    retainer: Retainer | None = None,
    rate_limit_gate: RateLimitGate | None = None,
    rescan_ledger: RescanLedger | None = None,
    commit_locks: CommitLocks | None = None,
    scan_ledger: ScanLedger | None = None,
) -> JobHandler:
    """Return the handler that runs the App's jobs, one handler per job kind.

    `session` is the process's HTTP client session (closed on shutdown). A kind that has no
    handler here fails explicitly, with "cannot run … jobs yet" in its audit trail. With
    `metrics`, every request to GitHub, retry and rate limit seen is counted there; with
    `retainer`, failing artifacts are kept for investigation. `rate_limit_gate` shares
    GitHub's rate limits with the other processes, `rescan_ledger` finished rescans and
    `commit_locks` the commits being worked on (default for all three: within this process).
    `scan_ledger` keeps verdicts and what each commit's check run covers, so that every
    artifact is downloaded and scanned once and no check run repeats another (None: every
    job scans what it finds).
    """
    if settings.app_id is None or settings.private_key is None:
        # serve and worker refuse to start without them (Settings.require_app); a handler
        # built anyway fails every job explicitly instead of guessing credentials.
        return HandlerByKind({})
    app = GitHubApp(
        app_id=settings.app_id,
        private_key=settings.private_key,
        session=session,
        api_url=settings.github_api_url,
        requester=f"release-guard/{__version__}",
        rate_limits=RateLimitTracker(on_update=metrics.rate_limit) if metrics else None,
        observer=metrics,
        rate_limit_gate=rate_limit_gate,
    )
    checks = PullRequestChecks(app, retainer=retainer, ledger=scan_ledger)
    return HandlerByKind(
        {
            JobKind.CHECK: checks,
            JobKind.WORKFLOW_RUN: checks,
            JobKind.RELEASE: ReleaseChecks(app, retainer=retainer, ledger=scan_ledger),
            JobKind.DEPLOYMENT_GATE: DeploymentGates(app, retainer=retainer, ledger=scan_ledger),
            # Rescans run the pull-request check itself, through the same handler.
            JobKind.COMMENT_COMMAND: RescanCommands(
                app, checks, ledger=rescan_ledger, locks=commit_locks
            ),
        }
    )


def _make_handler(
    factory: HandlerFactory,
    settings: Settings,
    session: aiohttp.ClientSession,
    metrics: Metrics,
    retainer: Retainer | None = None,
    backend: Backend | None = None,
) -> JobHandler:
    """Build the job handler; the default factory also counts its GitHub calls in `metrics`,
    keeps failing artifacts through `retainer` and shares rate limits through `backend`."""
    if factory is build_handler:
        return build_handler(
            settings,
            session,
            metrics=metrics,
            retainer=retainer,
            rate_limit_gate=backend.rate_limit_gate() if backend is not None else None,
            rescan_ledger=backend.store if backend is not None else None,
            commit_locks=backend.commit_locks() if backend is not None else None,
            scan_ledger=_scan_ledger(backend),
        )
    return factory(settings, session)


def _scan_ledger(backend: Backend | None) -> ScanLedger | None:
    store = backend.store if backend is not None else None
    return store if isinstance(store, ScanLedger) else None


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for sig in signals:
        loop.add_signal_handler(sig, _stop_requested, stop, sig)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _stop_requested(stop: asyncio.Event, sig: signal.Signals) -> None:
    if not stop.is_set():
        log.info("%s received: stopping", sig.name)
    stop.set()


def _demo_host(host: str) -> str:
    """Keep an unsigned local demo off the network: wildcard becomes loopback, others refused."""
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    if not is_loopback(host):
        raise SettingsError(
            f"a local demo without WEBHOOK_SECRET listens on loopback only, not on {host}"
        )
    return host


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        headers={"User-Agent": f"release-guard/{__version__}"},
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=60),
    )


async def _run_worker_until(stop: asyncio.Event, worker: JobWorker | None) -> None:
    """Wait for `stop`; a worker that ends by itself before that is a fatal error."""
    stopped = asyncio.create_task(stop.wait())
    waits: set[asyncio.Task[Any]] = {stopped}
    worker_task = asyncio.create_task(worker.run()) if worker is not None else None
    if worker_task is not None:
        waits.add(worker_task)
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if worker is not None and worker_task is not None:
        if worker_task.done():
            worker_task.result()  # raises what killed it
            raise RuntimeError("the worker stopped by itself")
        worker.stop()
        await worker_task


async def _run_with_chores(
    settings: Settings,
    session: aiohttp.ClientSession,
    backend: Backend,
    metrics: Metrics,
    retainer: Retainer | None,
    recovery: RecoveryOptions | None,
    stop: asyncio.Event,
    worker: JobWorker | None,
) -> None:
    """Run the worker (if any) until `stop`, with the retention and delivery-recovery chores."""
    sweeper = build_recovery(
        settings,
        session,
        backend.store,
        recovery,
        metrics=metrics,
        rate_limit_gate=backend.rate_limit_gate(),
    )
    with _stop_on_signals(stop):
        async with (
            retention_chores(
                retainer,
                gc_interval=backend.gc_interval,
                on_gc=lambda gc: metrics.set_retained_bytes(gc.remaining_bytes),
            ),
            recovery_chores(sweeper),
        ):
            await _run_worker_until(stop, worker)


async def serve(
    settings: Settings,
    *,
    handler_factory: HandlerFactory = build_handler,
    host: str | None = None,
    port: int | None = None,
    with_worker: bool = True,
    local_demo: bool = False,
    options: WorkerOptions | None = None,
    stop: asyncio.Event | None = None,
    limits: WebLimits | None = None,
    recovery: RecoveryOptions | None = None,
) -> None:
    """Serve webhooks (and run jobs unless `with_worker` is False) until `stop` or a signal.

    `limits` (default `WebLimits()`) bounds what unauthenticated clients may cost: header and
    body timeouts, bodies held at once.

    Without APP_ID, first serve the setup page (`bot.app.setup_page`) on the same address until
    the App is registered, then go on with the credentials it saved. With `recovery` (the
    command line reads it from RECOVERY_INTERVAL), failed deliveries are swept for and
    redelivered at start and periodically (`bot.app.recovery`).
    """
    stop = stop or asyncio.Event()
    if settings.app_id is None:
        registered = await _register_app(settings, host=host, port=port, stop=stop)
        if registered is None:
            log.info("stopped")
            return
        settings = registered
    settings.require_app()
    secret = settings.require_webhook_secret(local_demo=local_demo)
    host = settings.host if host is None else host
    port = settings.port if port is None else port
    if secret is None:
        host = _demo_host(host)
        log.warning("local demo: accepting UNSIGNED deliveries on %s", host)
    options = options or WorkerOptions()
    metrics = Metrics()
    backend = Backend(settings, options)
    await backend.open()
    store = backend.store
    metrics.watch_queue(store.pending_jobs)
    if not with_worker and backend.gc_interval is not None:
        log.warning(
            "--no-worker on the embedded SQLite database: jobs wait for a `release-guard "
            "worker` on this machine (several machines need DATABASE_URL=postgresql://…)"
        )
    try:
        retainer = _retainer(settings, store) if with_worker else None
        async with _session() as session:
            worker = (
                backend.worker(
                    _make_handler(handler_factory, settings, session, metrics, retainer, backend),
                    metrics=metrics,
                    retainer=retainer,
                )
                if with_worker
                else None
            )
            app = make_app(
                settings,
                store,
                on_recorded=worker.notify if worker is not None else None,
                allow_unsigned=secret is None,
                metrics=metrics,
                limits=limits,
            )
            runner = web.AppRunner(
                app,
                handle_signals=False,
                shutdown_timeout=10.0,
                **(limits or WebLimits()).server_options(),
            )
            await runner.setup()
            try:
                try:
                    await web.TCPSite(runner, host, port).start()
                except OSError as exc:
                    raise SettingsError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
                _log_listening(runner, settings)
                await _run_with_chores(
                    settings, session, backend, metrics, retainer, recovery, stop, worker
                )
            finally:
                await runner.cleanup()
    finally:
        await backend.close()
    log.info("stopped")


async def _register_app(
    settings: Settings, *, host: str | None, port: int | None, stop: asyncio.Event
) -> Settings | None:
    """Serve the setup page until the App is registered; return settings with its credentials.

    None when stopped first. The credentials are in `.env` by then, for the next start.
    """
    with _stop_on_signals(stop):
        registration = await run_setup(
            settings,
            host=settings.host if host is None else host,
            port=settings.port if port is None else port,
            stop=stop,
        )
    if registration is None:
        return None
    shadowing = [name for name in CREDENTIAL_KEYS if os.environ.get(name)]
    if shadowing:
        log.warning(
            "%s set in the environment win over .env: unset them before the next start, or "
            "the credentials just saved will not be used",
            ", ".join(shadowing),
        )
    log.info(
        "the GitHub App is registered: now serving webhooks (install it at %s)",
        registration.install_url,
    )
    return replace(
        settings,
        app_id=registration.app_id,
        private_key=registration.private_key,
        webhook_secret=registration.webhook_secret or settings.webhook_secret,
    )


def _retainer(settings: Settings, store: Store) -> Retainer | None:
    """The Retainer whose pending retries and gc run beside the worker (issue 5).

    None when the database cannot hold the retention index.
    """
    return build_retainer(settings, store) if isinstance(store, RetentionIndex) else None


def _log_listening(runner: web.AppRunner, settings: Settings) -> None:
    for address in runner.addresses:
        host, port = address[0], address[1]
        shown = f"[{host}]" if ":" in host else host
        log.info(
            "listening on http://%s:%d%s",
            shown,
            port,
            settings.webhook_path,
            extra={"host": host, "port": port},
        )


async def work(
    settings: Settings,
    *,
    handler_factory: HandlerFactory = build_handler,
    options: WorkerOptions | None = None,
    stop: asyncio.Event | None = None,
    metrics_host: str = "0.0.0.0",
    metrics_port: int | None = None,
    recovery: RecoveryOptions | None = None,
) -> None:
    """Run jobs only (no webhook server) until `stop` or a signal.

    With `metrics_port`, `/metrics` and `/healthz` are served on `metrics_host:metrics_port`;
    with `recovery`, the sweep for failed deliveries runs here too (one process at a time).
    """
    settings.require_app()
    stop = stop or asyncio.Event()
    metrics = Metrics()
    backend = Backend(settings, options)
    await backend.open()
    metrics.watch_queue(backend.store.pending_jobs)
    try:
        retainer = _retainer(settings, backend.store)
        async with _session() as session, _metrics_server(metrics, metrics_host, metrics_port):
            worker = backend.worker(
                _make_handler(handler_factory, settings, session, metrics, retainer, backend),
                metrics=metrics,
                retainer=retainer,
            )
            await _run_with_chores(
                settings, session, backend, metrics, retainer, recovery, stop, worker
            )
    finally:
        await backend.close()
    log.info("stopped")


@contextlib.asynccontextmanager
async def _metrics_server(metrics: Metrics, host: str, port: int | None) -> AsyncIterator[None]:
    """Serve `/metrics` and `/healthz` for a worker process (nothing when `port` is None)."""
    if port is None:
        yield
        return

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics.handle)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=2.0,
        **WebLimits().server_options(),  # the same header timeout as `serve`
    )
    await runner.setup()
    try:
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            raise SettingsError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
        log.info("worker metrics on http://%s:%d/metrics", host, port)
        yield
    finally:
        await runner.cleanup()


# -- the command line -----------------------------------------------------------------------


def _concurrency(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise argparse.ArgumentTypeError("expected a number of jobs from 1 to 64")
    return int(value)


def _port(value: str) -> int:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError("expected a port number from 0 to 65535")
    return int(value)


def add_serve_commands(commands: Any) -> None:
    """Add `serve` and `worker` to the CLI's subparsers."""
    serve_cmd = commands.add_parser(
        "serve",
        help="run the GitHub App: receive webhooks and run jobs",
        description=(
            "Receive GitHub webhooks on WEBHOOK_PATH and run the jobs they ask for, until "
            "SIGTERM or SIGINT; then drain running jobs and exit 0. Settings come from the "
            "environment and .env (APP_ID, PRIVATE_KEY_PATH, WEBHOOK_SECRET, ...)."
        ),
    )
    serve_cmd.add_argument("--host", help="listen address (default: HOST, or 0.0.0.0)")
    serve_cmd.add_argument("--port", type=_port, help="listen port (default: PORT, or 3000)")
    serve_cmd.add_argument(
        "--no-worker",
        action="store_true",
        help="only receive webhooks; jobs are run by `release-guard worker` processes",
    )
    serve_cmd.add_argument(
        "--local-demo",
        action="store_true",
        help="allow running without WEBHOOK_SECRET: accepts unsigned deliveries, loopback only",
    )
    _add_worker_options(serve_cmd)
    serve_cmd.set_defaults(handler=run_serve_command, job_handler_factory=build_handler)

    worker_cmd = commands.add_parser(
        "worker",
        help="run jobs only, beside `serve --no-worker` (scale-out)",
        description=(
            "Run queued jobs from the shared database until SIGTERM or SIGINT, then drain and "
            "exit 0. With the embedded SQLite database, workers must run on the same machine."
        ),
    )
    _add_worker_options(worker_cmd)
    worker_cmd.add_argument(
        "--metrics-port",
        type=_port,
        metavar="P",
        help="serve /metrics and /healthz on port P (HOST's address); default: not served",
    )
    worker_cmd.set_defaults(handler=run_worker_command, job_handler_factory=build_handler)

    migrate_cmd = commands.add_parser(
        "migrate",
        help="create or upgrade the database schema (the job queue's too), then exit",
        description=(
            "Create or upgrade the schema of the database DATABASE_URL names (SQLite under "
            "DATA_DIR by default), including the job queue's on PostgreSQL, and exit. "
            "`serve` and `worker` do the same at start, safely when several start at once; "
            "run this as a release step to upgrade before any of them starts."
        ),
    )
    migrate_cmd.set_defaults(handler=run_migrate_command)


def _add_worker_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=_concurrency,
        default=WorkerOptions().concurrency,
        metavar="N",
        help="jobs run at once (default: %(default)s)",
    )
    parser.add_argument(
        "--stalled-after",
        type=_seconds,
        default=WorkerOptions().stalled_after,
        metavar="S",
        help=(
            "PostgreSQL only: a worker silent (no heartbeat) for S seconds is taken for dead "
            "and its running jobs go to another worker (default: %(default)s)"
        ),
    )


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 3 <= seconds <= 3600:
        raise argparse.ArgumentTypeError("expected a number of seconds from 3 to 3600")
    return seconds


def _worker_options(args: argparse.Namespace) -> WorkerOptions:
    return WorkerOptions(concurrency=args.concurrency, stalled_after=args.stalled_after)


def _settings_and_logging() -> Settings:
    settings = Settings.from_environment()
    configure_logging(
        level=settings.log_level, fmt=settings.log_format, secrets=settings.secret_values()
    )
    return settings


def run_serve_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings_and_logging()
        asyncio.run(
            serve(
                settings,
                handler_factory=args.job_handler_factory,
                host=args.host,
                port=args.port,
                with_worker=not args.no_worker,
                local_demo=args.local_demo,
                options=_worker_options(args),
                recovery=RecoveryOptions.from_environment(),
            )
        )
    except (SettingsError, StoreError) as exc:
        print(f"release-guard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def run_worker_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings_and_logging()
        asyncio.run(
            work(
                settings,
                handler_factory=args.job_handler_factory,
                options=_worker_options(args),
                metrics_host=settings.host,
                metrics_port=getattr(args, "metrics_port", None),
                recovery=RecoveryOptions.from_environment(),
            )
        )
    except (SettingsError, StoreError) as exc:
        print(f"release-guard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


async def migrate(settings: Settings) -> str:
    """Create or upgrade the schema DATABASE_URL names; return what was done, in words."""
    backend = Backend(settings)
    await backend.open()
    await backend.close()
    return f"the {backend.name} database's schema is up to date"


def run_migrate_command(args: argparse.Namespace) -> int:
    try:
        settings = _settings_and_logging()
        print(asyncio.run(migrate(settings)))
    except (SettingsError, StoreError) as exc:
        print(f"release-guard: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
