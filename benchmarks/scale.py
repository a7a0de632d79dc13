"""Scale-out throughput and latency: `serve --no-worker` and `worker` processes on PostgreSQL.

    .venv/bin/python benchmarks/scale.py
    .venv/bin/python benchmarks/scale.py --jobs 40 --size-mib 5 --rate 2 --latency-count 30
    .venv/bin/python benchmarks/scale.py --json /tmp/scale.json

Every App process is the real command line (`python -m bot serve --no-worker`, `python -m bot
worker --concurrency N`) with DATABASE_URL naming a schema of its own (created here, dropped at
the end, also on an error or Ctrl-C) on the PostgreSQL server `--database-url` or
RELEASE_GUARD_TEST_POSTGRES_URL names. The GitHub double (bot/double) runs in this process on
loopback, so its CPU (serving the artifact downloads) is on the same machine as the workers.
Each delivery is GitHub's published `pull_request.opened` example pointed at its own commit,
whose workflow run uploaded the same Actions artifact (benchmarks/pipeline.py's
`artifact_bytes()`: a zip holding an npm tarball whose source map embeds its sources).

What is measured:

1. Throughput, with ONE and then with TWO worker processes, each run on a fresh schema: all
   `--jobs` deliveries are posted to the web process first (each answered 202, so every job
   is queued), then the workers are started. The clock starts at the first worker's
   "worker ... started" log line (its own timestamp, so Python start-up and the schema check
   are left out) and stops when the double holds the last completed check run: a pure worker
   figure, jobs per second. The time from spawning the workers is reported beside it.
2. Latency at a fixed load: on the two-worker run's processes and schema (warm: imports done,
   installation tokens cached), `--latency-count` deliveries are posted at `--rate` per
   second, each on its own schedule whatever the earlier ones do; for each, the time from
   just before its POST to the double holding its completed check run. The worker logs
   (whose records carry the delivery id) split it into the web's answer, the wait in the
   queue and the job's run.
3. The floor, in the same run: scanning the same artifact with the engine alone, in this
   process (`bot.engine.scan.scan_path`: no GitHub, no queue, no database), best of five as
   benchmarks/pipeline.py does. Per-job time (1 / jobs per second, the wall-clock cost of a
   job at that throughput) and the latencies are printed as multiples of it.

Beside the figures, to show where the time goes: each stage's mean time per job (from the
workers' JSON logs), the GitHub requests per job the double received, and the CPU seconds per
job of the workers, this process (the double and the benchmark's own polling), the web,
PostgreSQL (every backend on the machine) and anything else (from /proc, on Linux). How busy
the cores were just before the run is printed too: other work on the machine skews every
figure. A job that is retried or fails, or a process that exits, stops the run with the
reason; commits are spread over repositories of their own installations, REPO_JOBS each, so
the double's 5,000 requests an hour per installation are not reached.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.pipeline import MIB, artifact_bytes, percentile  # noqa: E402
from bot.app.worker import WorkerOptions  # noqa: E402
from bot.double.helpers import make_keypair  # noqa: E402
from bot.double.server import GitHubDouble  # noqa: E402
from bot.double.state import Repository  # noqa: E402
from bot.engine.policy import Policy  # noqa: E402
from bot.engine.scan import scan_path  # noqa: E402
from tests.apphelpers import new_secret, webhook_headers  # noqa: E402
from tests.pgtest import with_schema  # noqa: E402
from tests.processes import App, base_environment  # noqa: E402
from tests.test_app_flow import published_pull_request  # noqa: E402

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
WEBHOOK_PATH = "/api/github/webhooks"
FLOOR_RUNS = 5
BUSY_WARNING = 0.25  # cores busy before the run above which the figures are flagged
POLL = 0.005  # how often the double's check runs are looked at (seconds)
# Commits per repository (each of its own installation): the double keeps GitHub's 5,000 API
# requests an hour per installation, and a job makes about 30.
REPO_JOBS = 100
JOB_STARTED = re.compile(r"job \d+ started")
JOB_DONE = re.compile(r"job \d+ done")


class Interrupted(Exception):
    """An App process stopped on Ctrl-C (sent to the whole process group) before this one."""


# -- processes and schemas -------------------------------------------------------------------


@dataclass
class Cleanup:
    """What must be undone whatever happens: processes to stop and schemas to drop."""

    server_url: str
    apps: list[App] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)

    def new_schema(self) -> str:
        """Create a fresh schema and return a DATABASE_URL whose connections use it."""
        schema = f"rg_bench_{secrets.token_hex(6)}"
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
        self.schemas.append(schema)
        return with_schema(self.server_url, schema)

    def drop_schemas(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            while self.schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{self.schemas[-1]}" CASCADE')
                self.schemas.pop()

    async def stop(self, apps: list[App] | None = None, grace: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after `grace` s; awaits, so the double keeps serving."""
        chosen = list(self.apps if apps is None else apps)
        for app in chosen:
            if app.process.poll() is None:
                app.process.terminate()
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(a.process.poll() is None for a in chosen):
            await asyncio.sleep(0.05)
        self.kill(chosen)

    def kill(self, apps: list[App] | None = None) -> None:
        for app in list(self.apps if apps is None else apps):
            app.stop()
            if app in self.apps:
                self.apps.remove(app)


