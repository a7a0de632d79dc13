"""Measure `release-guard scan` against the floor: decompressing the same archive.

    python benchmarks/scan.py            # build the archives once (cached), then measure
    python benchmarks/scan.py --repeat 5 # more runs per measurement (the best is kept)

Two archives are built deterministically (a seeded generator, fixed timestamps) under
`benchmarks/out/` (git-ignored), once:

- `leak.tgz`: an npm-like package with a 60 MB `package/cli.js.map` that embeds its sources
  (the 2026 incident's shape), a 13 MB `package/cli.js` bundle pointing at it, and 300 small
  files;
- `large.tgz`: about 1 GiB uncompressed: 200 bundles of ~5 MiB with linked maps without
  sources, and 200 small files.

For each archive it prints, from one run: the floors (`tar -xzOf FILE >/dev/null`, and
Python's gzip stream read of the whole archive), the scan's wall time (`python -m bot scan
--format json`, in a child process, interpreter start included), its ratio to `tar -xzOf`
and to the faster floor, and the scan's peak RSS (the child's `ru_maxrss` from `wait4`).
Measurements alternate (tar, gzip, scan, tar, ...) so that a busy machine weighs on all
alike; the best of `--repeat` is kept. Aims (issue 17): the scan at most 0.8x `tar -xzOf`,
peak RSS under 150 MB, on both archives. The maps are valid (their `mappings` decode
completely), so the ECMA-426 validator does all its work.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

OUT = Path(__file__).parent / "out"
MTIME = 499162500  # npm pack's fixed date
MIB = 1 << 20

_WORDS = [
    "const",
    "let",
    "var",
    "function",
    "return",
    "if",
    "else",
    "for",
    "while",
    "await",
    "async",
    "import",
    "export",
    "from",
    "default",
    "class",
    "extends",
    "new",
    "this",
    "null",
    "undefined",
    "true",
    "false",
    "typeof",
    "instanceof",
    "switch",
    "case",
    "break",
    "continue",
    "try",
    "catch",
    "finally",
    "throw",
    "yield",
    "of",
    "in",
    "delete",
    "void",
    "static",
    "get",
    "set",
    "super",
    "options",
    "config",
    "value",
    "result",
    "error",
    "request",
    "response",
    "context",
    "handler",
    "session",
    "token",
    "render",
    "update",
    "state",
    "props",
    "children",
    "element",
    "node",
    "parent",
    "index",
    "length",
    "buffer",
    "stream",
]
_PUNCT = ["(", ")", "{", "}", "[", "]", ";", ",", ".", " = ", " => ", " + ", " === ", "\n", "\n  "]


def _source_text(rng: random.Random, size: int) -> str:
    """Code-like text of about `size` characters: quotes, backslashes and newlines included."""
    parts: list[str] = []
    total = 0
    while total < size:
        roll = rng.random()
        if roll < 0.55:
            piece = rng.choice(_WORDS)
        elif roll < 0.85:
            piece = rng.choice(_PUNCT)
        elif roll < 0.93:
            piece = f'"{rng.choice(_WORDS)} {rng.randint(0, 9999)}"'
        elif roll < 0.97:
            piece = f"'{rng.choice(_WORDS)}\\n'"
        else:
            piece = f"// {rng.choice(_WORDS)} {rng.choice(_WORDS)}\n"
        parts.append(piece)
        parts.append(" ")
        total += len(piece) + 1
    return "".join(parts)


_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _vlq(value: int) -> str:
    bits = (-value << 1) | 1 if value < 0 else value << 1
    out = ""
    while True:
        digit, bits = bits & 31, bits >> 5
        if not bits:
            return out + _BASE64[digit]
        out += _BASE64[digit | 32]


def _mappings(rng: random.Random, size: int, *, sources: int, names: int) -> str:
    """Valid ECMA-426 `mappings` of about `size` characters, shaped like a bundler's.

    Segments of 4 or 5 fields (a third with a name), columns rising along long lines,
    source indices that mostly stay and sometimes jump, original lines that drift: every
    index in bounds and no position negative, so the whole string is decoded and found
    valid (a validator that stopped at a first error would cost less).
    """
    encoded = {value: _vlq(value) for value in range(-2000, 2001)}
    vlq = encoded.get
    parts: list[str] = []
    total = 0
    source = line = column = name = 0
    while total < size:
        if rng.random() < 0.02:  # a new generated line
            parts.append(";")
            total += 1
            first = True
        else:
            first = not parts or parts[-1] == ";"
        delta_column = rng.randint(1, 40)
        target = rng.randrange(sources) if rng.random() < 0.03 else source
        new_line = max(0, line + rng.randint(-2, 4))
        new_column = rng.randint(0, 80)
        segment = (
            (vlq(delta_column) or _vlq(delta_column))
            + _vlq(target - source)
            + (vlq(new_line - line) or _vlq(new_line - line))
            + (vlq(new_column - column) or _vlq(new_column - column))
        )
        source, line, column = target, new_line, new_column
        if names and rng.random() < 0.33:
            target_name = rng.randrange(names)
            segment += _vlq(target_name - name)
            name = target_name
        if not first:
            parts.append(",")
            total += 1
        parts.append(segment)
        total += len(segment)
    return "".join(parts)


def _add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = MTIME
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(data))


def _small_files(rng: random.Random, count: int) -> Iterator[tuple[str, bytes]]:
    for index in range(count):
        folder = rng.choice(["lib", "lib/util", "types", "assets", "docs"])
        suffix = rng.choice([".js", ".d.ts", ".json", ".md", ".css"])
        text = _source_text(rng, rng.randint(500, 12_000))
        yield f"package/{folder}/file{index}{suffix}", text.encode()


def build_leak(path: Path) -> None:
    """The incident's shape: a 60 MB map with sourcesContent, a 13 MB bundle, 300 files."""
    rng = random.Random(2026)
    sources = [
        f"../src/{rng.choice(['core', 'ui', 'tools', 'net'])}/module{i}.ts" for i in range(1900)
    ]
    content = [_source_text(rng, rng.randint(8_000, 30_000)) for _ in sources]
    source_map = {
        "version": 3,
        "file": "cli.js",
        "sources": sources,
        "sourcesContent": content,
        "names": [rng.choice(_WORDS) + str(i) for i in range(20_000)],
        "mappings": "",
    }
    without_mappings = len(json.dumps(source_map).encode())
    size = max(0, 60_000_000 - without_mappings)
    source_map["mappings"] = _mappings(rng, size, sources=len(sources), names=20_000)
    map_bytes = json.dumps(source_map).encode()
    bundle = _source_text(rng, 13_000_000).encode() + b"\n//# sourceMappingURL=cli.js.map\n"
    manifest = json.dumps({"name": "leaky-cli", "version": "1.0.0", "bin": "cli.js"}).encode()
    with tarfile.open(path, "w:gz", compresslevel=6, format=tarfile.USTAR_FORMAT) as archive:
        _add(archive, "package/package.json", manifest)
        _add(archive, "package/cli.js", bundle)
        _add(archive, "package/cli.js.map", map_bytes)
        for name, data in _small_files(rng, 300):
            _add(archive, name, data)


