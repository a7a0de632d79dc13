"""What the secret search costs, next to its floor: inflating the same archive.

    python benchmarks/secrets_scan.py            # leak.tgz (built once by benchmarks/scan.py)
    python benchmarks/secrets_scan.py --repeat 5

One process, interleaved runs, the best of each kept: the floor (Python's gzip read of the
whole archive, 1 MiB at a time), the same read with every chunk fed to a `SecretScanner` (the
Aho-Corasick prefilter, then regexes and checksums only around hits), the same with the
`bytes.find` fallback prefilter, and the candidate scanners this design was chosen over (one
compiled regex alternation of the literals). Each row gives CPU seconds, MB/s of uncompressed
text and the ratio to the floor; the search's own share is `ratio - 1`. The tar stream is
searched as one file: the search does not care where members start.

Then the whole engine (`scan_path`, read-ahead thread included) with the secret search on,
and with `SecretScanner.feed` stubbed out (every file is still read whole), in CPU seconds
of the process (all threads): on a shared machine wall time mostly measures the wait for a
core, CPU time what the work costs (so every figure here is CPU time).
"""

from __future__ import annotations

import argparse
import gzip
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scan import MIB, ensure
from bot.engine import secrets_scan
from bot.engine.policy import Policy
from bot.engine.scan import scan_path
from bot.engine.secrets_formats import FORMATS

Feed = Callable[[bytes], None]


def _run(path: Path, make_feed: Callable[[], tuple[Feed, Callable[[], object]]]) -> float:
    feed, close = make_feed()
    start = time.process_time()
    with gzip.open(path, "rb") as stream:
        while chunk := stream.read(MIB):
            feed(chunk)
    close()
    return time.process_time() - start


def _floor() -> tuple[Feed, Callable[[], object]]:
    return (lambda chunk: None), (lambda: None)


def _scanner(fast: bool) -> Callable[[], tuple[Feed, Callable[[], object]]]:
    def make() -> tuple[Feed, Callable[[], object]]:
        secrets_scan._PREFILTER = secrets_scan.Prefilter(FORMATS, fast=fast)
        scanner = secrets_scan.SecretScanner("leak.tgz")
        return scanner.feed, scanner.close

    return make


_ALTERNATION = re.compile(b"|".join(re.escape(lit) for f in FORMATS for lit in f.literals))


def _regex_alternation() -> tuple[Feed, Callable[[], object]]:
    def feed(chunk: bytes) -> None:
        for _ in _ALTERNATION.finditer(chunk):
            pass

    return feed, (lambda: None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--archive", default="leak.tgz", choices=["leak.tgz", "large.tgz"])
    args = parser.parse_args()
    path = ensure(args.archive)
    with gzip.open(path, "rb") as stream:
        size = sum(len(chunk) for chunk in iter(lambda: stream.read(MIB), b""))
    cases: dict[str, Callable[[], tuple[Feed, Callable[[], object]]]] = {
        "floor: gzip read": _floor,
        "secrets, Aho-Corasick prefilter": _scanner(True),
        "secrets, bytes.find prefilter": _scanner(False),
        "regex alternation only (rejected)": _regex_alternation,
    }
    best = {name: float("inf") for name in cases}
    for _ in range(args.repeat):
        for name, make in cases.items():
            best[name] = min(best[name], _run(path, make))
    secrets_scan._PREFILTER = secrets_scan.Prefilter(FORMATS)
    engine = _engine(path, args.repeat)
    floor = best["floor: gzip read"]
    print(f"{args.archive}: {size / 1e6:.1f} MB uncompressed, best of {args.repeat}")
    print(f"{'case':<36} {'CPU s':>8} {'MB/s':>8} {'ratio':>6}")
    for name, seconds in best.items():
        print(f"{name:<36} {seconds:8.3f} {size / 1e6 / seconds:8.0f} {seconds / floor:6.2f}")
    off, on = engine["secrets off"], engine["secrets on"]
    print(f"\nscan_path, CPU seconds (best of {args.repeat}): secrets off {off:.3f}, on {on:.3f}")
    print(f"the secret search's share of the whole scan: +{(on - off) / off:.1%}")
    return 0


def _engine(path: Path, repeat: int) -> dict[str, float]:
    """CPU seconds of `scan_path` with the secret search on and stubbed out, interleaved."""
    real_feed = secrets_scan.SecretScanner.feed

    def no_feed(self: secrets_scan.SecretScanner, chunk: bytes) -> None:
        del self, chunk

    best = {"secrets off": float("inf"), "secrets on": float("inf")}
    try:
        for _ in range(repeat):
            for name, feed in (("secrets off", no_feed), ("secrets on", real_feed)):
                secrets_scan.SecretScanner.feed = feed  # type: ignore[method-assign]
                start = time.process_time()
                scan_path(path, policy=Policy())
                best[name] = min(best[name], time.process_time() - start)
    finally:
        secrets_scan.SecretScanner.feed = real_feed  # type: ignore[method-assign]
    return best


if __name__ == "__main__":
    raise SystemExit(main())
