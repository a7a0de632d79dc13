"""Tests of bot/engine/sourcemaps.py: map checks, pragma checks, streaming edge cases."""

from __future__ import annotations

import base64
import io
import json
import random
import tarfile
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.engine import sourcemaps
from bot.engine.model import Observation, Rule
from bot.engine.sourcemaps import (
    CodeCheck,
    MapReference,
    MapScanner,
    check_code_stream,
    check_map_stream,
    human_size,
    join_source,
)
from bot.errors import LimitReached

FIXTURES = Path(__file__).parent / "fixtures" / "real"


# --------------------------------------------------------------------------- helpers


class ChunkedStream:
    """A read-once stream that hands out at most `sizes[k]` bytes per read (cycling)."""

    def __init__(self, data: bytes, sizes: Iterable[int] = (1 << 20,)) -> None:
        self._data = data
        self._sizes = list(sizes) or [1 << 20]
        self._pos = 0
        self._calls = 0

    def read(self, n: int = -1) -> bytes:
        size = self._sizes[self._calls % len(self._sizes)]
        self._calls += 1
        if n >= 0:
            size = min(size, n)
        chunk = self._data[self._pos : self._pos + size]
        self._pos += len(chunk)
        return chunk


class TinyChunks(ChunkedStream):
    """Reads of 1 to 7 bytes, in a seeded random order."""

    def __init__(self, data: bytes, seed: int = 0) -> None:
        rng = random.Random(seed)
        super().__init__(data, [rng.randint(1, 7) for _ in range(97)])


class PartsStream:
    """A stream assembled from parts, some of them generated lazily and never all in memory."""

    def __init__(self, parts: Iterable[bytes]) -> None:
        self._parts: Iterator[bytes] = iter(parts)
        self._buffer = b""

    def read(self, n: int = -1) -> bytes:
        while len(self._buffer) < n:
            part = next(self._parts, None)
            if part is None:
                break
            self._buffer += part
        chunk, self._buffer = self._buffer[:n], self._buffer[n:]
        return chunk


class LimitedStream(ChunkedStream):
    """Raises LimitReached once `limit` bytes have been read, like an archive walker does."""

    def __init__(self, data: bytes, limit: int) -> None:
        super().__init__(data, [7])
        self._limit = limit
        self.read_bytes = 0

    def read(self, n: int = -1) -> bytes:
        if self.read_bytes >= self._limit:
            raise LimitReached("too much")
        chunk = super().read(n)
        self.read_bytes += len(chunk)
        return chunk


def smap(**fields: Any) -> bytes:
    document = {"version": 3, "sources": [], "mappings": "", **fields}
    return json.dumps(document).encode()


def check_map(data: bytes, stream: Any = None) -> list[Observation]:
    return check_map_stream(stream or io.BytesIO(data), path="pkg.tgz!/package/a.js.map")


def rules(observations: Iterable[Observation]) -> list[Rule]:
    return [o.rule for o in observations]


def only(observations: list[Observation], rule: Rule) -> Observation:
    found = [o for o in observations if o.rule is rule]
    assert len(found) == 1, observations
    return found[0]


def check_code(data: bytes, stream: Any = None) -> CodeCheck:
    return check_code_stream(stream or io.BytesIO(data), path="pkg.tgz!/package/a.js")


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def scan_verdict(data: bytes, sizes: Iterable[int]) -> sourcemaps.MapVerdict:
    scanner = MapScanner()
    stream = ChunkedStream(data, sizes)
    while chunk := stream.read(1 << 20):
        scanner.feed(chunk)
    return scanner.close()


LEAKY = smap(
    sources=["src/index.ts", "src/greet.ts", "src/text.ts"],
    sourcesContent=["export * from './greet';\n", 'export const hi = "hi";\n', "x" * 12000],
    names=[],
)


# --------------------------------------------------------------------------- map rules


def test_embedded_sources_message_gives_counts_size_and_paths() -> None:
    observations = check_map(LEAKY)
    assert rules(observations) == [Rule.EMBEDDED_SOURCES]
    found = observations[0]
    assert found.path == "pkg.tgz!/package/a.js.map"
    assert found.line is None
    assert found.message == (
        "source map embeds the original source of 3 of 3 files (about 11.8 KiB of source), "
        "e.g. src/index.ts, src/greet.ts, src/text.ts"
    )
    assert "export" not in found.message  # never the source text itself


def test_examples_are_the_sources_of_embedded_entries_whatever_the_key_order() -> None:
    content_first = (
        b'{"version":3,"mappings":"","sourcesContent":[null,"a","",null,"b","c","d"],'
        b'"sources":["s0","s1","s2","s3","s4","s5","s6"]}'
    )
    message = only(check_map(content_first), Rule.EMBEDDED_SOURCES).message
    assert "4 of 7 files" in message
    assert message.endswith("e.g. s1, s4, s5")


def test_long_source_paths_are_shortened_in_messages() -> None:
    long_path = "src/" + "d/" * 400 + "index.ts"
    message = only(
        check_map(smap(sources=[long_path], sourcesContent=["x"])), Rule.EMBEDDED_SOURCES
    )
    assert len(message.message) < 300
    assert message.message.endswith("…")


@pytest.mark.parametrize(
    "content",
    [
        None,
        [],
        [None],
        [""],
        [None, ""],
    ],
)
def test_map_file_when_nothing_is_embedded(content: list[str | None] | None) -> None:
    fields: dict[str, Any] = {"sources": ["a.ts", "b.ts"]}
    if content is not None:
        fields["sourcesContent"] = content
    observations = check_map(smap(**fields))
    assert rules(observations) == [Rule.MAP_FILE]
    assert "2 sources listed" in observations[0].message


def test_a_single_space_is_content() -> None:
    assert rules(check_map(smap(sources=["a"], sourcesContent=[" "]))) == [Rule.EMBEDDED_SOURCES]


