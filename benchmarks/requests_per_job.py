"""GitHub requests, downloads and check runs per scenario, through the whole App.

    .venv/bin/python benchmarks/requests_per_job.py           # every scenario, JSON out
    .venv/bin/python benchmarks/requests_per_job.py --markdown

Each scenario starts `release-guard serve` in-process (embedded worker, SQLite under a fresh
DATA_DIR, the real handlers) against the GitHub double (bot/double), sends GitHub-shaped
signed deliveries one after the other, waits for every job to finish, and counts what
reached the double:

- `api_requests`: REST requests made with an installation token (the App's own JWT requests,
  minting that token, are left out: one per installation per hour);
- `rate_limited`: those of them that count against the installation's hourly budget (a 304
  answer to a conditional request does not: "Best practices for using the REST API", "Use
  conditional requests if appropriate",
  https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api);
- `downloads`: artifact or asset bytes fetched from the storage host;
- `check_runs`: `release-guard` check runs created on the scanned commit(s).

The floor beside each figure is what the scenario cannot do without (its `floor` entry): the
downloads of distinct bytes and one check run per commit and per release or gate.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import socket
import sys
import tempfile
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.app.serve import serve  # noqa: E402
from bot.app.worker import WorkerOptions  # noqa: E402
from bot.double.helpers import make_keypair  # noqa: E402
from bot.double.server import GitHubDouble  # noqa: E402
from bot.double.state import Repository  # noqa: E402
from bot.secrets import Secret  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.store import store_for  # noqa: E402
from bot.store.base import JobState  # noqa: E402
from tests.apphelpers import new_secret, webhook_headers  # noqa: E402

REAL = ROOT / "tests" / "fixtures" / "real"
LEAKY = (REAL / "actions-artifact-leaky.zip").read_bytes()


def _zip(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return raw.getvalue()


CLEAN = _zip({"clean-esbuild-1.0.0.tgz": (REAL / "clean-esbuild-1.0.0.tgz").read_bytes()})
CLEAN_TGZ = (REAL / "clean-esbuild-1.0.0.tgz").read_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Bench:
    """One scenario's App, double and repository."""

    double: GitHubDouble
    repo: Repository
    session: aiohttp.ClientSession
    url: str
    secret: str
    settings: Settings

    async def deliver(self, event: str, payload: dict[str, Any]) -> None:
        payload = {
            **payload,
            "installation": {"id": self.repo.installation_id},
            "repository": {"full_name": self.repo.full_name, "private": True},
            "sender": {"login": "octocat", "type": "User"},
        }
        body = json.dumps(payload).encode()
        async with self.session.post(
            self.url, data=body, headers=webhook_headers(self.secret, body, event)
        ) as answer:
            if answer.status not in (200, 202):
                raise SystemExit(f"{event} answered {answer.status}")
        await self.settle()

    async def settle(self) -> None:
        """Wait until every job the App holds has finished."""
        store = store_for(self.settings, create=False)
        await store.open()
        try:
            for _ in range(3000):
                jobs = await store.list_jobs(200)
                if jobs and all(j.state in (JobState.DONE, JobState.FAILED) for j in jobs):
                    return
                await asyncio.sleep(0.02)
        finally:
            await store.close()
        raise SystemExit("the jobs did not finish")

    async def opened(self, sha: str) -> None:
        await self.deliver(
            "pull_request",
            {
                "action": "opened",
                "number": 7,
                "pull_request": {
                    "number": 7,
                    "head": {"sha": sha, "ref": "feature", "repo": {"full_name": "x/y"}},
                },
            },
        )

    async def workflow_run(self, run_id: int) -> None:
        run = self.repo.runs[run_id]
        await self.deliver(
            "workflow_run",
            {
                "action": "completed",
                "workflow_run": {
                    "id": run.id,
                    "run_attempt": run.run_attempt,
                    "name": run.name,
                    "head_sha": run.head_sha,
                    "head_branch": run.head_branch,
                    "event": "pull_request",
                    "conclusion": run.conclusion,
                    "pull_requests": [],
                },
            },
        )

    async def gate(self, run_id: int) -> None:
        run = self.repo.runs[run_id]
        await self.deliver(
            "deployment_protection_rule",
            {
                "action": "requested",
                "environment": "production",
                "event": "push",
                "deployment_callback_url": (
                    f"{self.double.api_url}/repos/{self.repo.full_name}/actions/runs/"
                    f"{run.id}/deployment_protection_rule"
                ),
                "deployment": {"id": 1, "sha": run.head_sha},
            },
        )

    async def release(self, release_id: int) -> None:
        release = self.repo.releases[release_id]
        await self.deliver(
            "release",
            {
                "action": "published",
                "release": {
                    "id": release.id,
                    "tag_name": release.tag_name,
                    "target_commitish": release.target_commitish,
                    "draft": release.draft,
                    "prerelease": release.prerelease,
                },
            },
        )