@dataclass
class Deployment:
    """One schema with its web process and worker processes, all on the same double."""

    cleanup: Cleanup
    workdir: Path
    env: dict[str, str]
    concurrency: int
    web: App | None = None
    workers: list[App] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.env = {**self.env, "DATABASE_URL": self.cleanup.new_schema()}
        self.workdir.mkdir()

    def _start(self, name: str, args: list[str]) -> App:
        data_dir = self.workdir / name
        app = App(self.workdir, {**self.env, "DATA_DIR": str(data_dir)}, name, args, launcher=None)
        self.cleanup.apps.append(app)
        return app

    async def start_web(self) -> None:
        self.web = self._start(
            "web", ["serve", "--no-worker", "--host", "127.0.0.1", "--port", "0"]
        )
        await self.web.started("listening on")

    def spawn_workers(self, count: int) -> list[App]:
        args = ["worker", "--concurrency", str(self.concurrency)]
        self.workers = [self._start(f"worker{n}", args) for n in range(1, count + 1)]
        return self.workers

    @property
    def apps(self) -> list[App]:
        return [a for a in (self.web, *self.workers) if a is not None]

    @property
    def url(self) -> str:
        assert self.web is not None and self.web.port is not None
        return f"http://127.0.0.1:{self.web.port}{WEBHOOK_PATH}"

    async def stop(self) -> None:
        await self.cleanup.stop(self.apps)


# -- the double and the deliveries -----------------------------------------------------------