@pytest.mark.parametrize(
    "prefix",
    [b"\xef\xbb\xbf", b")]}'", b")]}'\n", b")]}'\r\n", b"\xef\xbb\xbf)]}'\n", b"\n  "],
)
def test_bom_and_xssi_prefix_are_tolerated(prefix: bytes) -> None:
    data = prefix + LEAKY
    assert rules(check_map(data)) == [Rule.EMBEDDED_SOURCES]
    assert rules(check_map(data, TinyChunks(data))) == [Rule.EMBEDDED_SOURCES]
    plain = prefix + smap(sources=["a.ts"])
    assert rules(check_map(plain, ChunkedStream(plain, [1]))) == [Rule.MAP_FILE]


def test_xssi_prefix_elsewhere_is_invalid() -> None:
    assert rules(check_map(b" )]}'" + LEAKY)) == [Rule.INVALID_MAP]


@pytest.mark.parametrize(
    "key",
    [
        rb"sources\u0043ontent",
        rb"\u0073ourcesContent",
        rb"\u0073\u006f\u0075\u0072\u0063\u0065\u0073\u0043\u006f\u006e\u0074\u0065\u006e\u0074",
        rb"sourcesConten\u0074",
    ],
)
def test_keys_written_with_escapes_count(key: bytes) -> None:
    data = b'{"version":3,"mappings":"","sources":["a.ts"],"' + key + b'":["code"]}'
    assert json.loads(data)["sourcesContent"] == ["code"]
    assert rules(check_map(data)) == [Rule.EMBEDDED_SOURCES]
    assert rules(check_map(data, TinyChunks(data))) == [Rule.EMBEDDED_SOURCES]


@pytest.mark.parametrize(
    "data",
    [
        # nested somewhere else
        b'{"version":3,"mappings":"","sources":["a"],"x_custom":{"sourcesContent":["code"]}}',
        b'{"version":3,"mappings":"","sources":["a"],"x":[{"sourcesContent":["code"]}]}',
        b'{"version":3,"mappings":"","sources":["a"],"x":{"sections":[{"map":'
        b'{"sourcesContent":["code"]}}]}}',
        # inside string values
        b'{"version":3,"mappings":"","sources":["a"],"names":["sourcesContent"]}',
        b'{"version":3,"mappings":"","sources":["\\"sourcesContent\\":[\\"x\\"]"]}',
        b'{"version":3,"mappings":"","file":"{\\"sourcesContent\\":[\\"code\\"]}","sources":[]}',
        b'{"version":3,"mappings":"","sourcesContent":[null,""],'
        b'"x_note":"\\"sourcesContent\\":[\\"code\\"]"}',
        # a key that only looks like it
        b'{"version":3,"mappings":"","sources":["a"],"sourcescontent":["code"]}',
        b'{"version":3,"mappings":"","sources":["a"],"sourcesContent ":["code"]}',
        b'{"version":3,"mappings":"","sources":["a"],"sourcesContent\\u0000":["code"]}',
    ],
)
def test_decoys_do_not_count(data: bytes) -> None:
    json.loads(data)  # each decoy is valid JSON
    assert Rule.EMBEDDED_SOURCES not in rules(check_map(data))
    assert Rule.EMBEDDED_SOURCES not in rules(check_map(data, TinyChunks(data)))


def test_decoy_inside_mappings_is_invalid_but_not_embedded() -> None:
    data = smap(sources=["a"], mappings='AAAA;"sourcesContent":["code"]')
    assert rules(check_map(data)) == [Rule.INVALID_MAP]


def test_source_text_that_contains_the_key_counts_once() -> None:
    text = '{"sourcesContent": ["a", "b", "c"]}'
    data = smap(sources=["a.json"], sourcesContent=[text])
    assert "1 of 1 file" in only(check_map(data), Rule.EMBEDDED_SOURCES).message


def test_duplicate_keys_report_any_occurrence_that_embeds() -> None:
    first = b'{"version":3,"mappings":"","sources":["a"],"sourcesContent":["code"],'
    data = first + b'"sourcesContent":[null]}'
    assert json.loads(data)["sourcesContent"] == [None]  # json keeps the last one
    assert rules(check_map(data)) == [Rule.EMBEDDED_SOURCES]
    reverse = b'{"version":3,"mappings":"","sources":["a"],"sourcesContent":[null],'
    reverse += b'"sourcesContent":["code"]}'
    assert rules(check_map(reverse)) == [Rule.EMBEDDED_SOURCES]


def test_sources_content_as_a_plain_string_fails_closed() -> None:
    observations = check_map(smap(sources=["a"], sourcesContent="all the code"))
    assert rules(observations) == [Rule.EMBEDDED_SOURCES, Rule.INVALID_MAP]
    assert "`sourcesContent` must be an array, not a string" in observations[1].message


# --------------------------------------------------------------------------- index maps


def section(inner: dict[str, Any], line: int = 0) -> dict[str, Any]:
    inner = {"version": 3, "sources": [], "mappings": "", **inner}
    return {"offset": {"line": line, "column": 0}, "map": inner}


def test_index_map_counts_every_section() -> None:
    data = json.dumps(
        {
            "version": 3,
            "sections": [
                section({"sources": ["a.ts"], "mappings": "AAAA"}),
                section(
                    {"sources": ["b.ts", "c.ts"], "sourcesContent": [None, "c"], "mappings": ""},
                    1,
                ),
                section({"sources": ["d.ts"], "sourcesContent": ["d"], "mappings": "AAAA"}, 9),
            ],
        }
    ).encode()
    observations = check_map(data)
    assert rules(observations) == [Rule.EMBEDDED_SOURCES]
    message = observations[0].message
    assert message.startswith("index source map (3 section maps) embeds")
    assert "2 of 4 files" in message
    assert message.endswith("e.g. c.ts, d.ts")


def test_nested_index_maps_are_followed() -> None:
    # ECMA-426 decodes a section's `map` as a regular map: an index map there is invalid,
    # but what it embeds still ships.
    inner = {"sections": [section({"sources": ["deep.ts"], "sourcesContent": ["x"]})]}
    data = json.dumps({"version": 3, "sections": [section(inner)]}).encode()
    observations = check_map(data)
    assert rules(observations) == [Rule.EMBEDDED_SOURCES, Rule.INVALID_MAP]
    assert observations[0].message.endswith("e.g. deep.ts")
    assert "a section's `map` is itself an index map" in observations[1].message


