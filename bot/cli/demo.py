"""`release-guard demo`: the whole App flow on this machine, with nothing to set up.

A GitHub double (`bot.double`: GitHub's REST API and its storage host, on loopback) plays the
repository `demo-org/leaky-cli`; `release-guard serve` runs in-process against it with its
embedded worker, on the real database under DATA_DIR. Signed deliveries then play:

1. a pull request whose build artifact leaks its TypeScript source through a source map;
2. the same pull request after the fix;
3. a draft-first release: the tag's workflow run waits to publish the draft release from an
   environment release-guard protects; a draft whose asset leaks is rejected even though the
   run's own artifact is clean (nothing is ever public), and the fixed draft is approved;
4. a maintainer's `/release-guard rescan` comment.

Each step prints what the App did and the check run as a reader sees it. The jobs, their
audit trails and the retained artifacts stay for `release-guard jobs`, `audit` and `retained`.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import hmac
import io
import json
import logging
import secrets
import socket
import sys
import tarfile
import textwrap
import time
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TextIO

import aiohttp

from bot.app.worker import WorkerOptions
from bot.settings import Settings

REPOSITORY = "demo-org/leaky-cli"
MAINTAINER = "mona"
_STEP_TIMEOUT = 30.0
_FIXED_DATE = 499162500  # npm pack's date, so the artifacts are the same bytes every run

_SOURCE = """\
// src/cli.ts: the code the package must not ship in readable form
import { readFileSync } from "node:fs";

const INTERNAL_ENDPOINT = "https://internal.example/api/v2";

export function main(argv: string[]): number {
  const config = JSON.parse(readFileSync(argv[2] ?? "config.json", "utf8"));
  console.log(`calling ${INTERNAL_ENDPOINT} for ${config.user}`);
  return 0;
}
"""


def npm_tarball(*, leaky: bool) -> bytes:
    """An npm package as `npm pack` lays it out; the leaky build ships a map with its source."""
    bundle = 'var c=require("node:fs");function m(a){return 0}exports.main=m;\n'
    files: dict[str, bytes] = {
        "package/package.json": json.dumps(
            {"name": "leaky-cli", "version": "1.0.0", "main": "dist/cli.js"}
        ).encode(),
    }
    if leaky:
        source_map = {
            "version": 3,
            "file": "cli.js",
            "sources": ["../src/cli.ts"],
            "sourcesContent": [_SOURCE],
            "names": [],
            "mappings": "AAAA",
        }
        files["package/dist/cli.js"] = (bundle + "//# sourceMappingURL=cli.js.map\n").encode()
        files["package/dist/cli.js.map"] = json.dumps(source_map).encode()
    else:
        files["package/dist/cli.js"] = bundle.encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), _FIXED_DATE, 0o644
            archive.addfile(info, io.BytesIO(data))
    # A fixed gzip header time too, so the bytes (and their SHA-256) are the same every run.
    return gzip.compress(raw.getvalue(), mtime=0)


def _package_json(*, sourcemap: bool) -> str:
    """The demo repository's package.json: its build script is what leaks (or not)."""
    flags = " --sourcemap" if sourcemap else ""
    manifest = {
        "name": "leaky-cli",
        "version": "1.0.0",
        "main": "dist/cli.js",
        "files": ["dist"],
        "scripts": {
            "build": f"esbuild src/cli.ts --bundle --platform=node{flags} --outfile=dist/cli.js"
        },
    }
    return json.dumps(manifest, indent=2) + "\n"