@dataclass
class Bench:
    """The double, the artifact every run uploads, and when each check run was completed."""

    double: GitHubDouble
    artifact: bytes
    secret: str
    session: aiohttp.ClientSession
    repos: list[Repository] = field(default_factory=list)
    repo_of: dict[str, Repository] = field(default_factory=dict)
    completed_at: dict[str, float] = field(default_factory=dict)
    conclusions: Counter[str] = field(default_factory=Counter)
    read_up_to: dict[Path, int] = field(default_factory=dict)

    def new_records(self, app: App) -> list[dict[str, Any]]:
        """The JSON log records `app` wrote since the last call (whole lines only)."""
        with app.log.open("rb") as log:
            log.seek(self.read_up_to.get(app.log, 0))
            data = log.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.read_up_to[app.log] = self.read_up_to.get(app.log, 0) + len(complete)
        lines = complete.decode(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def new_repo(self) -> Repository:
        """A repository of an installation of its own (its own rate limit at the double)."""
        repo = self.double.add_repo(f"bench-org/scale-{len(self.repos) + 1}")
        self.repos.append(repo)
        return repo

    def prepare(self, sha: str) -> None:
        """A workflow run of `sha` with the artifact, in the current repository, or a new one
        once that has REPO_JOBS commits."""
        repo = self.repos[-1] if self.repos else self.new_repo()
        if len(repo.runs) >= REPO_JOBS:
            repo = self.new_repo()
        run = self.double.add_run(repo, head_sha=sha, name="build")
        self.double.add_artifact(repo, run, name="npm-package", data=self.artifact)
        self.repo_of[sha] = repo

    async def post(self, url: str, sha: str, delivery: str) -> float:
        """Post the delivery for `sha`; return when it was answered (wall clock)."""
        payload = published_pull_request(self.repo_of[sha])
        payload["pull_request"]["head"]["sha"] = sha
        body = json.dumps(payload).encode()
        headers = webhook_headers(self.secret, body, "pull_request", delivery)
        async with self.session.post(url, data=body, headers=headers) as answer:
            if answer.status != 202:
                raise RuntimeError(f"the delivery for {sha} was answered {answer.status}")
        return time.time()

    async def watch(self) -> None:
        """Note when each commit's check run is first seen completed at the double (forever)."""
        while True:
            for repo in self.repos:
                for check_run in list(repo.check_runs.values()):
                    sha = check_run.head_sha
                    if check_run.status == "completed" and sha not in self.completed_at:
                        self.completed_at[sha] = time.time()
                        self.conclusions[str(check_run.conclusion)] += 1
            await asyncio.sleep(POLL)

    async def wait_completed(self, shas: list[str], apps: list[App], timeout: float) -> None:
        """Wait for every check run; fail at once when a process dies, a job is retried or
        fails (the figures would mean nothing), or after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        looked = 0.0
        while not all(sha in self.completed_at for sha in shas):
            if time.monotonic() - looked > 1.0:
                looked = time.monotonic()
                for app in apps:
                    for record in self.new_records(app):
                        if record.get("level") in ("error", "critical") or (
                            "will be retried" in record["message"]
                        ):
                            raise RuntimeError(f"{app.name}: {record['message']}")
            for app in apps:
                if app.process.poll() is not None:
                    if app.logged("SIGINT received"):  # Ctrl-C reached it first
                        raise Interrupted(app.name)
                    raise RuntimeError(f"{app.name} exited early:\n{tail(app)}")
            if time.monotonic() > deadline:
                done = sum(sha in self.completed_at for sha in shas)
                logs = "\n".join(f"--- {a.name}\n{tail(a)}" for a in apps)
                raise RuntimeError(f"{done}/{len(shas)} check runs completed in {timeout}s\n{logs}")
            await asyncio.sleep(0.02)


def tail(app: App, lines: int = 15) -> str:
    return "\n".join(app.log.read_text(errors="replace").splitlines()[-lines:])


def log_time(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(record["time"]).timestamp()


def started_at(worker: App) -> float:
    """When the worker logged that it started taking jobs (its own clock reading)."""
    for record in worker.records():
        if record["message"].startswith("worker ") and " started" in record["message"]:
            return log_time(record)
    raise RuntimeError(f"{worker.name} did not log that it started:\n{tail(worker)}")


def job_records(workers: list[App]) -> dict[str, list[dict[str, Any]]]:
    """Each delivery's log records from the workers, in order (with the worker's name)."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for worker in workers:
        for record in worker.records():
            if "delivery_id" in record:
                found[str(record["delivery_id"])].append({**record, "worker": worker.name})
    for records in found.values():
        records.sort(key=log_time)
    return found


def stage_of(record: dict[str, Any]) -> str | None:
    """The stage a job's log record opens: its audit stage, or "keeping" for the retention of
    a failing artifact (logged between "scanning" and "reporting"), else None."""
    if "stage" in record:
        return str(record["stage"])
    return "keeping" if record["message"].startswith("kept ") else None


def stage_times(records: dict[str, list[dict[str, Any]]]) -> dict[str, float]:
    """Mean seconds per job in each stage, from "job N started" to "job N done".

    A stage lasts from its log record to the job's next record with a stage (or "done"); the
    time from "job N started" to the first stage is "start" (installation token, workflow runs
    and artifacts listed, check run created).
    """
    totals: dict[str, float] = defaultdict(float)
    jobs = 0
    for job in records.values():
        label: str | None = None
        since = 0.0
        for record in job:
            message, now = record["message"], log_time(record)
            if JOB_STARTED.match(message):
                label, since = "start", now
            elif label is not None and (stage_of(record) or JOB_DONE.match(message)):
                totals[label] += now - since
                label, since = stage_of(record), now
                if JOB_DONE.match(message):
                    jobs += 1
                    label = None
    return {name: total / jobs for name, total in totals.items()} if jobs else {}