def test_index_map_without_content_is_a_map_file() -> None:
    data = json.dumps({"version": 3, "sections": [section({"sources": ["a"]})]}).encode()
    assert rules(check_map(data)) == [Rule.MAP_FILE]


def test_index_map_sections_are_validated() -> None:
    no_map = json.dumps({"version": 3, "sections": [{"offset": {"line": 0, "column": 0}}]})
    problem = only(check_map(no_map.encode()), Rule.INVALID_MAP).message
    assert "a section has no `map`" in problem
    bad_vlq = json.dumps(
        {"version": 3, "sections": [section({"sources": ["a"], "mappings": "AAAg"})]}
    )
    problem = only(check_map(bad_vlq.encode()), Rule.INVALID_MAP).message
    assert "invalid `mappings`" in problem
    not_a_list = json.dumps({"version": 3, "sections": {"map": {"sourcesContent": ["x"]}}})
    assert rules(check_map(not_a_list.encode())) == [Rule.INVALID_MAP]


# --------------------------------------------------------------------------- local paths


@pytest.mark.parametrize(
    ("source_root", "sources", "shown"),
    [
        (None, ["/home/alice/app/src/a.ts"], "/home/alice/app/src/a.ts"),
        (None, ["/Users/bob/app/a.ts"], "/Users/bob/app/a.ts"),
        (None, ["/root/app/a.ts"], "/root/app/a.ts"),
        (None, ["/home/runner/work/app/app/src/a.ts"], "/home/runner/work/app/app/src/a.ts"),
        (None, ["/github/workspace/src/a.ts"], "/github/workspace/src/a.ts"),
        (None, ["/builds/group/app/a.ts"], "/builds/group/app/a.ts"),
        (None, ["/var/lib/jenkins/workspace/app/a.ts"], "/var/lib/jenkins/workspace/app/a.ts"),
        (None, ["/tmp/build-123/a.ts"], "/tmp/build-123/a.ts"),
        (None, ["C:\\Users\\bob\\app\\a.ts"], "C:\\Users\\bob\\app\\a.ts"),
        (None, ["d:/work/app/a.ts"], "d:/work/app/a.ts"),
        (None, ["file:///home/alice/a.ts"], "file:///home/alice/a.ts"),
        (None, ["file:///C:/Users/bob/a.ts"], "file:///C:/Users/bob/a.ts"),
        (None, ["webpack:///C:/Users/bob/a.ts"], "webpack:///C:/Users/bob/a.ts"),
        (None, ["\\\\server\\share\\a.ts"], "\\\\server\\share\\a.ts"),
        ("/home/runner/work/lib/lib/src/", ["a.ts"], "/home/runner/work/lib/lib/src/a.ts"),
        ("/Users/bob/app", ["src/a.ts"], "/Users/bob/app/src/a.ts"),
        ("file:///", ["home/alice/a.ts"], "file:///home/alice/a.ts"),
        ("/home/alice/app/", [], "/home/alice/app/"),
    ],
)
def test_local_paths(source_root: str | None, sources: list[str], shown: str) -> None:
    fields: dict[str, Any] = {"sources": sources}
    if source_root is not None:
        fields["sourceRoot"] = source_root
    observations = check_map(smap(**fields))
    assert rules(observations) == [Rule.MAP_FILE, Rule.LOCAL_PATH]
    message = observations[1].message
    assert message.startswith("source map reveals 1 absolute local path")
    assert message.endswith(f"e.g. {shown}")
    if source_root and source_root != "file:///":
        assert f"(sourceRoot {source_root!r})" in message


@pytest.mark.parametrize(
    ("source_root", "sources"),
    [
        (None, ["src/a.ts", "../src/b.ts", "./c.ts"]),
        ("", ["../src/a.ts"]),
        ("webpack://", ["./src/a.ts"]),
        (None, ["webpack://app/./src/a.ts", "webpack:///./src/a.ts", "webpack:///src/a.ts"]),
        (None, ["/src/a.ts", "/app/a.ts", "/static/js/a.ts"]),
        (None, ["https://example.com/home/alice/a.ts"]),
        ("https://cdn.example.com/src/", ["a.ts"]),
        (None, ["homework/a.ts", "/homely/a.ts", "/tmpl/a.ts"]),
        ("../src", ["a.ts"]),
        (None, [None]),
    ],
)
def test_not_local_paths(source_root: str | None, sources: list[str | None]) -> None:
    fields: dict[str, Any] = {"sources": sources}
    if source_root is not None:
        fields["sourceRoot"] = source_root
    assert rules(check_map(smap(**fields))) == [Rule.MAP_FILE]


def test_local_path_message_counts_and_caps_examples() -> None:
    sources = [f"/home/alice/app/src/f{i}.ts" for i in range(10)] + ["rel.ts"]
    observations = check_map(smap(sources=sources, sourcesContent=["x"] * 11))
    assert rules(observations) == [Rule.EMBEDDED_SOURCES, Rule.LOCAL_PATH]
    message = observations[1].message
    assert message.startswith("source map reveals 10 absolute local paths, e.g. ")
    assert message.count("/home/alice") == 3


def test_local_paths_beyond_the_kept_sources_are_still_counted() -> None:
    sources = [f"s{i}.ts" for i in range(1500)] + ["/home/alice/late.ts"]
    observations = check_map(smap(sources=sources, sourceRoot="lib/"))
    assert "reveals 1 absolute local path, e.g. /home/alice/late.ts" in observations[1].message
    rooted = check_map(smap(sources=sources, sourceRoot="/home/alice/"))
    assert "reveals 1501 absolute local paths" in rooted[1].message


def test_join_source() -> None:
    assert join_source(None, "a.ts") == "a.ts"
    assert join_source("", "a.ts") == "a.ts"
    assert join_source("/root/src", "a.ts") == "/root/src/a.ts"
    assert join_source("/root/src/", "a.ts") == "/root/src/a.ts"
    assert join_source("/root/src/", "/home/x/a.ts") == "/home/x/a.ts"
    assert join_source("/root/src/", "webpack://a.ts") == "webpack://a.ts"


