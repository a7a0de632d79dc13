"""TEST ONLY: run the real `release-guard` command line with a job handler made for tests.

    python tests/kill9_serve.py serve --port 0      # same arguments as `release-guard`

tests/test_kill9.py starts this as a subprocess. It parses the arguments with the real CLI
parser and runs the real `serve`/`worker` code; the one difference is the job handler factory,
replaced here (production code has no switch for it). The handler writes what it does into
$KILL9_DIR, and behaves as $KILL9_MODE says:

- `block-first`: the first attempt of a job blocks forever (the test kills the process);
  later attempts finish at once;
- `slow`: every attempt takes one second, then finishes (to watch a SIGTERM drain).

Notes: `started-<job>-<attempt>-<pid>` when a run starts; a `<job> <attempt> <pid>` line in
`finished` when it ends; a line in `gave_up` if the worker gives up.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp

from bot.cli.main import build_parser
from bot.jobs import JobContext, JobHandler
from bot.settings import Settings
from bot.store.base import Job


class NotingHandler:
    def __init__(self, notes: Path, mode: str) -> None:
        self.notes = notes
        self.mode = mode

    def _append(self, name: str, line: str) -> None:
        with (self.notes / name).open("a", encoding="utf-8") as out:
            out.write(line + "\n")
            out.flush()
            os.fsync(out.fileno())

    async def run(self, job: Job, ctx: JobContext) -> str | None:
        (self.notes / f"started-{job.id}-{ctx.attempt}-{os.getpid()}").touch()
        await ctx.audit("scanning", f"test handler, attempt {ctx.attempt}")
        if self.mode == "block-first" and ctx.attempt == 1:
            await asyncio.Event().wait()  # until the test kills this process
        if self.mode == "slow":
            await asyncio.sleep(1)
        self._append("finished", f"{job.id} {ctx.attempt} {os.getpid()}")
        return f"finished by the test handler on attempt {ctx.attempt}"

    async def give_up(self, job: Job, ctx: JobContext, reason: str) -> None:
        self._append("gave_up", f"{job.id} {reason}")


def factory(settings: Settings, session: aiohttp.ClientSession) -> JobHandler:
    return NotingHandler(Path(os.environ["KILL9_DIR"]), os.environ.get("KILL9_MODE", "slow"))


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    args.job_handler_factory = factory
    code: int = args.handler(args)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