def actions_artifact(tarball: bytes) -> bytes:
    """What `actions/upload-artifact` keeps for `path: "*.tgz"`: a zip holding the tarball."""
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo("leaky-cli-1.0.0.tgz", date_time=(1985, 10, 26, 8, 15, 0))
        archive.writestr(info, tarball)
    return raw.getvalue()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Demo:
    """Plays the scenario against a running App and prints what a reader would see."""

    def __init__(self, settings: Settings, out: TextIO) -> None:
        self.settings = settings
        self.out = out

    # --- printing -------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def heading(self, number: int, title: str) -> None:
        self.say()
        self.say(f"== {number}. {title}")

    def show_check_run(self, check: Any) -> None:
        output = check.output or {}
        self.say(f"   check run `{check.name}`: {check.status}, conclusion {check.conclusion}")
        self.say(f"   title:   {output.get('title', '')}")
        summary = str(output.get("summary", "")).strip().splitlines()
        for line in summary[:14]:
            for piece in textwrap.wrap(line, 100) or [""]:
                self.say("   | " + piece)
        if len(summary) > 14:
            self.say(f"   | … ({len(summary) - 14} more lines)")
        for note in check.annotations[:6]:
            paragraphs = [p for p in str(note["message"]).split("\n\n") if p.strip()]
            first = " ".join(paragraphs[:2])
            self.say(
                f"   annotation {note['annotation_level']:<7} {note['path']}:{note['start_line']} "
                f"[{note.get('title', '')}]"
            )
            lines = textwrap.wrap(first, 96)
            for line in lines[:4]:
                self.say("      " + line)
        if len(check.annotations) > 6:
            self.say(f"   … and {len(check.annotations) - 6} more annotations")


async def _wait(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + _STEP_TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo waited {_STEP_TIMEOUT:.0f} s for {what}")
        await asyncio.sleep(0.02)


async def run_demo(settings: Settings, out: TextIO) -> int:
    """Play the scenario; return 0 when every step ended as designed."""
    from bot.app.serve import serve
    from bot.double.helpers import make_keypair
    from bot.double.server import GitHubDouble
    from bot.secrets import Secret

    private_key, public_key = make_keypair()
    double = GitHubDouble(private_key=private_key, public_key=public_key)
    await double.start()
    secret = secrets.token_hex(32)
    app_settings = replace(
        settings,
        app_id=double.app_id,
        private_key=double.private_key,
        webhook_secret=Secret(secret),
        github_api_url=double.api_url,
        host="127.0.0.1",
        port=_free_port(),
    )
    demo = Demo(app_settings, out)
    stop = asyncio.Event()
    server = asyncio.create_task(
        serve(app_settings, stop=stop, options=WorkerOptions(concurrency=2, poll_interval=0.05))
    )
    try:
        await _wait_for_port(app_settings.port)
        async with aiohttp.ClientSession() as session:
            sender = _Sender(session, app_settings, secret)
            ok = await _scenario(demo, double, sender)
    finally:
        stop.set()
        await asyncio.wait_for(server, timeout=_STEP_TIMEOUT)
        await double.close()
    kept = await _show_retained(demo, app_settings)
    ok = ok and kept >= 2  # the pull request's artifact and the leaky draft's asset
    demo.say()
    demo.say(f"The jobs and their audit trails are in {app_settings.data_dir}:")
    demo.say("   release-guard jobs            release-guard audit JOB")
    demo.say()
    demo.say("The demo ran as designed." if ok else "The demo did NOT run as designed (see above).")
    return 0 if ok else 1


async def _show_retained(demo: Demo, settings: Settings) -> int:
    """Print the failing artifacts the App kept; return how many."""
    from bot.store import store_for
    from bot.store.base import RetainedFilter, RetentionIndex

    demo.heading(5, "Where the blocked artifacts are kept")
    store = store_for(settings, create=False)
    await store.open()
    try:
        if not isinstance(store, RetentionIndex):
            demo.say("   this database keeps no retention records")
            return 0
        records = await store.list_retained(RetainedFilter())
    finally:
        await store.close()
    demo.say(f"   store: {settings.artifact_store}")
    for record in records:
        demo.say(
            f"   {record.id}  {record.artifact_name}  {record.size:,} B  sha256 "
            f"{record.digest[:16]}…  commit {record.commit[:12]}  {record.state.value}"
        )
    if records:
        demo.say(f"   release-guard retained show {records[0].id}")
        demo.say(f"   release-guard retained export {records[0].id} ./evidence/")
    return len(records)


async def _wait_for_port(port: int) -> None:
    async def connected() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    deadline = time.monotonic() + _STEP_TIMEOUT
    while not await connected():
        if time.monotonic() > deadline:
            raise TimeoutError("the App did not start listening")
        await asyncio.sleep(0.02)


class _Sender:
    """Signs and posts deliveries the way GitHub does."""

    def __init__(self, session: aiohttp.ClientSession, settings: Settings, secret: str) -> None:
        self._session = session
        self._url = f"http://127.0.0.1:{settings.port}{settings.webhook_path}"
        self._secret = secret.encode()

    async def send(self, event: str, payload: dict[str, Any]) -> int:
        body = json.dumps(payload).encode()
        signature = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={signature}",
            "Content-Type": "application/json",
        }
        async with self._session.post(self._url, data=body, headers=headers) as answer:
            return answer.status