def build_large(path: Path) -> None:
    """About 1 GiB uncompressed: 200 bundles of ~5 MiB with maps, 200 small files."""
    rng = random.Random(1024)
    blocks = [_source_text(rng, MIB).encode() for _ in range(12)]
    with tarfile.open(path, "w:gz", compresslevel=6, format=tarfile.USTAR_FORMAT) as archive:
        for index in range(200):
            body = b"".join(rng.choice(blocks) for _ in range(5))
            name = f"package/dist/chunk{index}.js"
            _add(archive, name, body + f"\n//# sourceMappingURL=chunk{index}.js.map\n".encode())
            chunk_map = {
                "version": 3,
                "sources": [f"../src/chunk{index}.ts"],
                "names": [],
                "mappings": _mappings(rng, 2000, sources=1, names=0),
            }
            _add(archive, name + ".map", json.dumps(chunk_map).encode())
        for name, data in _small_files(rng, 200):
            _add(archive, name, data)


def ensure(name: str) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / name
    if not path.exists():
        print(f"building {path} (once) ...", file=sys.stderr, flush=True)
        partial = path.with_suffix(".partial")
        (build_leak if name == "leak.tgz" else build_large)(partial)
        partial.replace(path)
    return path


def gzip_floor(path: Path) -> tuple[float, int]:
    start = time.perf_counter()
    total = 0
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(MIB):
            total += len(chunk)
    return time.perf_counter() - start, total


