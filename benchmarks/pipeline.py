"""Time from a signed delivery to a completed check run, for a 5 MB artifact.

    .venv/bin/python benchmarks/pipeline.py            # 20 deliveries, one at a time
    .venv/bin/python benchmarks/pipeline.py --count 50

The GitHub double (bot/double) plays GitHub on loopback; `release-guard serve` runs
in-process with its embedded worker (SQLite under a temporary DATA_DIR) and the real
pull-request handler. Each delivery is GitHub's published `pull_request.opened` example,
pointed at its own commit whose workflow run uploaded the same 5 MB Actions artifact (a zip
holding an npm tarball whose source map embeds its sources). The clock starts before the
POST and stops when the double holds the completed check run. Deliveries are sent one after
another, so each figure is the latency of one job on an idle App, with the floor beside it:
scanning the same artifact with the engine alone (no GitHub, no queue).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import io
import json
import random
import socket
import statistics
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app.serve import serve  # noqa: E402
from bot.app.worker import WorkerOptions  # noqa: E402
from bot.double.helpers import make_keypair  # noqa: E402
from bot.double.server import GitHubDouble  # noqa: E402
from bot.engine.policy import Policy  # noqa: E402
from bot.engine.scan import scan_path  # noqa: E402
from bot.secrets import Secret  # noqa: E402
from bot.settings import Settings  # noqa: E402
from tests.apphelpers import examples, new_secret, webhook_headers  # noqa: E402

MIB = 1 << 20


def artifact_bytes(size: int = 5 * MIB) -> bytes:
    """A deterministic Actions artifact of about `size` bytes: a zip holding an npm tarball."""
    rng = random.Random(5)
    words = ["const", "return", "value", "export", "function", "await", "(", ")", "{", "}", "\n"]
    source = " ".join(rng.choice(words) for _ in range(size // 3))
    # Random identifiers compress to about 65% of their length: they make up most of the size.
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    random_tail = "".join(rng.choice(alphabet) for _ in range(size * 13 // 10))
    source_map = {
        "version": 3,
        "sources": ["../src/cli.ts"],
        "sourcesContent": [source],
        "mappings": "AAAA",
    }
    bundle = (random_tail + "\n//# sourceMappingURL=cli.js.map\n").encode()
    members = {
        "package/package.json": b'{"name":"bench","version":"1.0.0"}',
        "package/cli.js": bundle,
        "package/cli.js.map": json.dumps(source_map).encode(),
    }
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 499162500
            archive.addfile(info, io.BytesIO(data))
    outer = io.BytesIO()
    with zipfile.ZipFile(outer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("bench-1.0.0.tgz", tgz.getvalue())
    return outer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def wait_for_port(port: int) -> None:
    for _ in range(500):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.01)
    raise SystemExit("serve did not start")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def measure(count: int) -> dict[str, Any]:
    private_key, public_key = make_keypair()
    double = GitHubDouble(private_key=private_key, public_key=public_key)
    await double.start()
    data = artifact_bytes()
    repo = double.add_repo("bench-org/bench-cli")
    example = next(
        e for e in examples() if e.event == "pull_request" and e.payload.get("action") == "opened"
    )
    secret = new_secret()
    port = free_port()
    timings: list[float] = []
    with tempfile.TemporaryDirectory(prefix="release-guard-bench-") as data_dir:
        artifact_path = Path(data_dir) / "artifact.zip"
        artifact_path.write_bytes(data)
        floor = min(_timed_scan(artifact_path) for _ in range(5))
        settings = Settings.for_data_dir(
            Path(data_dir) / "data",
            app_id=double.app_id,
            private_key=double.private_key,
            webhook_secret=Secret(secret),
            github_api_url=double.api_url,
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
        stop = asyncio.Event()
        server = asyncio.create_task(
            serve(settings, stop=stop, options=WorkerOptions(concurrency=1, poll_interval=0.05))
        )
        await wait_for_port(port)
        url = f"http://127.0.0.1:{port}{settings.webhook_path}"
        async with aiohttp.ClientSession() as session:
            for index in range(count):
                sha = f"{index:040x}"
                run = double.add_run(repo, head_sha=sha, name="build")
                double.add_artifact(repo, run, name="npm-package", data=data)
                payload = copy.deepcopy(example.payload)
                payload["installation"] = {"id": repo.installation_id}
                payload["repository"]["full_name"] = repo.full_name
                payload["pull_request"]["head"]["sha"] = sha
                body = json.dumps(payload).encode()
                headers = webhook_headers(secret, body, "pull_request")
                start = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as answer:
                    if answer.status != 202:
                        raise SystemExit(f"delivery answered {answer.status}")
                while not _completed(repo, sha):
                    await asyncio.sleep(0.002)
                timings.append(time.perf_counter() - start)
        stop.set()
        await server
    await double.close()
    return {
        "artifact_mb": round(len(data) / 1e6, 2),
        "deliveries": count,
        "engine_only_scan_ms": round(floor * 1000, 1),
        "p50_ms": round(statistics.median(timings) * 1000, 1),
        "p99_ms": round(percentile(timings, 0.99) * 1000, 1),
        "max_ms": round(max(timings) * 1000, 1),
        "p50_over_engine_only": round(statistics.median(timings) / floor, 2),
    }


def _timed_scan(path: Path) -> float:
    start = time.perf_counter()
    scan_path(path, policy=Policy(), name="npm-package")
    return time.perf_counter() - start


def _completed(repo: Any, sha: str) -> bool:
    return any(c.head_sha == sha and c.status == "completed" for c in repo.check_runs.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20, help="deliveries, one at a time")
    args = parser.parse_args()
    result = asyncio.run(measure(args.count))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