Scenario = Callable[[Bench], Awaitable[dict[str, int]]]
SHA = "be" * 20
SHA_2 = "ef" * 20


async def failing_pull_request(b: Bench) -> dict[str, int]:
    run = b.double.add_run(b.repo, head_sha=SHA, name="build")
    b.double.add_artifact(b.repo, run, name="npm-package", data=LEAKY)
    await b.opened(SHA)
    return {"jobs": 1, "downloads": 1, "check_runs": 1}


async def passing_pull_request(b: Bench) -> dict[str, int]:
    run = b.double.add_run(b.repo, head_sha=SHA, name="build")
    b.double.add_artifact(b.repo, run, name="npm-package", data=CLEAN)
    await b.opened(SHA)
    return {"jobs": 1, "downloads": 1, "check_runs": 1}


async def opened_then_workflow_run(b: Bench) -> dict[str, int]:
    """The build had finished when the pull request was opened: two jobs, same inputs."""
    run = b.double.add_run(b.repo, head_sha=SHA, name="build")
    b.double.add_artifact(b.repo, run, name="npm-package", data=LEAKY)
    await b.opened(SHA)
    await b.workflow_run(run.id)
    return {"jobs": 2, "downloads": 1, "check_runs": 1}


async def two_workflows(b: Bench) -> dict[str, int]:
    """Two workflows of one commit finish one after the other."""
    first = b.double.add_run(b.repo, head_sha=SHA, name="build")
    b.double.add_artifact(b.repo, first, name="npm-package", data=LEAKY)
    await b.workflow_run(first.id)
    second = b.double.add_run(b.repo, head_sha=SHA, name="docs")
    b.double.add_artifact(b.repo, second, name="site", data=CLEAN)
    await b.workflow_run(second.id)
    return {"jobs": 2, "downloads": 2, "check_runs": 2}


async def deployment_gate(b: Bench) -> dict[str, int]:
    run = b.double.add_run(b.repo, head_sha=SHA, name="deploy", status="in_progress")
    b.double.add_artifact(b.repo, run, name="site", data=CLEAN)
    await b.gate(run.id)
    return {"jobs": 1, "downloads": 1, "check_runs": 1}


async def release(b: Bench) -> dict[str, int]:
    b.double.add_tag(b.repo, "v1.0.0", commit=SHA_2)
    rel = b.double.add_release(b.repo, tag_name="v1.0.0")
    b.double.add_asset(b.repo, rel, name="clean-esbuild-1.0.0.tgz", data=CLEAN_TGZ)
    await b.release(rel.id)
    return {"jobs": 1, "downloads": 1, "check_runs": 1}


async def gate_then_release(b: Bench) -> dict[str, int]:
    """A deployment gate, then the release of the same commit scans the same build."""
    b.double.add_file(
        b.repo, ".github/release-guard.yml", "release:\n  scan_workflow_artifacts: true\n", ref=SHA
    )
    run = b.double.add_run(b.repo, head_sha=SHA, name="release", status="in_progress")
    b.double.add_artifact(b.repo, run, name="site", data=CLEAN)
    await b.gate(run.id)
    run.status = "completed"
    b.double.add_tag(b.repo, "v2.0.0", commit=SHA)
    rel = b.double.add_release(b.repo, tag_name="v2.0.0")
    await b.release(rel.id)
    return {"jobs": 2, "downloads": 1, "check_runs": 2}