def _target(repo: Any) -> dict[str, Any]:
    return {
        "installation": {"id": repo.installation_id},
        "repository": {"full_name": repo.full_name, "private": True},
        "sender": {"login": MAINTAINER, "type": "User"},
    }


def _pull_request(repo: Any, number: int, sha: str, action: str) -> dict[str, Any]:
    head = {"sha": sha, "ref": "fix-cli", "repo": {"full_name": repo.full_name}}
    return {
        "action": action,
        "number": number,
        "pull_request": {"number": number, "head": head},
        **_target(repo),
    }


def _completed(repo: Any, sha: str, after: int = 0) -> Callable[[], bool]:
    return lambda: any(
        c.head_sha == sha and c.status == "completed" and c.id > after
        for c in repo.check_runs.values()
    )


def _latest(repo: Any, sha: str) -> Any:
    return max((c for c in repo.check_runs.values() if c.head_sha == sha), key=lambda c: c.id)


async def _scenario(demo: Demo, double: Any, sender: _Sender) -> bool:
    repo = double.add_repo(REPOSITORY)
    leaky, fixed = npm_tarball(leaky=True), npm_tarball(leaky=False)
    results: list[bool] = []

    demo.heading(1, "A pull request whose build leaks its source through a source map")
    sha1 = "a1" * 20
    double.add_file(repo, "package.json", _package_json(sourcemap=True), ref=sha1)
    run = double.add_run(repo, head_sha=sha1, name="build")
    double.add_artifact(repo, run, name="npm-package", data=actions_artifact(leaky))
    pull = double.add_pull(repo, head_sha=sha1, head_ref="fix-cli", title="Ship the CLI")
    status = await sender.send("pull_request", _pull_request(repo, pull.number, sha1, "opened"))
    demo.say(f"   GitHub → App: pull_request.opened #{pull.number} at {sha1[:12]}: HTTP {status}")
    await _wait(_completed(repo, sha1), "the first check run")
    check = _latest(repo, sha1)
    demo.show_check_run(check)
    results.append(check.conclusion == "failure")

    demo.heading(2, "The same pull request after the fix (no map in the package)")
    sha2 = "b2" * 20
    double.add_file(repo, "package.json", _package_json(sourcemap=False), ref=sha2)
    run = double.add_run(repo, head_sha=sha2, name="build")
    double.add_artifact(repo, run, name="npm-package", data=actions_artifact(fixed))
    pull.head_sha = sha2
    status = await sender.send(
        "pull_request", _pull_request(repo, pull.number, sha2, "synchronize")
    )
    demo.say(
        f"   GitHub → App: pull_request.synchronize #{pull.number} at {sha2[:12]}: HTTP {status}"
    )
    await _wait(_completed(repo, sha2), "the check run after the fix")
    check = _latest(repo, sha2)
    demo.show_check_run(check)
    results.append(check.conclusion == "success")

    demo.heading(3, "A draft-first release: publishing waits for release-guard's approval")
    results.append(await _gated_release(demo, double, repo, sender, "v1.0.0", leaky, fixed))
    results.append(await _gated_release(demo, double, repo, sender, "v1.0.1", fixed, fixed))

    demo.heading(4, f"A maintainer ({MAINTAINER}, write access) comments `/release-guard rescan`")
    double.set_permission(repo, MAINTAINER, "write")
    comment_id = double.state.next_id()
    from bot.double.state import Comment

    repo.comments[comment_id] = Comment(
        comment_id, pull.number, "/release-guard rescan", MAINTAINER
    )
    before = max(repo.check_runs)
    comment = {
        "action": "created",
        "issue": {"number": pull.number, "pull_request": {"url": "https://example.invalid"}},
        "comment": {
            "id": comment_id,
            "body": "/release-guard rescan",
            "user": {"login": MAINTAINER, "type": "User"},
            "author_association": "MEMBER",
        },
        **_target(repo),
    }
    status = await sender.send("issue_comment", comment)
    demo.say(f"   GitHub → App: issue_comment.created by {MAINTAINER}: HTTP {status}")
    replies_before = len(repo.comments)
    await _wait(lambda: len(repo.comments) > replies_before, "the App's reply")
    reactions = [r.content for r in repo.reactions]
    demo.say(f"   App → GitHub: reaction {', '.join(reactions) or '(none)'} on the comment")
    reply = max(repo.comments.values(), key=lambda c: c.id)
    demo.say("   App → GitHub: reply:")
    for line in str(reply.body).splitlines()[:6]:
        demo.say("      " + line)
    rescanned = [c for c in repo.check_runs.values() if c.id > before]
    results.append(bool(rescanned) and rescanned[-1].conclusion == "success")

    return all(results)


