"""Refresh the vendored ECMA-426 conformance suite (tc39/source-map-tests).

    python tests/conformance/refresh_source_map_tests.py            # clone the default branch
    python tests/conformance/refresh_source_map_tests.py CHECKOUT   # or copy from a checkout

Copies `source-map-spec-tests.json`, the map of every test case it lists (`sourceMapFile`,
under `resources/`) and the licence into tests/conformance/source-map-tests/, and records
the commit in ORIGIN.md. Nothing else of the repository is copied: tests/test_conformance.py
needs only the maps and whether each is valid. Run it, then the tests, and commit the result.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = "https://github.com/tc39/source-map-tests"
TARGET = Path(__file__).parent / "source-map-tests"
SUITE = "source-map-spec-tests.json"


def _git(checkout: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(checkout), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def copy_from(checkout: Path) -> None:
    suite = json.loads((checkout / SUITE).read_text(encoding="utf-8"))
    maps = sorted({test["sourceMapFile"] for test in suite["tests"]})
    if TARGET.exists():
        shutil.rmtree(TARGET)
    (TARGET / "resources").mkdir(parents=True)
    shutil.copyfile(checkout / SUITE, TARGET / SUITE)
    shutil.copyfile(checkout / "LICENSE.md", TARGET / "LICENSE.md")
    for name in maps:
        shutil.copyfile(checkout / "resources" / name, TARGET / "resources" / name)
    commit = _git(checkout, "rev-parse", "HEAD")
    date = _git(checkout, "log", "-1", "--format=%cI")
    (TARGET / "ORIGIN.md").write_text(
        "# Origin\n\n"
        f"Copied from {REPOSITORY} at commit `{commit}` ({date}) by\n"
        "`tests/conformance/refresh_source_map_tests.py`: `source-map-spec-tests.json`, the\n"
        f"{len(maps)} maps its test cases name (`resources/`), and the licence (`LICENSE.md`,\n"
        "BSD 3-clause, Ecma International). The files are unchanged.\n",
        encoding="utf-8",
    )
    print(f"{len(suite['tests'])} cases, {len(maps)} maps, commit {commit}")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        copy_from(Path(argv[1]))
        return 0
    with tempfile.TemporaryDirectory() as folder:
        checkout = Path(folder) / "source-map-tests"
        subprocess.run(["git", "clone", "--depth", "1", REPOSITORY, str(checkout)], check=True)
        copy_from(checkout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