# --------------------------------------------------------------------------- invalid maps


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "empty"),
        (b"   \n", "no JSON value"),
        (b"<!doctype html><p>Not found</p>", "not valid JSON: unexpected byte b'<' (byte 0)"),
        (b'{"version":3,"mappings":""', "truncated: the data ends inside an object"),
        (b'{"version":3,"mappings":"AA', "truncated: the data ends inside a string"),
        (b'{"version":3,"mappings":"",', "truncated"),
        (b"[1, 2]", "the top level must be a JSON object (a source map), not an array (byte 0)"),
        (b'"just a string"', "the top level must be a JSON object"),
        (
            b'{"version":3,"mappings":"","sources":"a.ts"}',
            "`sources` must be an array, not a string",
        ),
        (
            b'{"version":3,"mappings":"","sources":[1]}',
            "an entry of `sources` must be a string or null",
        ),
        (
            b'{"version":3,"mappings":"","sourcesContent":[{"a":1}]}',
            "an entry of `sourcesContent` must be a string or null, not an object",
        ),
        (b'{"version":3,"mappings":"","names":{}}', "`names` must be an array, not an object"),
        (b'{"version":3,"mappings":"","names":[1]}', "an entry of `names` must be a string"),
        (b'{"version":3,"mappings":"","sourceRoot":5}', "`sourceRoot` must be a string, not"),
        (b'{"version":3,"mappings":7}', "`mappings` must be a string, not a number"),
        (b'{"version":"3","mappings":""}', "`version` must be a number, not a string"),
        (b'{"version":2,"mappings":""}', "`version` is 2, expected 3 (byte 11)"),
        (b'{"mappings":""}', "the map has no `version` (byte 14)"),
        (b'{"version":3}', "the map has neither `mappings` nor `sections` (byte 12)"),
        (
            b'{"version":3,"sources":[],"mappings":"AA!A"}',
            "invalid `mappings`: a character outside base64 VLQ, `,` and `;`: b'!' (byte 40)",
        ),
        (
            b'{"version":3,"sources":["a"],"mappings":"AAAg"}',
            "invalid `mappings`: a base64 VLQ ends in a continuation digit (byte 45)",
        ),
        (
            b'{"version":3,"sources":["a"],"mappings":"ACAA"}',
            "a segment points at source 1, but `sources` has 1 entry",
        ),
        (b'{"version":3,"sources":["a"],"mappings":"AAAD"}', "a negative original column"),
        (b'{"version":3,"mappings":""} {}', "unexpected data after the JSON document (byte 28)"),
        (b'{"version":3,"mappings":"",}', "expected a string key (byte 27)"),
        (b'{"version":3,"mappings":"","sources":["a",]}', "unexpected byte b']'"),
        (b'{"version":3 "mappings":""}', "expected ',' or '}' (byte 13)"),
        (b'{"version" 3}', "expected ':' after an object key (byte 11)"),
        (b'{"version":03,"mappings":""}', "malformed number"),
        (b'{"version":3,"mappings":"","x":tru}', "unexpected literal"),
        (b'{"version":3,"mappings":"","sources":["\xff"]}', "not valid UTF-8"),
        (b'{"version":3,"mappings":"","sources":["a\x01"]}', "not valid JSON"),
        (b'{"version":3,"mappings":"","sources":["\\q"]}', "not valid JSON"),
        (b'{"version":3,"sources":[],"mappings":"","x":"\\q"}', "not valid JSON: Invalid \\escape"),
        (b'{"version":3,"mappings":"","x":' + b"1" * 2000 + b"}", "number too long"),
    ],
)
def test_invalid_maps(data: bytes, expected: str) -> None:
    for stream in (io.BytesIO(data), TinyChunks(data)):
        observations = check_map(data, stream)
        assert rules(observations) == [Rule.INVALID_MAP], observations
        message = observations[0].message
        assert message.startswith("source map does not parse: ")
        assert expected in message
        assert "byte " in message or "empty" in message


def test_invalid_map_that_showed_content_is_also_embedded() -> None:
    data = b'{"version":3,"sources":["a.ts","b.ts"],"sourcesContent":["secret code", "more'
    observations = check_map(data)
    assert rules(observations) == [Rule.EMBEDDED_SOURCES, Rule.INVALID_MAP]
    assert "2 of 2 files" in observations[0].message
    broken = b'{"version":3,"sourcesContent":["secret code"], oops}'
    assert rules(check_map(broken)) == [Rule.EMBEDDED_SOURCES, Rule.INVALID_MAP]
    wrong_types = b'{"version":"3","sources":"a","sourcesContent":["secret code"]}'
    assert rules(check_map(wrong_types)) == [Rule.EMBEDDED_SOURCES, Rule.INVALID_MAP]


def test_every_truncation_of_a_small_map_gives_observations() -> None:
    data = (
        b'\xef\xbb\xbf{"version": 3, "file": "a.js", "sourceRoot": "/home/ci/",'
        b' "sources": ["a\\u00e9.ts", null], "names": ["x", "y"],'
        b' "sourcesContent": ["const x = \\"\\\\\\"\\";\\n", null],'
        b' "mappings": "AAAA,CAAC;AACA", "x": [true, false, null, -1.5e3, {}]}'
    )
    json.loads(data[3:])
    content_start = data.index(b"const")
    for cut in range(len(data)):
        prefix = data[:cut]
        observations = check_map(prefix, ChunkedStream(prefix, [cut % 5 + 1]))
        found = rules(observations)
        assert Rule.INVALID_MAP in found, cut
        assert (Rule.EMBEDDED_SOURCES in found) == (cut > content_start), cut
    assert rules(check_map(data)) == [Rule.EMBEDDED_SOURCES, Rule.LOCAL_PATH]


# --------------------------------------------------------------------------- streaming


def test_huge_strings_across_chunk_boundaries() -> None:
    rng = random.Random(7)
    pieces = ["\\", '"', "\\\\", '\\"', "\n", "é", "\u2028", "x" * 13, "\\\\\\", '""', "\t"]
    texts = ["".join(rng.choice(pieces) for _ in range(n)) for n in (20000, 3, 7000)]
    document = {
        "version": 3,
        "sourcesContent": [*texts, None, ""],
        "mappings": "AAAA;" * 3000,
        "names": [rng.choice(pieces) for _ in range(500)],
        "sources": ["a.ts", "b.ts", "c.ts", "d.ts", "/home/alice/e.ts"],
    }
    data = json.dumps(document, ensure_ascii=rng.random() < 0.5).encode()
    for stream in (TinyChunks(data, 1), TinyChunks(data, 2), ChunkedStream(data, [4093, 1, 2])):
        observations = check_map(data, stream)
        assert rules(observations) == [Rule.EMBEDDED_SOURCES, Rule.LOCAL_PATH]
        assert "3 of 5 files" in observations[0].message
        assert observations[0].message.endswith("e.g. a.ts, b.ts, c.ts")