async def _gated_release(
    demo: Demo, double: Any, repo: Any, sender: _Sender, tag: str, asset: bytes, built: bytes
) -> bool:
    """Tag `tag`: a draft release carries `asset`, the run's artifact is `built`; its publish
    job waits in the `release` environment. True when the gate answered as it should: rejected
    for a leaky draft asset, approved for a clean one; the draft stays a draft either way."""
    sha = hashlib.sha1(tag.encode(), usedforsecurity=False).hexdigest()
    double.add_file(repo, "package.json", _package_json(sourcemap=asset != built), ref=sha)
    double.add_tag(repo, tag, commit=sha)
    run = double.add_run(
        repo, head_sha=sha, head_branch=tag, name="release", status="waiting", conclusion=None
    )
    double.add_artifact(repo, run, name="npm-package", data=actions_artifact(built))
    draft = double.add_release(repo, tag_name=tag, name=tag, draft=True, target_commitish=sha)
    double.add_asset(repo, draft, name=f"leaky-cli-{tag[1:]}.tgz", data=asset)
    leaky = asset != built
    demo.say(
        f"   tag {tag}: the build job uploaded a clean npm-package artifact and created a draft "
        f"release with {'the LEAKY' if leaky else 'the fixed'} tarball attached"
    )
    payload = {
        "action": "requested",
        "environment": "release",
        "event": "push",
        "deployment_callback_url": (
            f"{double.api_url}/repos/{repo.full_name}/actions/runs/{run.id}"
            "/deployment_protection_rule"
        ),
        "deployment": {"id": double.state.next_id(), "sha": sha, "ref": tag},
        **_target(repo),
    }
    status = await sender.send("deployment_protection_rule", payload)
    demo.say(
        f"   GitHub → App: deployment_protection_rule.requested, the publish job waits: "
        f"HTTP {status}"
    )
    await _wait(lambda: bool(run.deployment_reviews), "the gate's answer")
    [review] = run.deployment_reviews
    demo.say(f"   App → GitHub: {review['state']} the deployment to `release`:")
    for line in textwrap.wrap(str(review["comment"]), 96)[:5]:
        demo.say("      " + line)
    await _wait(_completed(repo, sha), "the gate's check run")
    demo.show_check_run(_latest(repo, sha))
    expected = "rejected" if leaky else "approved"
    if leaky:
        demo.say(f"   the draft {tag} was never published: nothing leaky became public")
    else:
        demo.say(f"   the publish job may now run `gh release edit {tag} --draft=false`")
    return bool(review["state"] == expected and draft.draft)


def run_demo_command(args: argparse.Namespace) -> int:
    """`release-guard demo`: exit 0 when the demo ran as designed."""
    settings = Settings.from_environment()
    logging.getLogger().setLevel(logging.WARNING)
    return asyncio.run(run_demo(settings, args.out))


def add_demo_command(commands: Any) -> None:
    """Add `demo` to the CLI's subparsers."""
    demo = commands.add_parser(
        "demo",
        help="the whole App flow on this machine, with nothing to set up",
        description=(
            "Start a GitHub double and the App on loopback, play a leaking pull request, its "
            "fix, a draft-first release held at the deployment gate and a comment rescan, and "
            "print what the App did. Data stays under DATA_DIR for `jobs`, `audit` and "
            "`retained`."
        ),
    )
    demo.set_defaults(handler=run_demo_command, out=sys.stdout)
