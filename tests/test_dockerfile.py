"""The Dockerfile's promises, read from the file: a builder stage with the build tools, a final
stage on `BASE_IMAGE` (`python:3.12-slim` by default) with only the wheels installed, a non-root
user, port 3000, a health check without curl, /data as the volume, and nothing that makes
BuildKit reach a registry on its own (no `# syntax=` line).

The image itself is built and run by `.ci/image` under `.ci/run` (Debian's docker.io on a local
debootstrap base): that script checks what only a running container shows (the answers, the
uid, the stop, the logs); these tests keep the file's structure honest in every test run."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cc|python3?-dev|libc6-dev)\b")


@dataclass
class Stage:
    """One `FROM` and the instructions under it."""

    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"no {keyword} in the stage FROM {self.image}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    """Split a Dockerfile into stages of (INSTRUCTION, arguments), continuations joined.

    A `FROM ${ARG}` names its image by the default of a global `ARG` (one before the first
    FROM), as `docker build` does without `--build-arg`.
    """
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1].rstrip() + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name.strip()] = default.strip()
            continue
        if keyword == "FROM":
            words = args.split()
            image = re.sub(
                r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), words[0]
            )
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=image, name=name))
            continue
        assert stages, f"{keyword} before any FROM"
        stages[-1].instructions.append((keyword, args))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def test_two_stages_final_is_python_312_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    assert stages[-1].image == "python:3.12-slim"  # BASE_IMAGE's default
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^ARG BASE_IMAGE=python:3\.12-slim$", text, re.MULTILINE)
    assert [line for line in text.splitlines() if line.startswith("FROM ")] == [
        "FROM ${BASE_IMAGE} AS builder",
        "FROM ${BASE_IMAGE} AS runtime",
    ]
    builder = stages[0]
    assert any("pip wheel" in run for run in builder.all("RUN"))
    assert any(BUILD_TOOLS.search(run) for run in builder.all("RUN")), "the builder builds"


def test_the_final_stage_installs_only_the_wheels(stages: list[Stage]) -> None:
    final, builder = stages[-1], stages[0]
    runs = final.all("RUN")
    assert not any("apt-get install" in run or BUILD_TOOLS.search(run) for run in runs)
    [install] = [run for run in runs if "pip install" in run]
    assert "--no-index" in install and "release-guard" in install
    # Into a virtual environment whose bin/ leads PATH: a Debian base's own Python refuses
    # pip installs (PEP 668), and the base's Python stays untouched on any base.
    assert "python3 -m venv /opt/release-guard" in install
    assert "/opt/release-guard/bin/python -m pip install" in install
    assert "PATH=/opt/release-guard/bin:$PATH" in " ".join(final.all("ENV"))
    assert f"from={builder.name}" in install  # the wheels, bind-mounted from the builder
    copies = final.all("COPY")
    assert all(not re.search(r"(^|\s)\.(\s|$)", copy) for copy in copies), "no source tree"
    assert all("bot" not in copy.split() for copy in copies)


def test_runs_as_a_non_root_user(stages: list[Stage]) -> None:
    final = stages[-1]
    user = final.last("USER")
    assert user.split(":")[0] not in ("root", "0")
    keys = [key for key, _ in final.instructions]
    assert keys.index("USER") < keys.index("CMD")
    assert keys[keys.index("USER") + 1 :].count("RUN") == 0, "nothing runs as root after USER"


def test_serves_on_3000_with_a_healthcheck_and_data_volume(stages: list[Stage]) -> None:
    final = stages[-1]
    assert "3000" in final.last("EXPOSE").split()
    assert json.loads(final.last("CMD")) == ["release-guard", "serve"]
    procfile = (ROOT / "Procfile").read_text(encoding="utf-8")
    assert "release-guard serve" in procfile  # the same command a PaaS runs
    check = final.last("HEALTHCHECK")
    assert "/healthz" in check and "python" in check
    assert "curl" not in check and "wget" not in check
    command = json.loads(check.split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"]
    compile(command[2], "<healthcheck>", "exec")  # valid Python
    envs = " ".join(final.all("ENV"))
    assert "DATA_DIR=/data" in envs
    assert "/data" in json.loads(final.last("VOLUME"))
    assert final.last("WORKDIR") == "/data"  # .env from the setup page lands in the volume


def test_nothing_makes_buildkit_reach_a_registry_on_its_own() -> None:
    """A `# syntax=` directive makes BuildKit pull a frontend image: none where CI builds."""
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE | re.IGNORECASE)
    assert "# syntax=" not in text.split("\n", 1)[0]


def test_ci_builds_and_smoke_tests_the_image() -> None:
    """`.ci/run` runs `.ci/image` after the tests, and the script checks what it claims."""
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    image = (ROOT / ".ci" / "image").read_text(encoding="utf-8")
    assert run.index("-m pytest") < run.index("bash .ci/image")
    for needle in (
        "debootstrap --variant=minbase",
        "docker import",
        '--build-arg "BASE_IMAGE=$base"',
        "/healthz",
        "/readyz",
        "X-Hub-Signature-256",
        "not_root",
        "docker stop",
        "trap cleanup EXIT",
        "image size",
    ):
        assert needle in image.replace('"$DOCKER"', "docker"), needle


def test_the_build_context_keeps_secrets_out() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "an allowlist: everything is left out unless named"
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert not {".env", "data", "data/", ".venv"} & allowed
    assert {"pyproject.toml", "README.md", "bot/", "app.yml"} <= allowed
    for name in ("pyproject.toml", "README.md", "bot", "app.yml"):
        assert (ROOT / name).exists()


def test_parser_joins_continuations_and_names_stages() -> None:
    stages = parse_dockerfile(
        'ARG BASE=a:1\nFROM ${BASE} AS one\nRUN x \\\n  # note\n  && y\nFROM b\nCMD ["z"]\n'
    )
    assert [(s.image, s.name) for s in stages] == [("a:1", "one"), ("b", None)]
    assert stages[0].instructions == [("RUN", "x && y")]
    assert shlex.split(stages[0].instructions[0][1]) == ["x", "&&", "y"]