@pytest.mark.parametrize("run", range(1, 9))
@pytest.mark.parametrize("size", range(1, 8))
def test_backslash_runs_at_every_boundary(run: int, size: int) -> None:
    text = "a" + "\\" * run + '"' + "\\" * run + "b"
    for key_text in ("", "x" * size):
        data = json.dumps(
            {
                "version": 3,
                "sources": ["a", "b"],
                "mappings": "",
                key_text + "k": text,
                "sourcesContent": [text, ""],
            }
        ).encode()
        verdict = scan_verdict(data, [size])
        assert verdict.problem is None
        assert (verdict.embedded, verdict.files) == (1, 2)


def test_memory_stays_flat_on_a_large_map() -> None:
    block = json.dumps('line of code "quoted" with \\ backslash\n' * 2000)[1:-1].encode()
    count = 400  # about 35 MB of one sourcesContent string

    def parts() -> Iterator[bytes]:
        yield b'{"version":3,"sources":["big.ts"],"sourcesContent":["'
        for _ in range(count):
            yield block
        yield b'"],"mappings":"' + b"AAAA," * 1000 + b'AAAA"}'

    tracemalloc.start()
    try:
        observations = check_map(b"", PartsStream(parts()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rules(observations) == [Rule.EMBEDDED_SOURCES]
    assert "1 of 1 file (about" in observations[0].message
    assert peak < 12 * (1 << 20), peak


def test_large_maps_have_their_mappings_validated_completely() -> None:
    # Past SMALL_MAP_LIMIT nothing is buffered, and every segment is still decoded.
    valid = "AAAA," * (sourcemaps.SMALL_MAP_LIMIT // 5 + 1) + "AAAA"
    assert rules(check_map(smap(sources=["a"], mappings=valid))) == [Rule.MAP_FILE]
    for tail, problem in (
        ("ACAA", "a segment points at source 1, but `sources` has 1 entry"),
        ("AA", "a segment with 2 fields"),
        ("AAAAAAAA", "a segment with more than 5 fields"),
        ("ggggggE", "a base64 VLQ value exceeds 32 bits"),
        ("", "a segment with no fields"),
    ):
        data = smap(sources=["a"], mappings=valid + "," + tail)
        message = only(check_map(data, TinyChunks(data)), Rule.INVALID_MAP).message
        assert problem in message, message


def test_limit_reached_propagates_from_map_checks() -> None:
    with pytest.raises(LimitReached):
        check_map(LEAKY, LimitedStream(LEAKY, 100))


def test_limit_reached_propagates_from_code_checks() -> None:
    code = b"//# sourceMappingURL=data:application/json;base64," + b64(LEAKY) + b"\n"
    with pytest.raises(LimitReached):
        check_code(code, LimitedStream(code, 100))
    with pytest.raises(LimitReached):
        check_code(b"x" * 1000, LimitedStream(b"x" * 1000, 10))


# --------------------------------------------------------------------------- pragmas


@pytest.mark.parametrize(
    ("code", "url", "line"),
    [
        (b"a();\n//# sourceMappingURL=a.js.map\n", "a.js.map", 2),
        (b"a();\n//# sourceMappingURL=a.js.map", "a.js.map", 2),
        (b"a();\n//@ sourceMappingURL=a.js.map\n", "a.js.map", 2),
        (b"a();\r\n\r\n//# sourceMappingURL=a.js.map\r\n", "a.js.map", 3),
        (b"//#  sourceMappingURL=a.js.map", "a.js.map", 1),
        (b"x\n\n\n/*# sourceMappingURL=a.css.map */\n", "a.css.map", 4),
        (b"x\n/*# sourceMappingURL=a.css.map*/", "a.css.map", 2),
        (b"x\n/*@ sourceMappingURL=a.css.map */", "a.css.map", 2),
        (b"//# sourceMappingURL=https://cdn.example.com/a.js.map?v=1#x\n", None, 1),
        (b"f(); //# sourceMappingURL=../maps/a.js.map\nmore();\n", "../maps/a.js.map", 1),
        (b"//# sourceMappingURL=a.js.map\n" + b"x();\n" * 50, "a.js.map", 1),
    ],
)
def test_external_pragmas(code: bytes, url: str | None, line: int) -> None:
    expected = [MapReference(url=url or "https://cdn.example.com/a.js.map?v=1#x", line=line)]
    for stream in (io.BytesIO(code), TinyChunks(code), ChunkedStream(code, [1])):
        result = check_code(code, stream)
        assert result.observations == []
        assert result.references == expected


@pytest.mark.parametrize(
    "code",
    [
        b'var s = "# sourceMappingURL=foo.map";\n',
        b"var s = 'sourceMappingURL=foo.map';\n",
        b"// sourceMappingURL=foo.map\n",
        b"/* sourceMappingURL=foo.map */\n",
        b"#sourceMappingURL=foo.map\n",
        b'x("//# sourceMappingURL=" + url);\n',
        b"//# sourceMappingURL=\n",
        b"//# sourceMappingURL= a.map\n",
        b"//# sourceMappingURL",
        b"var p = '//# sourceMappingURL=data:application/json;charset=utf-8;base64,' + b64;\n",
        b'var p = "//# sourceMappingURL=data:" + type + "," + data;\n',
        b"emit(`//# sourceMappingURL=data:application/json;base64,${encoded}`);\n",
        b"//# sourceMappingURL=data:application/json;base64,\n",
    ],
)
def test_not_pragmas(code: bytes) -> None:
    result = check_code(code)
    assert result.observations == []
    assert result.references == []


def test_pragmas_anywhere_with_their_lines_and_straddling_chunks() -> None:
    lines = [b"const x = 1;"] * 30
    lines[0] = b"//# sourceMappingURL=first.js.map"
    lines[12] = b"f(); /*# sourceMappingURL=middle.css.map */ g();"
    lines[29] = b"//@ sourceMappingURL=last.js.map"
    code = b"\n".join(lines) + b"\n"
    expected = [
        MapReference("first.js.map", 1),
        MapReference("middle.css.map", 13),
        MapReference("last.js.map", 30),
    ]
    for size in range(1, 12):
        assert check_code(code, ChunkedStream(code, [size])).references == expected
    assert check_code(code, TinyChunks(code, 3)).references == expected


def test_pragma_after_large_content_and_many_lines() -> None:
    code = b"x = 1;\n" * 300_000 + b"//# sourceMappingURL=app.js.map\n"
    assert check_code(code).references == [MapReference("app.js.map", 300_001)]


def test_long_urls_are_capped() -> None:
    code = b"//# sourceMappingURL=" + b"a" * 100_000 + b".map\nnext();\n"
    (reference,) = check_code(code, ChunkedStream(code, [999])).references
    assert len(reference.url) == sourcemaps.MAX_URL_BYTES
    assert reference.line == 1


def test_pragma_count_is_capped() -> None:
    code = b"//# sourceMappingURL=a.map\n" * (sourcemaps.MAX_PRAGMAS + 10)
    assert len(check_code(code).references) == sourcemaps.MAX_PRAGMAS


# --------------------------------------------------------------------------- inline maps


def inline_code(payload: bytes, header: bytes = b"application/json;base64", line: int = 3) -> bytes:
    prefix = b"a();\n" * (line - 1)
    return prefix + b"//# sourceMappingURL=data:" + header + b"," + payload + b"\nafter();\n"


@pytest.mark.parametrize(
    "header",
    [
        b"application/json;base64",
        b"application/json;charset=utf-8;base64",
        b"application/json;charset:utf-8;base64",
        b"Application/JSON;Charset=UTF-8;Base64",
        b"application/source-map+json;base64",
        b"text/plain;base64",
        b";base64",
    ],
)
def test_inline_base64_maps(header: bytes) -> None:
    code = inline_code(b64(LEAKY), header)
    for stream in (io.BytesIO(code), TinyChunks(code), ChunkedStream(code, [5, 3])):
        result = check_code(code, stream)
        assert result.references == []
        assert rules(result.observations) == [Rule.INLINE_MAP, Rule.EMBEDDED_SOURCES]
        assert all(o.line == 3 and o.path == "pkg.tgz!/package/a.js" for o in result.observations)
        sizes = f"base64, {human_size(len(LEAKY))} of JSON in {human_size(len(b64(LEAKY)))}"
        assert sizes in result.observations[0].message
        assert "3 of 3 files" in result.observations[1].message


def test_inline_percent_encoded_maps() -> None:
    for payload in (quote_from_bytes(LEAKY, safe="").encode(), quote_from_bytes(LEAKY).encode()):
        code = inline_code(payload, b"application/json;charset=utf-8", line=1)
        for stream in (io.BytesIO(code), TinyChunks(code)):
            result = check_code(code, stream)
            assert rules(result.observations) == [Rule.INLINE_MAP, Rule.EMBEDDED_SOURCES]
            message = result.observations[0].message
            assert f"percent-encoded, {human_size(len(LEAKY))} of JSON" in message


def test_inline_map_in_css_block_comment() -> None:
    css_map = smap(sources=["/Users/bob/site/print.css"], sourcesContent=["a{}"])
    for ending in (b" */", b"*/", b"*/\n"):
        code = b"a{color:red}\n/*# sourceMappingURL=data:application/json;base64,"
        code += b64(css_map) + ending
        for size in (1, 2, 3, 1000):
            result = check_code(code, ChunkedStream(code, [size]))
            found = rules(result.observations)
            assert found == [Rule.INLINE_MAP, Rule.EMBEDDED_SOURCES, Rule.LOCAL_PATH]


def test_inline_map_without_embedded_sources_is_only_an_inline_map() -> None:
    code = inline_code(b64(smap(sources=["a.ts"])))
    assert rules(check_code(code).observations) == [Rule.INLINE_MAP]


def test_inline_map_without_padding_is_decoded_forgivingly() -> None:
    for text in ("x", "xy", "xyz"):
        payload = b64(smap(sources=["a"], sourcesContent=[text]))
        code = inline_code(payload.rstrip(b"="))
        found = rules(check_code(code).observations)
        assert found == [Rule.INLINE_MAP, Rule.EMBEDDED_SOURCES], payload


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"eyJ2!!!", "unexpected byte b'!' (payload byte 4)"),
        (b"e3=Ae30=", "misplaced padding (payload byte 2)"),
        (b"e30=e30=", "data after the padding (payload byte 4)"),
        (b64(LEAKY)[:101], "a truncated last group"),
        (b64(b'{"version":3,"mappings":"'), "truncated"),
        (b64(b"not json"), "not valid JSON"),
    ],
)
def test_invalid_inline_maps(payload: bytes, expected: str) -> None:
    code = inline_code(payload)
    for stream in (io.BytesIO(code), TinyChunks(code)):
        result = check_code(code, stream)
        assert rules(result.observations)[0] is Rule.INLINE_MAP
        invalid = only(result.observations, Rule.INVALID_MAP)
        assert expected in invalid.message
        assert invalid.line == 3


