r"""How fast the streaming source-map scanner runs, against gzip decompression of the same bytes.

    .venv/bin/python benchmarks/sourcemap_scan.py [--size-mb 60] [--repeat 3]

It generates (in memory) two source maps and prints MB/s for each, best of `--repeat`:

- "big strings": about `--size-mb` MB whose bulk is three large `sourcesContent` strings
  full of escapes (`\n`, `\"`, `\\`, `\t`), plus a long `mappings` string and a large
  `names` array;
- "modules": about half that size, a bundle of 3000 modules of 0.5 to 12 KB each (one
  `sources` and one `sourcesContent` entry per module), 50 000 names;

and for each: `gzip.decompress` of the map compressed at level 6 (MB/s of output),
`check_map_stream` (the whole `.map` check, fed 1 MiB reads from a BytesIO) and
`check_code_stream` on the same map inline in a JS file as a base64 `data:` URL (MB/s of
JSON). No assertion: it is a measurement to read, not a test.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import io
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.engine.sourcemaps import check_code_stream, check_map_stream

_WORDS = [
    "const", "value", "=", '"quoted"', "return", "function", "{", "}", "\\", "if", "(a)",
    "'single'", "café", "\t", "path\\to\\file", "=>", "await", "x.y", "// note", "`tpl`",
]  # fmt: skip


def _source_text(rng: random.Random, size: int) -> str:
    lines = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 12)))
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines)


def make_map(size_mb: float, seed: int = 1) -> bytes:
    """A map of about `size_mb` MB: 70 % sourcesContent, 25 % mappings, the rest names."""
    rng = random.Random(seed)
    target = int(size_mb * 1_000_000)
    # JSON escaping grows the text by roughly a tenth; three big files and a small one.
    content_chars = int(target * 0.70 / 1.12)
    contents = [_source_text(rng, content_chars // 3) for _ in range(3)] + ["export {};\n"]
    segment_count = int(target * 0.25 / 5)
    segments = [
        rng.choice(["AAAA", "CAAC", "EAAE", "GAAG", "kBAAkB"]) for _ in range(segment_count)
    ]
    mappings = ";".join(",".join(segments[i : i + 40]) for i in range(0, len(segments), 40))
    names = [f"name{i}" for i in range(int(target * 0.05 / 10))]
    document = {
        "version": 3,
        "file": "bundle.js",
        "sources": ["src/a.ts", "src/b.ts", "src/c.ts", "src/d.ts"],
        "sourcesContent": contents,
        "names": names,
        "mappings": mappings,
    }
    return json.dumps(document).encode("utf-8")


def make_module_map(modules: int = 3000, seed: int = 3) -> bytes:
    """A bundle's map: many modules, each with its own sources/sourcesContent entry."""
    rng = random.Random(seed)
    document = {
        "version": 3,
        "file": "main.js",
        "sources": [
            f"webpack://app/./node_modules/pkg{i}/lib/module{i}.js" for i in range(modules)
        ],
        "sourcesContent": [_source_text(rng, rng.randint(500, 12_000)) for _ in range(modules)],
        "names": [f"n{i}" for i in range(50_000)],
        "mappings": ";".join(
            ",".join(rng.choice(["AAAA", "CAAC", "EAAE", "kBAAkB"]) for _ in range(30))
            for _ in range(40_000)
        ),
    }
    return json.dumps(document).encode("utf-8")


def _best_of(repeat: int, run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def measure(label: str, data: bytes, repeat: int) -> None:
    compressed = gzip.compress(data, compresslevel=6)
    code = b"console.log(1);\n//# sourceMappingURL=data:application/json;base64,"
    code += base64.b64encode(data) + b"\n"
    megabytes = len(data) / 1e6
    backslashes = data.count(b"\\") / 1e6
    print(
        f"{label}: {megabytes:.1f} MB map ({backslashes:.1f} M backslashes), "
        f"{len(compressed) / 1e6:.1f} MB gzipped"
    )
    results = {
        "gzip.decompress": _best_of(repeat, lambda: gzip.decompress(compressed)),
        "check_map_stream": _best_of(
            repeat, lambda: check_map_stream(io.BytesIO(data), path="bundle.js.map")
        ),
        "check_code_stream (inline base64)": _best_of(
            repeat, lambda: check_code_stream(io.BytesIO(code), path="bundle.js")
        ),
    }
    for name, seconds in results.items():
        print(f"  {name:36s} {megabytes / seconds:8.0f} MB/s  ({seconds * 1000:.0f} ms)")
    observations = check_map_stream(io.BytesIO(data), path="bundle.js.map")
    print("  findings:", [o.rule.value for o in observations])


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mb", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    measure("big strings", make_map(args.size_mb), args.repeat)
    measure("modules", make_module_map(), args.repeat)


if __name__ == "__main__":
    main()