def tar_floor(path: Path) -> float | None:
    if shutil.which("tar") is None:
        return None
    start = time.perf_counter()
    subprocess.run(["tar", "-xzOf", str(path)], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def scan_report(path: Path) -> dict[str, object]:
    """Scan once more, for the report's verdict (not timed)."""
    command = [sys.executable, "-m", "bot", "scan", "--format", "json", str(path)]
    done = subprocess.run(command, capture_output=True, check=False, cwd=OUT)
    if done.returncode not in (0, 1):
        raise SystemExit(f"scan failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
    report: dict[str, object] = json.loads(done.stdout)
    return report


def timed_scan(path: Path) -> tuple[float, int]:
    """Scan in a child process; return wall seconds and the child's own peak RSS in bytes.

    The child is reaped with wait4, so its rusage is its own, not a total over children.
    """
    command = [sys.executable, "-m", "bot", "scan", "--format", "json", "--output", os.devnull]
    start = time.perf_counter()
    # From benchmarks/out: no .github/release-guard.yml there, so the default policy applies.
    child = subprocess.Popen([*command, str(path)], stderr=subprocess.PIPE, cwd=OUT)
    assert child.stderr is not None
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = child.stderr.read()
    child.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"scan failed ({code}): {stderr.decode(errors='replace')}")
    return elapsed, usage.ru_maxrss * 1024


def measure(name: str, repeat: int) -> dict[str, object]:
    path = ensure(name)
    floors: list[tuple[float, int]] = []
    tar_times: list[float] = []
    scans: list[tuple[float, int]] = []
    for _ in range(repeat):  # interleaved: load on the machine weighs on every kind alike
        tar = tar_floor(path)
        if tar is not None:
            tar_times.append(tar)
        floors.append(gzip_floor(path))
        scans.append(timed_scan(path))
    floor_py = min(seconds for seconds, _ in floors)
    uncompressed = floors[0][1]
    floor_tar = min(tar_times) if tar_times else None
    scan_time = min(seconds for seconds, _ in scans)
    peak = max(rss for _, rss in scans)
    report = scan_report(path)
    floor = min(t for t in (floor_py, floor_tar) if t is not None)
    summary = report.get("summary")
    return {
        "archive": name,
        "compressed_mb": round(path.stat().st_size / 1e6, 1),
        "uncompressed_mb": round(uncompressed / 1e6, 1),
        "floor_python_gzip_s": round(floor_py, 3),
        "floor_tar_xzOf_s": None if floor_tar is None else round(floor_tar, 3),
        "scan_s": round(scan_time, 3),
        "ratio_to_floor": round(scan_time / floor, 2),
        "ratio_to_tar": None if floor_tar is None else round(scan_time / floor_tar, 2),
        "scan_peak_rss_mb": round(peak / 1e6, 1),
        "conclusion": report.get("conclusion"),
        "summary": summary,
    }


def compile_package() -> None:
    """Write the package's bytecode first, as an install does: where PYTHONDONTWRITEBYTECODE
    is set and the .pyc files are stale, every timed run would compile the sources again
    (about 0.3 s, as much as the whole floor of the leak-sized archive)."""
    code = "import bot, compileall; compileall.compile_dir(bot.__path__[0], quiet=1)"
    OUT.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=OUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; best kept")
    parser.add_argument("--only", choices=["leak.tgz", "large.tgz"], help="one archive only")
    args = parser.parse_args()
    names = [args.only] if args.only else ["leak.tgz", "large.tgz"]
    compile_package()
    results = [measure(name, args.repeat) for name in names]
    columns = ("archive", "MB gz", "MB raw", "tar s", "gzip.py s", "scan s", "scan/tar")
    print("  ".join(f"{c:>10}" for c in (*columns, "peak RSS MB")))
    for row in results:
        cells = (
            row["archive"],
            row["compressed_mb"],
            row["uncompressed_mb"],
            row["floor_tar_xzOf_s"],
            row["floor_python_gzip_s"],
            row["scan_s"],
            row["ratio_to_tar"],
            row["scan_peak_rss_mb"],
        )
        print("  ".join(f"{c!s:>10}" for c in cells))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