def test_invalid_inline_map_still_reports_embedded_content_before_the_error() -> None:
    code = inline_code(b64(LEAKY[:201]) + b"!!!!")
    found = rules(check_code(code).observations)
    assert found == [Rule.INLINE_MAP, Rule.EMBEDDED_SOURCES, Rule.INVALID_MAP]


def test_malformed_data_url() -> None:
    code = b"//# sourceMappingURL=data:application/json;base64\nnext();\n"
    result = check_code(code)
    assert rules(result.observations) == [Rule.INLINE_MAP, Rule.INVALID_MAP]
    assert result.references == []
    long_header = b"//# sourceMappingURL=data:" + b"x" * 10_000 + b",e30=\n"
    assert rules(check_code(long_header).observations) == [Rule.INLINE_MAP, Rule.INVALID_MAP]


def test_large_inline_map_streams() -> None:
    text = 'const s = "\\\\";\n' * 150_000
    big = smap(sources=["big.ts"], sourcesContent=[text])
    code = b"x();\n" + inline_code(b64(big), line=1)
    result = check_code(code, ChunkedStream(code, [65_537]))
    assert rules(result.observations) == [Rule.INLINE_MAP, Rule.EMBEDDED_SOURCES]
    assert all(o.line == 2 for o in result.observations)
    assert "MiB of JSON" in result.observations[0].message