# -- where the CPU goes (Linux /proc; None elsewhere) ---------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu(pid: int) -> float:
    """User + system CPU seconds of `pid` so far (0.0 once it is gone or without /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy() -> float | None:
    """CPU seconds every core of the machine spent busy since boot (None without /proc)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    ticks = [int(value) for value in first[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS  # less idle and iowait


def postgres_cpu() -> dict[int, float]:
    """CPU seconds so far of every PostgreSQL process on this machine (all its databases)."""
    found = {}
    for entry in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() == "postgres":
                found[int(entry.name)] = process_cpu(int(entry.name))
    return found


async def cores_busy(seconds: float) -> float | None:
    """How many cores the machine kept busy over the next `seconds` (None without /proc)."""
    before = machine_busy()
    await asyncio.sleep(seconds)
    after = machine_busy()
    return None if before is None or after is None else round((after - before) / seconds, 2)


@dataclass
class CpuWindow:
    """CPU seconds spent from `begin()` to `end()`: the machine's, this process's (the GitHub
    double, the deliveries), the web's and the workers' (each from when it started)."""

    start_machine: float | None = None
    start_self: float = 0.0
    start_web: float = 0.0
    start_postgres: dict[int, float] = field(default_factory=dict)
    start_workers: dict[int, float] = field(default_factory=dict)
    begun: float | None = None

    def begin(self, web: App | None) -> None:
        self.begun = time.monotonic()
        self.start_machine, self.start_self = machine_busy(), time.process_time()
        self.start_web = process_cpu(web.pid) if web else 0.0
        self.start_postgres = postgres_cpu()

    def begin_worker(self, worker: App) -> None:
        self.start_workers[worker.pid] = process_cpu(worker.pid)

    def end(self, web: App | None, jobs: int) -> dict[str, float]:
        """CPU seconds per job by whom, and the machine's use of its cores (0-1)."""
        elapsed = time.monotonic() - (self.begun or 0.0)
        now_machine = machine_busy()
        workers = sum(process_cpu(pid) - cpu for pid, cpu in self.start_workers.items())
        mine = time.process_time() - self.start_self
        web_cpu = (process_cpu(web.pid) - self.start_web) if web else 0.0
        postgres = sum(
            cpu - self.start_postgres.get(pid, 0.0) for pid, cpu in postgres_cpu().items()
        )
        figures = {
            "workers_s_per_job": workers / jobs,
            "double_s_per_job": mine / jobs,
            "web_s_per_job": web_cpu / jobs,
            "postgres_s_per_job": postgres / jobs,
        }
        if self.start_machine is not None and now_machine is not None:
            machine = now_machine - self.start_machine
            known = workers + mine + web_cpu + postgres
            figures["other_s_per_job"] = max(0.0, machine - known) / jobs
            figures["machine_use"] = machine / (elapsed * (os.cpu_count() or 1))
        return figures


async def note_starts(workers: list[App], window: CpuWindow, web: App | None) -> None:
    """Begin the CPU window when the first worker logs that it started, and count each worker
    from its own start (so Python's start-up is left out, as for the clock)."""
    waiting = list(workers)
    while waiting:
        for worker in list(waiting):
            if any(
                r["message"].startswith("worker ") and " started" in r["message"]
                for r in worker.records()
            ):
                if window.begun is None:
                    window.begin(web)
                window.begin_worker(worker)
                waiting.remove(worker)
        await asyncio.sleep(0.01)


# -- the three measurements ------------------------------------------------------------------


def floor_scan(artifact: bytes, workdir: Path) -> dict[str, float]:
    """The engine alone on the artifact, in this process: best and median of FLOOR_RUNS."""
    path = workdir / "artifact.zip"
    path.write_bytes(artifact)
    timings = []
    for _ in range(FLOOR_RUNS):
        start = time.perf_counter()
        scan_path(path, policy=Policy(), name="npm-package")
        timings.append(time.perf_counter() - start)
    return {"min_s": min(timings), "median_s": statistics.median(timings)}


async def throughput(
    bench: Bench,
    deployment: Deployment,
    *,
    workers: int,
    jobs: int,
    timeout: float,
) -> dict[str, Any]:
    """Queue `jobs` deliveries, then start `workers` workers and time them through the queue."""
    bench.new_repo()
    await deployment.start_web()
    shas = [f"{workers:02x}{index:038x}" for index in range(jobs)]
    for sha in shas:
        bench.prepare(sha)
    for sha in shas:
        await bench.post(deployment.url, sha, str(uuid.uuid4()))
    requests = len(bench.double.requests)
    spawned = time.time()
    apps = deployment.spawn_workers(workers)
    window = CpuWindow()
    starts = asyncio.create_task(note_starts(apps, window, deployment.web))
    try:
        await bench.wait_completed(shas, deployment.apps, timeout)
    finally:
        starts.cancel()
    cpu = window.end(deployment.web, jobs)
    calls = Counter(r.host for r in bench.double.requests[requests:])
    last = max(bench.completed_at[sha] for sha in shas)
    ready = min(started_at(worker) for worker in apps)
    records = job_records(apps)
    per_worker = Counter(
        job[-1]["worker"] for job in records.values() if JOB_DONE.match(job[-1]["message"])
    )
    seconds = last - ready
    figures = {
        "workers": workers,
        "jobs": jobs,
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
        "per_job_s": seconds / jobs,
        "seconds_from_spawn": last - spawned,
        "jobs_per_s_from_spawn": jobs / (last - spawned),
        "jobs_done_per_worker": [per_worker.get(w.name, 0) for w in apps],
        "mean_stage_s": stage_times(records),
        "cpu": cpu,
        "github_requests_per_job": {host: n / jobs for host, n in calls.items()},
    }
    return figures


async def latency(
    bench: Bench,
    deployment: Deployment,
    *,
    rate: float,
    count: int,
    timeout: float,
) -> dict[str, Any]:
    """Post `count` deliveries at `rate` per second; time each to its completed check run."""
    shas = [f"ff{index:038x}" for index in range(count)]
    for sha in shas:
        bench.prepare(sha)
    deliveries = {sha: str(uuid.uuid4()) for sha in shas}
    posted: dict[str, float] = {}
    answered: dict[str, float] = {}

    async def send(sha: str) -> None:
        posted[sha] = time.time()
        answered[sha] = await bench.post(deployment.url, sha, deliveries[sha])

    window = CpuWindow()
    window.begin(deployment.web)
    for worker in deployment.workers:
        window.begin_worker(worker)
    tasks = []
    begin = time.monotonic()
    for index, sha in enumerate(shas):
        await asyncio.sleep(max(0.0, begin + index / rate - time.monotonic()))
        tasks.append(asyncio.create_task(send(sha)))
    await asyncio.gather(*tasks)
    await bench.wait_completed(shas, deployment.apps, timeout)
    cpu = window.end(deployment.web, count)
    total = [bench.completed_at[sha] - posted[sha] for sha in shas]
    records = job_records(deployment.workers)
    answer, wait, run = [], [], []
    for sha in shas:
        job = records.get(deliveries[sha], [])
        start = next((log_time(r) for r in job if JOB_STARTED.match(r["message"])), None)
        answer.append(answered[sha] - posted[sha])
        if start is not None:
            wait.append(start - answered[sha])
            run.append(bench.completed_at[sha] - start)
    return {
        "rate_per_s": rate,
        "deliveries": count,
        "workers": len(deployment.workers),
        "sent_over_s": max(posted.values()) - min(posted.values()),
        "p50_s": statistics.median(total),
        "p90_s": percentile(total, 0.90),
        "p99_s": percentile(total, 0.99),
        "max_s": max(total),
        "median_web_answer_s": statistics.median(answer),
        "median_queue_wait_s": statistics.median(wait) if wait else None,
        "max_queue_wait_s": max(wait) if wait else None,
        "median_run_s": statistics.median(run) if run else None,
        "mean_stage_s": stage_times({deliveries[sha]: records[deliveries[sha]] for sha in shas}),
        "cpu": cpu,
    }


async def measure(args: argparse.Namespace, cleanup: Cleanup, workdir: Path) -> dict[str, Any]:
    main_task = asyncio.current_task()
    assert main_task is not None
    # SIGTERM stops the run as Ctrl-C does: the processes are stopped, the schemas dropped.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    busy_before = await cores_busy(2.0)
    artifact = artifact_bytes(int(args.size_mib * MIB))
    floor = floor_scan(artifact, workdir)
    private_key, public_key = make_keypair()
    double = GitHubDouble(private_key=private_key, public_key=public_key)
    await double.start()
    watcher: asyncio.Task[None] | None = None
    try:
        async with aiohttp.ClientSession() as session:
            bench = Bench(double, artifact, new_secret(), session)
            watcher = asyncio.create_task(bench.watch())
            env = base_environment(
                APP_ID=str(double.app_id),
                PRIVATE_KEY=double.private_key.reveal().decode(),
                WEBHOOK_SECRET=bench.secret,
                GITHUB_API_URL=double.api_url,
            )
            runs = []
            for workers in (1, 2):
                deployment = Deployment(cleanup, workdir / f"{workers}w", env, args.concurrency)
                figures = await throughput(
                    bench, deployment, workers=workers, jobs=args.jobs, timeout=args.timeout
                )
                runs.append(figures)
                if workers == 1:
                    await deployment.stop()
            # The two-worker run's processes, schema and repository: warm, tokens cached.
            latencies = await latency(
                bench,
                deployment,
                rate=args.rate,
                count=args.latency_count,
                timeout=args.timeout,
            )
            await deployment.stop()
    finally:
        # Stop the processes while the double still answers them (they drain running jobs).
        await cleanup.stop()
        if watcher is not None:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        await double.close()
    one, two = runs
    return {
        "cpu_cores": os.cpu_count(),
        "cores_busy_before": busy_before,
        "database": redacted(cleanup.server_url),
        "artifact_bytes": len(artifact),
        "artifact_mib_requested": args.size_mib,
        "worker_concurrency": args.concurrency,
        "timing": (
            "throughput: every delivery queued first, clock from the first worker's 'started' "
            "log line to the last completed check run at the double; latency: POST to the "
            "completed check run at the double"
        ),
        "throughput": runs,
        "ratio_2_over_1": two["jobs_per_s"] / one["jobs_per_s"],
        "latency": latencies,
        "floor": floor,
        "check_run_conclusions": dict(bench.conclusions),
    }


# -- output ----------------------------------------------------------------------------------


def redacted(url: str) -> str:
    """`url` without a password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.0f}"


def stages(figures: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms(seconds)}" for name, seconds in figures.items()) or "-"


def cpu(figures: dict[str, float]) -> str:
    """CPU ms per job by whom, and how busy the machine's cores were."""
    parts = [
        f"workers {ms(figures['workers_s_per_job'])}",
        f"double + benchmark (this process) {ms(figures['double_s_per_job'])}",
        f"web {ms(figures['web_s_per_job'])}",
        f"PostgreSQL (all backends) {ms(figures['postgres_s_per_job'])}",
    ]
    if "other_s_per_job" in figures:
        parts.append(f"other processes {ms(figures['other_s_per_job'])}")
        parts.append(f"cores busy {figures['machine_use']:.0%}")
    return ", ".join(parts)


def busy_line(busy: float | None) -> str:
    if busy is None:
        return "(how busy the machine was before the run is unknown: no /proc)"
    line = f"cores busy before the run (2 s, nothing of this benchmark running): {busy:.2f}"
    if busy > BUSY_WARNING:
        line += "  <- other processes compete for the CPU: the figures are unreliable"
    return line


def report(result: dict[str, Any]) -> str:
    floor = result["floor"]["min_s"]
    one, two = result["throughput"]
    lat = result["latency"]
    lines = [
        f"release-guard scale-out benchmark: {result['cpu_cores']} CPU cores on this machine "
        "(the workers, PostgreSQL, the web process and the GitHub double share them)",
        busy_line(result["cores_busy_before"]),
        f"PostgreSQL {result['database']}; artifact {result['artifact_bytes'] / MIB:.2f} MiB "
        f"zip (--size-mib {result['artifact_mib_requested']:g}); "
        f"worker --concurrency {result['worker_concurrency']}",
        "",
        f"Throughput: {one['jobs']} pull-request deliveries queued through `serve --no-worker` "
        "first, then the workers started;",
        "  clock from the first worker's 'started' log line to the last completed check run "
        "(fresh schema per run)",
        f"  {'workers':>7} {'jobs':>5} {'seconds':>8} {'jobs/s':>7} {'ms/job':>7} "
        f"{'x floor':>8} {'jobs/s from spawn':>18}  jobs per worker",
    ]
    for run in (one, two):
        lines.append(
            f"  {run['workers']:>7} {run['jobs']:>5} {run['seconds']:>8.2f} "
            f"{run['jobs_per_s']:>7.2f} {ms(run['per_job_s']):>7} "
            f"{run['per_job_s'] / floor:>8.2f} {run['jobs_per_s_from_spawn']:>18.2f}  "
            f"{run['jobs_done_per_worker']}"
        )
    lines += [
        f"  ratio 2 workers / 1 worker: {result['ratio_2_over_1']:.2f}",
        f"  where a job's time goes (mean ms per job, worker logs), 1 worker: "
        f"{stages(one['mean_stage_s'])}",
        f"                                                        2 workers: "
        f"{stages(two['mean_stage_s'])}",
        "  GitHub requests per job (at the double): "
        + ", ".join(f"{host} {n:.1f}" for host, n in two["github_requests_per_job"].items()),
        f"  CPU ms per job, 1 worker:  {cpu(one['cpu'])}",
        f"  CPU ms per job, 2 workers: {cpu(two['cpu'])}",
        "",
        f"Latency at {lat['rate_per_s']:g} deliveries/s ({lat['deliveries']} deliveries over "
        f"{lat['sent_over_s']:.1f} s, {lat['workers']} workers, warm), POST to completed "
        "check run:",
        f"  p50 {ms(lat['p50_s'])} ms ({lat['p50_s'] / floor:.2f} x floor)   "
        f"p90 {ms(lat['p90_s'])} ms   p99 {ms(lat['p99_s'])} ms   max {ms(lat['max_s'])} ms",
        f"  medians: web answers {ms(lat['median_web_answer_s'])} ms, waits in the queue "
        f"{ms(lat['median_queue_wait_s'])} ms (max {ms(lat['max_queue_wait_s'])}), "
        f"job runs {ms(lat['median_run_s'])} ms",
        f"  where a job's time goes (mean ms per job): {stages(lat['mean_stage_s'])}",
        f"  CPU ms per job: {cpu(lat['cpu'])}",
        "",
        f"Floor: the engine alone in-process (scan_path, no GitHub, no queue): "
        f"{ms(floor)} ms best of {FLOOR_RUNS} (median {ms(result['floor']['median_s'])} ms)",
        f"check run conclusions: {result['check_run_conclusions']}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40, help="deliveries per throughput run")
    parser.add_argument("--size-mib", type=float, default=5.0, help="artifact size (MiB)")
    parser.add_argument("--rate", type=float, default=2.0, help="deliveries/s for latency")
    parser.add_argument("--latency-count", type=int, default=30, help="deliveries for latency")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=WorkerOptions().concurrency,
        help="each worker's --concurrency (default: the CLI's, %(default)s)",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("RELEASE_GUARD_TEST_POSTGRES_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL server (default: RELEASE_GUARD_TEST_POSTGRES_URL, or %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="bound per phase (s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write figures as JSON")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = parser.parse_args()
    if args.jobs < 1 or args.latency_count < 1 or args.rate <= 0 or args.size_mib <= 0:
        parser.error("--jobs, --latency-count, --rate and --size-mib must be positive")

    cleanup = Cleanup(args.database_url)
    workdir = Path(tempfile.mkdtemp(prefix="release-guard-scale-"))
    try:
        result = asyncio.run(measure(args, cleanup, workdir))
    except (KeyboardInterrupt, Interrupted, asyncio.CancelledError):
        print("interrupted: processes stopped, schemas dropped", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # a process died, a job was retried or failed, or timeout
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        cleanup.kill()  # anything the async clean-up could not stop (a second Ctrl-C)
        cleanup.drop_schemas()
        if args.keep_logs:
            print(f"logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