async def draft_first_release(b: Bench) -> dict[str, int]:
    """A tag push builds and uploads to a draft release; the gate scans the build and the
    draft's asset, then the draft is published and scanned as a release."""
    b.double.add_tag(b.repo, "v3.0.0", commit=SHA, annotated=True)
    run = b.double.add_run(
        b.repo, head_sha=SHA, head_branch="v3.0.0", name="release", status="waiting"
    )
    b.double.add_artifact(b.repo, run, name="site", data=CLEAN)
    draft = b.double.add_release(b.repo, tag_name="v3.0.0", draft=True)
    draft.target_commitish = SHA
    b.double.add_asset(b.repo, draft, name="clean-esbuild-1.0.0.tgz", data=CLEAN_TGZ)
    await b.gate(run.id)
    run.status = "completed"
    draft.draft = False
    await b.release(draft.id)
    return {"jobs": 2, "downloads": 2, "check_runs": 2}


SCENARIOS: dict[str, Scenario] = {
    "failing_pull_request": failing_pull_request,
    "passing_pull_request": passing_pull_request,
    "opened_then_workflow_run": opened_then_workflow_run,
    "two_workflows": two_workflows,
    "deployment_gate": deployment_gate,
    "release": release,
    "gate_then_release": gate_then_release,
    "draft_first_release": draft_first_release,
}


async def run_scenario(name: str, scenario: Scenario) -> dict[str, Any]:
    private_key, public_key = make_keypair()
    double = GitHubDouble(private_key=private_key, public_key=public_key)
    await double.start()
    repo = double.add_repo("bench-org/bench-cli")
    secret = new_secret()
    port = free_port()
    try:
        with tempfile.TemporaryDirectory(prefix="release-guard-bench-") as data_dir:
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
                serve(settings, stop=stop, options=WorkerOptions(concurrency=1, poll_interval=0.02))
            )
            await _wait_for_port(port)
            async with aiohttp.ClientSession() as session:
                bench = Bench(
                    double,
                    repo,
                    session,
                    f"http://127.0.0.1:{port}{settings.webhook_path}",
                    secret,
                    settings,
                )
                floor = await scenario(bench)
            stop.set()
            await server
    finally:
        await double.close()
    api = [r for r in double.requests if r.host == "api" and r.auth == "token"]
    jobs = floor.pop("jobs")
    counted = [r for r in api if r.status != 304]
    result: dict[str, Any] = {
        "jobs": jobs,
        "api_requests": len(api),
        "rate_limited": len(counted),
        "rate_limited_per_job": round(len(counted) / jobs, 1),
        "downloads": len([r for r in double.requests if r.host == "storage"]),
        "check_runs": len(repo.check_runs),
        "floor": floor,
    }
    result["downloads_over_floor"] = round(result["downloads"] / floor["downloads"], 2)
    result["check_runs_over_floor"] = round(result["check_runs"] / floor["check_runs"], 2)
    return {name: result}


async def _wait_for_port(port: int) -> None:
    for _ in range(500):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.01)
    raise SystemExit("serve did not start")


async def measure(names: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name in names:
        results.update(await run_scenario(name, SCENARIOS[name]))
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| scenario | jobs | requests | counted | per job | downloads (floor, ratio) "
        "| check runs (floor, ratio) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['jobs']} | {r['api_requests']} | {r['rate_limited']} | "
            f"{r['rate_limited_per_job']} | {r['downloads']} ({r['floor']['downloads']}, "
            f"{r['downloads_over_floor']}) | {r['check_runs']} ({r['floor']['check_runs']}, "
            f"{r['check_runs_over_floor']}) |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", nargs="*", help=f"of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--markdown", action="store_true", help="a table instead of JSON")
    args = parser.parse_args()
    unknown = [name for name in args.scenario if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    results = asyncio.run(measure(args.scenario or list(SCENARIOS)))
    print(markdown(results) if args.markdown else json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