def test_several_inline_and_external_pragmas() -> None:
    code = (
        b"//# sourceMappingURL=data:application/json;base64,"
        + b64(smap(sources=["a"]))
        + b"\n//# sourceMappingURL=b.js.map\n/*# sourceMappingURL=data:,"
        + quote_from_bytes(smap(sources=["c"], sourcesContent=["c"])).encode()
        + b" */\n"
    )
    result = check_code(code, TinyChunks(code))
    assert [(o.rule, o.line) for o in result.observations] == [
        (Rule.INLINE_MAP, 1),
        (Rule.INLINE_MAP, 3),
        (Rule.EMBEDDED_SOURCES, 3),
    ]
    assert result.references == [MapReference("b.js.map", 2)]


# --------------------------------------------------------------------------- real fixtures


def _fixture_members(path: Path) -> Iterator[tuple[str, bytes]]:
    with tarfile.open(path, "r:gz") as archive:
        for info in archive.getmembers():
            handle = archive.extractfile(info) if info.isfile() else None
            if handle is not None:
                yield f"{path.name}!/{info.name}", handle.read()


EXPECTED = json.loads((FIXTURES / "expected.json").read_text())["fixtures"]
TARBALLS = sorted(name for name in EXPECTED if name.endswith(".tgz"))


@pytest.mark.parametrize("name", TARBALLS)
def test_real_fixtures(name: str) -> None:
    path = FIXTURES / name if (FIXTURES / name).exists() else FIXTURES / "published" / name
    expected = {
        (f["rule"], f["path"])
        for f in EXPECTED[name]["findings"]
        if f["rule"] != Rule.REFERENCE.value
    }
    expected_references = {
        f["path"] for f in EXPECTED[name]["findings"] if f["rule"] == Rule.REFERENCE.value
    }
    found: set[tuple[str, str]] = set()
    referencing: set[str] = set()
    for member, data in _fixture_members(path):
        if member.endswith(".map"):
            found |= {
                (o.rule.value, o.path) for o in check_map_stream(io.BytesIO(data), path=member)
            }
        elif member.endswith((".js", ".mjs", ".cjs", ".css")):
            result = check_code_stream(io.BytesIO(data), path=member)
            found |= {(o.rule.value, o.path) for o in result.observations}
            if result.references:
                referencing.add(member)
    assert found == expected
    assert referencing == expected_references


# --------------------------------------------------------------------------- properties

_TEXT = st.text(
    alphabet=st.sampled_from('ab"\\/\n\t\x00é€😀,:[]{} ') | st.characters(codec="utf-8"),
    max_size=12,
)
_DECOY = st.sampled_from(
    ['"sourcesContent":["x"]', "sourcesContent", '{"sourcesContent": ["code"]}', "\\", '\\"']
)
_STRING = _TEXT | _DECOY


@st.composite
def _map_objects(draw: st.DrawFn, depth: int = 2) -> dict[str, Any]:
    document: dict[str, Any] = {}
    if draw(st.booleans()):
        document["version"] = 3
    if draw(st.booleans()):
        document["sources"] = draw(st.lists(st.none() | _STRING, max_size=4))
    if draw(st.booleans()):
        entries = st.none() | st.just("") | _STRING | st.integers(0, 5)
        document["sourcesContent"] = draw(st.lists(entries, max_size=4) | _STRING | st.none())
    if draw(st.booleans()):
        document["names"] = draw(st.lists(_STRING, max_size=3))
    if draw(st.booleans()):
        document["mappings"] = draw(st.sampled_from(["", "AAAA", ";;AACA,CAAC"]) | _DECOY)
    if draw(st.booleans()):
        document["x_custom"] = draw(
            st.fixed_dictionaries({"sourcesContent": st.lists(_STRING, max_size=2)})
            | st.lists(_STRING, max_size=2)
            | st.integers()
            | st.floats(allow_nan=False, allow_infinity=False)
        )
    if depth and draw(st.booleans()):
        sections = st.lists(
            st.fixed_dictionaries(
                {"offset": st.just({"line": 0, "column": 0}), "map": _map_objects(depth - 1)}
            )
            | _STRING,
            max_size=3,
        )
        document["sections"] = draw(sections)
    keys = draw(st.permutations(list(document)))
    return {key: document[key] for key in keys}


def _oracle(document: Any) -> tuple[int, int]:
    """(embedded, files) computed from the parsed document, the way the contract says."""
    if not isinstance(document, dict):
        return 0, 0
    content = document.get("sourcesContent")
    sources = document.get("sources")
    if isinstance(content, list):
        embedded = sum(1 for item in content if isinstance(item, str) and item)
        total = len(content)
    elif isinstance(content, str) and content:
        embedded = total = 1
    else:
        embedded = total = 0
    files = max(len(sources) if isinstance(sources, list) else 0, total)
    sections = document.get("sections")
    for entry in sections if isinstance(sections, list) else []:
        if isinstance(entry, dict):
            inner = _oracle(entry.get("map"))
            embedded += inner[0]
            files += inner[1]
    return embedded, files


def _dump(value: Any, rng: random.Random) -> str:
    """JSON with random whitespace, and keys and strings randomly written with escapes."""
    space = rng.choice(["", "", " ", "\n  ", "\t"])
    if isinstance(value, dict):
        items = [
            f"{space}{_dump_string(key, rng, escape_all=rng.random() < 0.3)}{space}:{space}"
            f"{_dump(item, rng)}"
            for key, item in value.items()
        ]
        return "{" + ",".join(items) + space + "}"
    if isinstance(value, list):
        return "[" + space + ("," + space).join(_dump(item, rng) for item in value) + "]"
    if isinstance(value, str):
        return _dump_string(value, rng, escape_all=rng.random() < 0.1)
    return json.dumps(value)


