"""Measure webhook ingest: `release-guard serve` against a bare aiohttp handler, on loopback.

    .venv/bin/python benchmarks/webhooks.py                  # defaults below
    .venv/bin/python benchmarks/webhooks.py --count 5000 --concurrency 32 --rate 200
    .venv/bin/python benchmarks/webhooks.py --postgres postgresql://postgres@127.0.0.1/test

Two servers run as subprocesses on 127.0.0.1:

- `serve`: `python -m bot serve --no-worker` (ingest only: verify, route, record, answer), with
  SQLite (WAL, synchronous=FULL) under a fresh DATA_DIR in benchmarks/out/ (same disk as the
  repository, not tmpfs), JSON logs to a file at level info, as in production; with
  `--postgres URL`, on that server instead (a fresh schema, dropped at the end);
- `bare`: an aiohttp app whose handler reads the body and answers 202, nothing else: the floor.

The load comes from this process (one aiohttp client session). Every request is a signed
`pull_request.opened` delivery with its own delivery id and head sha, so each one is a new
delivery and a new job. Bodies are signed before the clock starts. For each server:

1. closed loop: `--count` deliveries (bounded by `--max-seconds`) with `--concurrency` in flight:
   acknowledged deliveries per second, p50 and p99 latency;
2. open loop: `--rate` deliveries per second for `--rate-seconds`, each sent at its scheduled
   time whether or not earlier ones were answered: p50 and p99 latency at that fixed rate.

It prints a table with the ratio serve/bare. No thresholds are asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "out"
PATH = "/api/github/webhooks"
EXAMPLE = ROOT / "tests" / "payloads" / "pull_request.json"


# -- the bare server (run as `webhooks.py --bare-server`) ---------------------------------------


def run_bare_server() -> None:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"outcome": "queued"}, status=202)

    async def main() -> None:
        app = web.Application(client_max_size=25 * 1024 * 1024)
        app.router.add_post(PATH, handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        print(runner.addresses[0][1], flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())


# -- servers under test --------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_bare() -> Server:
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--bare-server"],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return Server("bare aiohttp", process, port)


def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def start_serve(data_dir: Path, secret: str, database_url: str | None = None) -> Server:
    log = data_dir / "serve.log"
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT),
        APP_ID="1",
        PRIVATE_KEY=_pem(),
        WEBHOOK_SECRET=secret,
        DATA_DIR=str(data_dir),
        LOG_FORMAT="json",
        LOG_LEVEL="info",
    )
    for name in ("DATABASE_URL", "PRIVATE_KEY_PATH"):
        env.pop(name, None)
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bot",
                "serve",
                "--no-worker",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            cwd=data_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{") and json.loads(line)["message"].startswith("listening"):
                return Server("release-guard serve", process, int(json.loads(line)["port"]))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    raise SystemExit(f"serve did not start:\n{log.read_text()}")


# -- load --------------------------------------------------------------------------------------


@dataclass
class Requests:
    """Pre-built signed deliveries: (headers, body) pairs, each a distinct delivery and job."""

    secret: str
    template: dict[str, Any]
    made: int = 0

    def make(self, count: int) -> list[tuple[dict[str, str], bytes]]:
        built = []
        for _ in range(count):
            self.made += 1
            payload = dict(self.template)
            pull = dict(payload["pull_request"])
            pull["head"] = {
                **pull["head"],
                "sha": hashlib.sha1(str(self.made).encode()).hexdigest(),
            }
            payload["pull_request"] = pull
            body = json.dumps(payload).encode()
            signature = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            headers = {
                "X-GitHub-Event": "pull_request",
                "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": f"sha256={signature}",
                "Content-Type": "application/json",
            }
            built.append((headers, body))
        return built


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    elapsed: float = 0.0

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000


async def _send(
    session: aiohttp.ClientSession, url: str, request: tuple[dict[str, str], bytes], result: Result
) -> None:
    headers, body = request
    started = time.perf_counter()
    async with session.post(url, data=body, headers=headers) as response:
        await response.read()
        status = response.status
    result.latencies.append(time.perf_counter() - started)
    result.statuses[status] = result.statuses.get(status, 0) + 1


async def closed_loop(
    url: str, requests: list[tuple[dict[str, str], bytes]], concurrency: int, max_seconds: float
) -> Result:
    result = Result()
    queue = iter(requests)
    deadline = time.perf_counter() + max_seconds
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def lane() -> None:
            for request in queue:
                if time.perf_counter() > deadline:
                    return
                await _send(session, url, request, result)

        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - started
    return result


async def open_loop(url: str, requests: list[tuple[dict[str, str], bytes]], rate: float) -> Result:
    result = Result()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        started = time.perf_counter()
        tasks = []
        for index, request in enumerate(requests):
            delay = started + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(_send(session, url, request, result)))
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
        result.elapsed = time.perf_counter() - started
    return result


async def measure(
    server: Server, requests: Requests, args: argparse.Namespace
) -> dict[str, Result]:
    url = f"http://127.0.0.1:{server.port}{PATH}"
    await closed_loop(url, requests.make(args.warmup), args.concurrency, 30)
    throughput = await closed_loop(
        url, requests.make(args.count), args.concurrency, args.max_seconds
    )
    fixed = await open_loop(url, requests.make(int(args.rate * args.rate_seconds)), args.rate)
    return {"closed": throughput, "fixed": fixed}


def table(results: dict[str, dict[str, Result]], args: argparse.Namespace) -> str:
    bare, serve = results["bare aiohttp"], results["release-guard serve"]
    Row = tuple[str, Callable[[dict[str, Result]], float], str]
    rows: list[Row] = [
        ("acknowledged deliveries/s", lambda r: r["closed"].per_second, "{:.0f}"),
        (
            f"p50 latency, {args.concurrency} in flight (ms)",
            lambda r: r["closed"].percentile(50),
            "{:.2f}",
        ),
        (
            f"p99 latency, {args.concurrency} in flight (ms)",
            lambda r: r["closed"].percentile(99),
            "{:.2f}",
        ),
        (f"p50 latency at {args.rate:.0f}/s (ms)", lambda r: r["fixed"].percentile(50), "{:.2f}"),
        (f"p99 latency at {args.rate:.0f}/s (ms)", lambda r: r["fixed"].percentile(99), "{:.2f}"),
    ]
    width = max(len(label) for label, _, _ in rows)
    lines = [f"{'':{width}}  {'bare aiohttp':>12}  {'serve':>12}  {'serve/bare':>10}"]
    for label, get, fmt in rows:
        b, s = get(bare), get(serve)
        ratio = s / b if b else float("nan")
        lines.append(f"{label:{width}}  {fmt.format(b):>12}  {fmt.format(s):>12}  {ratio:>10.2f}")
    for name, result in results.items():
        counts = {k: v.statuses for k, v in result.items()}
        lines.append(f"{name}: status counts {counts}")
    return "\n".join(lines)


def _create_schema(server: str, schema: str) -> str:
    """Create `schema` on `server`; return a URL whose connections use it (search_path)."""
    import psycopg

    sys.path.insert(0, str(ROOT))
    from tests.pgtest import with_schema

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    return with_schema(server, schema)


def _count_and_drop(server: str, url: str | None, schema: str) -> int:
    import psycopg

    try:
        with psycopg.connect(url or server, autocommit=True) as conn:
            row = conn.execute("SELECT count(*) FROM jobs").fetchone()
            return int(row[0]) if row else 0
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bare-server", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=3000, help="closed-loop deliveries (3000)")
    parser.add_argument("--concurrency", type=int, default=16, help="in flight (16)")
    parser.add_argument("--max-seconds", type=float, default=60, help="closed-loop cap (60)")
    parser.add_argument("--rate", type=float, default=200, help="open-loop rate per s (200)")
    parser.add_argument("--rate-seconds", type=float, default=10, help="open-loop length (10)")
    parser.add_argument("--warmup", type=int, default=100, help="unmeasured deliveries (100)")
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="run serve on this PostgreSQL server (a fresh schema, dropped after), not SQLite",
    )
    args = parser.parse_args()
    if args.bare_server:
        run_bare_server()
        return 0
    OUT.mkdir(exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="webhooks-", dir=OUT))
    secret = secrets.token_hex(32)
    template = next(
        entry["payload"]
        for entry in json.loads(EXAMPLE.read_text())["examples"]
        if entry["payload"].get("action") == "opened" and "installation" in entry["payload"]
    )
    requests = Requests(secret, template)
    results: dict[str, dict[str, Result]] = {}
    servers = []
    schema = f"rg_bench_{secrets.token_hex(4)}"
    database_url = _create_schema(args.postgres, schema) if args.postgres else None
    try:
        servers = [start_bare(), start_serve(data_dir, secret, database_url)]
        for server in servers:
            results[server.name] = asyncio.run(measure(server, requests, args))
    finally:
        for server in servers:
            server.stop()
        if args.postgres:
            recorded, where = _count_and_drop(args.postgres, database_url, schema), "PostgreSQL"
    if not args.postgres:
        database = data_dir / "release-guard.sqlite3"
        recorded = sqlite3.connect(database).execute("SELECT count(*) FROM jobs").fetchone()[0]
        where = str(database)
    print(f"python {sys.version.split()[0]}, aiohttp {aiohttp.__version__}, {os.cpu_count()} CPUs")
    print(table(results, args))
    print(f"serve recorded {recorded} jobs in {where}")
    shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