def _dump_string(text: str, rng: random.Random, *, escape_all: bool) -> str:
    if not escape_all:
        return json.dumps(text, ensure_ascii=rng.random() < 0.5)
    return (
        '"'
        + "".join(f"\\u{ord(c):04x}" if ord(c) < 0x10000 else json.dumps(c)[1:-1] for c in text)
        + '"'
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    document=_map_objects(),
    rng=st.randoms(use_true_random=False),
    sizes=st.lists(st.integers(1, 64), min_size=1, max_size=8),
    prefix=st.sampled_from([b"", b"\xef\xbb\xbf", b")]}'\n", b"\xef\xbb\xbf)]}'"]),
)
def test_streaming_verdict_matches_a_json_oracle(
    document: dict[str, Any], rng: random.Random, sizes: list[int], prefix: bytes
) -> None:
    text = _dump(document, rng)
    assert json.loads(text) == document
    data = prefix + text.encode()
    embedded, files = _oracle(document)
    verdict = scan_verdict(data, sizes)
    assert (verdict.embedded, verdict.files) == (embedded, files)
    assert not (verdict.problem or "").startswith("not valid JSON")
    observations = check_map(data, ChunkedStream(data, sizes))
    assert (Rule.EMBEDDED_SOURCES in rules(observations)) == (embedded > 0)
    code = b"x;\n//# sourceMappingURL=data:application/json;base64," + b64(data) + b"\n"
    inline = check_code(code, ChunkedStream(code, sizes)).observations
    assert rules(inline)[0] is Rule.INLINE_MAP
    assert (Rule.EMBEDDED_SOURCES in rules(inline)) == (embedded > 0)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=400), sizes=st.lists(st.integers(1, 32), min_size=1, max_size=4))
def test_arbitrary_bytes_only_give_observations(data: bytes, sizes: list[int]) -> None:
    observations = check_map(data, ChunkedStream(data, sizes))
    assert observations
    assert all(isinstance(o, Observation) for o in observations)
    for code in (data, b"//# sourceMappingURL=data:application/json;base64," + data):
        result = check_code(code, ChunkedStream(code, sizes))
        assert all(isinstance(o, Observation) for o in result.observations)
        assert all(isinstance(r, MapReference) for r in result.references)


@settings(max_examples=300, deadline=None)
@given(
    document=_map_objects(depth=1),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3)), max_size=4),
    sizes=st.lists(st.integers(1, 16), min_size=1, max_size=4),
)
def test_mutated_maps_only_give_observations(
    document: dict[str, Any], edits: list[tuple[int, bytes]], sizes: list[int]
) -> None:
    data = bytearray(json.dumps(document).encode())
    for position, replacement in edits:
        at = position % (len(data) + 1)
        data[at : at + len(replacement) // 2 + 1] = replacement
    observations = check_map(bytes(data), ChunkedStream(bytes(data), sizes))
    assert observations
    code = b"//# sourceMappingURL=data:," + quote_from_bytes(bytes(data)).encode()
    assert all(isinstance(o, Observation) for o in check_code(code).observations)


def test_human_size() -> None:
    assert human_size(0) == "0 bytes"
    assert human_size(1) == "1 byte"
    assert human_size(1023) == "1023 bytes"
    assert human_size(12_595) == "12.3 KiB"
    assert human_size(5 << 20) == "5.0 MiB"
    assert human_size(3 << 40) == "3072.0 GiB"


def test_deep_nesting_is_invalid_not_a_crash() -> None:
    for opener in (b"[", b'{"a":'):
        data = b'{"version":3,"mappings":"","x":' + opener * 100_000
        observations = check_map(data)
        assert rules(observations) == [Rule.INVALID_MAP]
        assert "nested deeper than" in observations[0].message


def test_many_sections_are_counted_without_keeping_them() -> None:
    sections = [
        section({"sources": [f"s{i}.ts"], "sourcesContent": ["x" if i % 2 else None]}, i)
        for i in range(20_000)
    ]
    data = json.dumps({"version": 3, "sections": sections}).encode()
    message = only(check_map(data), Rule.EMBEDDED_SOURCES).message
    assert "(20000 section maps)" in message
    assert "10000 of 20000 files" in message
    assert message.endswith("e.g. s1.ts, s3.ts, s5.ts")


def test_local_source_root_is_reported_even_when_sources_are_urls() -> None:
    data = smap(sourceRoot="/home/alice/app/", sources=["https://example.com/a.js"])
    message = only(check_map(data), Rule.LOCAL_PATH).message
    assert message.endswith("e.g. /home/alice/app/")


def test_unprintable_characters_stay_out_of_messages() -> None:
    data = smap(sources=["/home/a\nb.ts", "c\ud800.ts"], sourcesContent=["x", "y"])
    observations = check_map(data)
    assert rules(observations) == [Rule.EMBEDDED_SOURCES, Rule.LOCAL_PATH]
    for observation in observations:
        assert "\n" not in observation.message
        observation.message.encode("utf-8")  # no lone surrogate
    assert "e.g. /home/a\\u000ab.ts, c\\ud800.ts" in observations[0].message


@settings(max_examples=200, deadline=None)
@given(
    document=_map_objects(depth=1),
    rng=st.randoms(use_true_random=False),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=3)), max_size=3),
    sizes=st.lists(st.integers(1, 16), min_size=1, max_size=4),
)
def test_chunking_never_changes_the_observations(
    document: dict[str, Any], rng: random.Random, edits: list[tuple[int, bytes]], sizes: list[int]
) -> None:
    data = bytearray(_dump(document, rng).encode())
    for position, replacement in edits:
        at = position % (len(data) + 1)
        data[at : at + len(replacement) // 2 + 1] = replacement
    whole = check_map(bytes(data))
    assert check_map(bytes(data), ChunkedStream(bytes(data), sizes)) == whole
    code = b"x\n//# sourceMappingURL=data:application/json;base64," + b64(bytes(data)) + b"\n"
    assert check_code(code, ChunkedStream(code, sizes)) == check_code(code)
