r"""Source-map checks: `.map` files, and `sourceMappingURL` pragmas in JS/CSS.

Everything here streams. A release can ship a 60 MB map whose bulk is one 50 MB
`sourcesContent` string, and inline `data:` maps of many MB on a single line, so no check
ever holds a whole file, nor a whole large JSON string, in memory.

The map scanner (`MapScanner`) is a hand-written incremental JSON scanner fed chunk by
chunk (`feed(bytes)` / `close()`), by `check_map_stream` for files and by a base64 or
percent decoder for inline maps. It walks the JSON structure with a small Python state
machine, but it never loops over the characters of a string in Python: the end of a
string is found with `bytes.find`, so long strings are skipped at C speed. Only the values
the checks need are decoded (keys, `sources`, `sourceRoot`, `version`), each capped.

Finding the end of a string with `find(b'"')` needs to know which quotes are escaped: a
quote is escaped when an odd run of backslashes precedes it. Plain `find` is tried first;
once a buffer shows many escaped quotes (source text full of `\"`), the scanner makes one
sanitised copy of the buffer, `buf.replace(rb'\"', b'__')`, which keeps every position
and hides every quote that follows a backslash, so its first `"` is a real delimiter. The
only real delimiters that copy hides follow an even run of two or more backslashes: they
end the three bytes `\\"`, which `find` on the original buffer locates cheaply and the
run's length settles. A trailing odd backslash is held back to the next chunk, so escapes
can straddle chunk boundaries.

What the streaming scanner validates: the JSON grammar outside strings, the types of the
fields the source-map format defines, and, through bot/engine/mapcheck.py (`MapRules`, one
per map object, and `MappingsCheck`, fed the `mappings` string piece by piece), every other
rule of ECMA-426. What it does not validate inside long strings: escape sequences, control
characters and UTF-8; short strings it decodes (keys, `sources`, `sourceRoot`) are
validated fully. Maps up to `SMALL_MAP_LIMIT` bytes are also buffered and checked
completely with `json` (see `_validate_small_map`).
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from urllib.parse import unquote_to_bytes

from bot.engine.mapcheck import MappingsCheck, MapRules
from bot.engine.mapdeep import DeepValue
from bot.engine.model import ByteStream, Observation, Rule

CHUNK_SIZE = 1 << 20
"""How much is read from a stream at a time."""

SMALL_MAP_LIMIT = 1 << 20
"""Maps up to this size are buffered and validated in full by `json`."""

MAX_PRAGMAS = 256
"""External `sourceMappingURL` references kept per code file (the rest are only counted).
The cap bounds the report, never the reading: an inline `data:` map after it is still read."""

MAX_URL_BYTES = 4096
"""How much of an external `sourceMappingURL` is kept (the rest is read and dropped)."""

_CAPTURE_BYTES = 512  # raw bytes kept of a `sources` entry or a `sourceRoot`
_KEY_BYTES = 256  # a longer key is none of the keys the checks look for
_KEPT_SOURCES = 1024  # `sources` entries kept per map (for examples and local paths)
_MAX_EXAMPLES = 3
_SHOWN_CHARS = 120  # an example longer than this is cut, with an ellipsis
_MAX_NUMBER_BYTES = 1024
_MAX_DEPTH = 512  # nesting; json.loads would hit the recursion limit around 1000
_MAX_DATA_HEADER = 256  # `data:<media type>[;params]` before the comma
_BACKSLASH = 0x5C
_QUOTE = 0x22
_SLOW_QUOTES = 8  # escaped quotes tolerated per buffer before the sanitised copy is made

_WS = re.compile(rb"[ \t\n\r]*")
_WS_BYTES = b" \t\n\r"
_NUMBER_RUN = re.compile(rb"[-+.eE0-9]+")
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
# A short string without escapes or control characters: the common case, decoded in one go.
_SIMPLE_STRING = re.compile(rb'"([^"\\\x00-\x1f]{0,4096})"')
# A run of such strings separated by commas: `names` arrays hold tens of thousands of them.
# Possessive quantifiers: three to four times faster here than backtracking ones.
_SIMPLE_STRING_RUN = re.compile(
    rb'"[^"\\\x00-\x1f]*+"(?:[ \t\n\r]*+,[ \t\n\r]*+"[^"\\\x00-\x1f]*+")*+'
)
_LITERALS = {0x74: b"true", 0x66: b"false", 0x6E: b"null"}
_BOM = b"\xef\xbb\xbf"
_CONTENTS_KEY = b"sourcesContent"
_XSSI = b")]}'"


# --------------------------------------------------------------------------- public API


@dataclass(frozen=True, slots=True)
class MapReference:
    """An external `sourceMappingURL` (scan.py judges whether the map ships too)."""

    url: str
    line: int | None


@dataclass(slots=True)
class CodeCheck:
    """What `check_code_stream` found in one JS/CSS file."""

    observations: list[Observation] = field(default_factory=list)
    references: list[MapReference] = field(default_factory=list)
    more_references: int = 0
    """External references past MAX_PRAGMAS, counted but not kept."""


@dataclass(slots=True)
class MapVerdict:
    """What a map scan established, before it becomes observations.

    `embedded` of `files` sources carry non-empty `sourcesContent`, about `embedded_bytes`
    of it (raw JSON bytes, escapes included). `examples` are `sources` entries of embedded
    files; `local_paths` examples of absolute local paths (`local_count` of them in all).
    `problem` says why the map is invalid, offset included, or is None.
    """

    size: int = 0
    maps: int = 0
    is_index: bool = False
    files: int = 0
    embedded: int = 0
    embedded_bytes: int = 0
    examples: list[str] = field(default_factory=list)
    local_paths: list[str] = field(default_factory=list)
    local_count: int = 0
    source_root: str | None = None
    problem: str | None = None
    hidden_sources: int = 0
    """`sourcesContent` members with text that only a lenient reading found (nested deeper
    than the scanner follows): the map is fail-closed invalid."""
    unread_may_hold_sources: bool = False
    """The scan could not read part of the map and that part may hold sources (it mentions
    `sourcesContent`, or is nested too deep to read at all): fail closed."""


def check_map_stream(stream: ByteStream, *, path: str) -> list[Observation]:
    """Check a `.map` file read from `stream`; every observation is on `path`.

    `stream.read` may raise LimitReached: it propagates (scan.py handles it).
    """
    check = _MapCheck()
    while not check.done:
        chunk = stream.read(CHUNK_SIZE)
        if not chunk:
            break
        check.feed(chunk)
    verdict = check.finish()
    return map_observations(verdict, path=path, line=None, standalone=True)


InlineTap = Callable[[int | None, bytes], None]
"""Told `(pragma line, decoded bytes)` of each inline `data:` map as it is decoded."""


def check_code_stream(
    stream: ByteStream, *, path: str, inline_tap: InlineTap | None = None
) -> CodeCheck:
    """Find `sourceMappingURL` pragmas in a JS/CSS file read from `stream`.

    Inline `data:` maps are decoded and scanned as they stream by (observations on `path`
    at the pragma's line); external URLs are returned as references. `sourcemap.discover`
    is not used: it needs the whole text, looks only at the first and last five lines and
    knows only `//` pragmas, while a pragma can sit anywhere and CSS uses `/*# … */`.
    `inline_tap`, when given, also receives the decoded bytes of every inline map (the
    secret search reads a map's `sourcesContent` there, base64 hides it in the file itself).
    """
    scanner = _CodeScanner(path, inline_tap)
    while not scanner.done:
        chunk = stream.read(CHUNK_SIZE)
        if not chunk:
            break
        scanner.feed(chunk)
    return scanner.close()


def map_observations(
    verdict: MapVerdict, *, path: str, line: int | None, standalone: bool
) -> list[Observation]:
    """Turn a verdict into observations; `standalone` is True for a `.map` file."""
    observations = []
    if verdict.embedded:
        observations.append(
            Observation(Rule.EMBEDDED_SOURCES, path, _embedded_message(verdict), line)
        )
    elif standalone and verdict.problem is None:
        observations.append(Observation(Rule.MAP_FILE, path, _map_file_message(verdict), line))
    if verdict.local_paths:
        observations.append(Observation(Rule.LOCAL_PATH, path, _local_message(verdict), line))
    if verdict.problem is not None:
        message = f"source map does not parse: {verdict.problem}"
        fail_closed = bool(verdict.hidden_sources) or verdict.unread_may_hold_sources
        if verdict.hidden_sources:
            message += (
                f"; read leniently, as browsers and Node read it, it embeds sources "
                f"({verdict.hidden_sources} `sourcesContent` with text)"
            )
        elif verdict.unread_may_hold_sources:
            message += "; the part that could not be read may embed sources"
        if fail_closed:
            message += ", so the scan fails closed"
        observations.append(
            Observation(Rule.INVALID_MAP, path, message, line, fail_closed=fail_closed)
        )
    return observations


# --------------------------------------------------------------------------- messages


def human_size(size: int) -> str:
    """`512 bytes`, `12.3 KiB`, `4.0 MiB`."""
    if size < 1024:
        return f"{size} byte" + ("" if size == 1 else "s")
    value = float(size)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


# Kept out of messages: control characters (a newline would break line-based report
# formats), lone surrogates (a JSON `\ud800` escape; they cannot be printed) and separators.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _shown(text: str) -> str:
    """A path for a message: shortened, with unprintable characters escaped."""
    if len(text) > _SHOWN_CHARS:
        text = text[:_SHOWN_CHARS] + "…"
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _embedded_message(verdict: MapVerdict) -> str:
    files = max(verdict.files, verdict.embedded)
    noun = "file" if files == 1 else "files"
    subject = "source map embeds"
    if verdict.is_index:
        maps = "map" if verdict.maps == 1 else "maps"
        subject = f"index source map ({verdict.maps} section {maps}) embeds"
    message = (
        f"{subject} the original source of {verdict.embedded} of {files} {noun} "
        f"(about {human_size(verdict.embedded_bytes)} of source)"
    )
    if verdict.examples:
        message += ", e.g. " + ", ".join(_shown(e) for e in verdict.examples)
    return message


def _map_file_message(verdict: MapVerdict) -> str:
    noun = "source" if verdict.files == 1 else "sources"
    return (
        f"source map shipped without embedded sources ({verdict.files} {noun} listed); "
        "it still exposes file names and the code's structure"
    )


def _local_message(verdict: MapVerdict) -> str:
    noun = "path" if verdict.local_count == 1 else "paths"
    message = f"source map reveals {verdict.local_count} absolute local {noun}"
    root = verdict.source_root
    if root is not None and _is_local_path(root):
        message += f" (sourceRoot '{_shown(root)}')"
    return message + ", e.g. " + ", ".join(_shown(p) for p in verdict.local_paths)


# --------------------------------------------------------------------------- local paths

# Absolute paths that are unmistakably a machine's file system: home folders, the usual CI
# workspaces and temporary folders. A bare root-relative path such as `/src/app.ts` is not
# reported: that is also how a web server addresses files, and many maps use it on purpose.
# `/tmp/` is included: web paths practically never start with it, build tools often do.
_LOCAL_POSIX = re.compile(
    r"/(?:home|Users|root|github/workspace|builds|var/lib/jenkins|var/jenkins_home"
    r"|opt/atlassian/pipelines|codebuild|tmp|private/tmp|private/var/folders|var/folders"
    r"|mnt/[A-Za-z]|workspace)(?:/|$)"
)
_WINDOWS_DRIVE = re.compile(r"/?[A-Za-z]:[\\/]")
_UNC = re.compile(r"\\\\[^\\/]+[\\/]")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_FILE_URL = re.compile(r"file://[^/]*", re.IGNORECASE)
_WEBPACK_URL = re.compile(r"webpack://[^/]*/*", re.IGNORECASE)


def _is_local_path(path: str) -> bool:
    """True when `path` (a joined source or a sourceRoot) is an absolute local path.

    `file://` URLs are judged by their path. `webpack://` URLs name modules, not files,
    so only an embedded Windows drive (`webpack:///C:/Users/…`) counts there; other URL
    schemes and relative paths never count.
    """
    file_url = _FILE_URL.match(path)
    if file_url:
        path = path[file_url.end() :]
    else:
        webpack = _WEBPACK_URL.match(path)
        if webpack:
            return _WINDOWS_DRIVE.match(path, webpack.end()) is not None
    return bool(_LOCAL_POSIX.match(path) or _WINDOWS_DRIVE.match(path) or _UNC.match(path))


def _is_absolute(source: str) -> bool:
    return source.startswith(("/", "\\")) or _SCHEME.match(source) is not None


def join_source(root: str | None, source: str) -> str:
    """`source` as the map's consumer sees it: prefixed with a non-empty `sourceRoot`.

    Tools concatenate the two (tsc, terser); an absolute source or a URL stands alone.
    """
    if not root or _is_absolute(source):
        return source
    separator = "" if root.endswith(("/", "\\")) else "/"
    return root + separator + source


# --------------------------------------------------------------------------- map scanner


class _Role(IntEnum):
    """What a JSON value is, given where it sits in the map."""

    OTHER = 0
    MAP = 1
    SECTIONS = 2
    SECTION = 3
    SOURCES = 4
    SOURCE = 5
    CONTENTS = 6
    CONTENT = 7
    CONTENT_TEXT = 8  # a `sourcesContent` that is one string instead of an array
    NAMES = 9
    NAME = 10
    SOURCE_ROOT = 11
    MAPPINGS = 12
    VERSION = 13
    OFFSET = 14
    URL = 15
    KEY = 16
    FILE = 17
    IGNORE_LIST = 18
    IGNORE_INDEX = 19
    OFFSET_LINE = 20
    OFFSET_COLUMN = 21


_MAP_KEYS = {
    "sources": _Role.SOURCES,
    "sourcesContent": _Role.CONTENTS,
    "names": _Role.NAMES,
    "sourceRoot": _Role.SOURCE_ROOT,
    "mappings": _Role.MAPPINGS,
    "version": _Role.VERSION,
    "sections": _Role.SECTIONS,
    "file": _Role.FILE,
    "ignoreList": _Role.IGNORE_LIST,
}
_SECTION_KEYS = {"map": _Role.MAP, "offset": _Role.OFFSET, "url": _Role.URL}
_OFFSET_KEYS = {"line": _Role.OFFSET_LINE, "column": _Role.OFFSET_COLUMN}
_ELEMENT_ROLES = {
    _Role.SOURCES: _Role.SOURCE,
    _Role.CONTENTS: _Role.CONTENT,
    _Role.NAMES: _Role.NAME,
    _Role.SECTIONS: _Role.SECTION,
    _Role.IGNORE_LIST: _Role.IGNORE_INDEX,
}
# Role -> (accepted JSON kinds, how a message names the value).
_EXPECTED: dict[_Role, tuple[frozenset[str], str]] = {
    _Role.MAP: (frozenset({"object"}), "a source map"),
    _Role.SECTIONS: (frozenset({"array"}), "`sections`"),
    _Role.SECTION: (frozenset({"object"}), "an entry of `sections`"),
    _Role.SOURCES: (frozenset({"array"}), "`sources`"),
    _Role.SOURCE: (frozenset({"string", "null"}), "an entry of `sources`"),
    _Role.CONTENTS: (frozenset({"array"}), "`sourcesContent`"),
    _Role.CONTENT: (frozenset({"string", "null"}), "an entry of `sourcesContent`"),
    _Role.NAMES: (frozenset({"array"}), "`names`"),
    _Role.NAME: (frozenset({"string"}), "an entry of `names`"),
    _Role.SOURCE_ROOT: (frozenset({"string"}), "`sourceRoot`"),
    _Role.FILE: (frozenset({"string"}), "`file`"),
    _Role.IGNORE_LIST: (frozenset({"array"}), "`ignoreList`"),
    _Role.IGNORE_INDEX: (frozenset({"number"}), "an entry of `ignoreList`"),
    _Role.OFFSET_LINE: (frozenset({"number"}), "a section's `offset.line`"),
    _Role.OFFSET_COLUMN: (frozenset({"number"}), "a section's `offset.column`"),
    _Role.MAPPINGS: (frozenset({"string"}), "`mappings`"),
    _Role.VERSION: (frozenset({"number"}), "`version`"),
    _Role.OFFSET: (frozenset({"object"}), "a section's `offset`"),
    _Role.URL: (frozenset({"string"}), "a section's `url`"),
}
_KIND_NAMES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}
_ACCEPTED_NAMES = {
    frozenset({"object"}): "an object",
    frozenset({"array"}): "an array",
    frozenset({"string"}): "a string",
    frozenset({"number"}): "a number",
    frozenset({"string", "null"}): "a string or null",
}

# Parser states of a container (the top level behaves as a one-value container).
_KEY_OR_END = 0  # `{` just read
_KEY = 1  # after `,` in an object
_COLON = 2
_VALUE = 3  # after `:` in an object, after `,` in an array, or the top-level value
_VALUE_OR_END = 4  # `[` just read
_COMMA_OR_END = 5
_DONE = 6  # the top-level value is complete: only whitespace may follow


class _SyntaxProblem(Exception):
    """The bytes are not JSON: scanning stops here."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


@dataclass(slots=True)
class _Contents:
    """One `sourcesContent` array (a map may repeat the key; each occurrence counts)."""

    total: int = 0
    embedded: int = 0
    embedded_bytes: int = 0
    indexes: list[int] = field(default_factory=list)

    def add(self, index: int, length: int) -> None:
        if length <= 0:
            return
        self.embedded += 1
        self.embedded_bytes += length
        if len(self.indexes) < _MAX_EXAMPLES:
            self.indexes.append(index)


@dataclass(slots=True)
class _MapStats:
    """What one map object (the top level, or a section's `map`) holds."""

    keys: set[str] = field(default_factory=set)
    sources: list[str | None] = field(default_factory=list)  # the first _KEPT_SOURCES
    sources_seen: int = 0  # entries of every `sources` occurrence
    last_sources_start: int = 0  # where the last occurrence starts in `sources_seen`
    last_sources_count: int = 0
    unkept_absolute_local: list[str] = field(default_factory=list)
    unkept_absolute_local_count: int = 0
    unkept_relative: int = 0
    source_root: str | None = None
    rules: MapRules = field(default_factory=lambda: MapRules(in_section=False))
    contents: _Contents | None = None
    best: _Contents | None = None

    def begin_sources(self) -> None:
        self.last_sources_start = self.sources_seen
        self.last_sources_count = 0

    def add_source(self, source: str | None, index: int) -> None:
        """Record entry `index` of `sources` (None: null, or not a string), once."""
        if self.last_sources_count > index:
            return  # a literal cut by a chunk boundary is looked at again
        self.sources_seen += 1
        self.last_sources_count += 1
        if len(self.sources) < _KEPT_SOURCES:
            self.sources.append(source)
        elif source is None:
            return
        elif _is_absolute(source):
            if _is_local_path(source):
                self.unkept_absolute_local_count += 1
                if len(self.unkept_absolute_local) < _MAX_EXAMPLES:
                    self.unkept_absolute_local.append(source)
        else:
            self.unkept_relative += 1

    def begin_contents(self) -> _Contents:
        self.end_contents()
        self.contents = _Contents()
        return self.contents

    def end_contents(self) -> None:
        """Keep the occurrence that embeds the most (duplicate keys ship either way)."""
        current = self.contents
        if current is not None and (self.best is None or current.embedded >= self.best.embedded):
            self.best = current
        self.contents = None

    def embedded_examples(self) -> list[str]:
        if self.best is None:
            return []
        examples = []
        for index in self.best.indexes:
            position = self.last_sources_start + index
            if index < self.last_sources_count and position < len(self.sources):
                source = self.sources[position]
                if source:
                    examples.append(source)
        return examples

    def local_paths(self) -> tuple[int, list[str]]:
        """How many joined sources (and the sourceRoot) are local paths, with examples."""
        root = self.source_root
        examples: list[str] = []
        count = 0
        for source in self.sources:
            if source is None:
                continue
            joined = join_source(root, source)
            if _is_local_path(joined):
                count += 1
                if len(examples) < _MAX_EXAMPLES:
                    examples.append(joined)
        count += self.unkept_absolute_local_count
        examples.extend(self.unkept_absolute_local[: _MAX_EXAMPLES - len(examples)])
        if self.unkept_relative and root and _is_local_path(join_source(root, "x")):
            count += self.unkept_relative
        if not count and root and _is_local_path(root):
            return 1, [root]  # no source under it, but the root itself is revealed
        return count, examples


class _Frame:
    """An open object or array."""

    __slots__ = ("index", "is_object", "key", "role", "state", "stats")

    def __init__(self, is_object: bool, role: _Role, stats: _MapStats | None) -> None:
        self.is_object = is_object
        self.role = role
        self.stats = stats  # the map this container belongs to (its own, for a map object)
        self.state = _KEY_OR_END if is_object else _VALUE_OR_END
        self.key: str | None = None
        self.index = 0  # elements of an array so far; keys of a section (see _close)


class _String:
    """A string being read across chunks."""

    __slots__ = ("capture", "index", "length", "overflow", "role", "start")

    def __init__(self, role: _Role, start: int, index: int, capture: bool) -> None:
        self.role = role
        self.start = start
        self.index = index
        self.length = 0
        self.capture: bytearray | None = bytearray() if capture else None
        self.overflow = False


_CAPTURED_ROLES = frozenset({_Role.KEY, _Role.SOURCE, _Role.SOURCE_ROOT})


class MapScanner:
    """Incremental source-map scanner: `feed(bytes)` as data arrives, then `close()`.

    Memory stays bounded whatever the input: the pending bytes between two feeds are at
    most a partial number, literal or escape, and only capped prefixes of strings are kept.
    After a syntax error, `done` is True and further input is ignored.
    """

    def __init__(self) -> None:
        self.size = 0
        self._pending = b""
        self._base = 0  # stream offset of the first pending byte
        self._preamble = True
        self._stack: list[_Frame] = []
        self._top_state = _VALUE
        self._string: _String | None = None
        self._result = MapVerdict()  # closed maps are merged into it, then dropped
        self._is_index = False
        self._problem: str | None = None
        self._syntax: str | None = None
        self._clean: bytes | None = None  # sanitised copy of the current buffer
        self._slow_quotes = 0
        self._deep: DeepValue | None = None  # a value nested too deep, read leniently
        self._hidden_sources = 0
        self._deep_gave_up = False
        self._long_number = False  # inside a number longer than _MAX_NUMBER_BYTES
        self._after_error = b""  # the last bytes after a syntax error (a needle may straddle)
        self._error_mentions_sources = False
        self._string_end = 0  # stream offset just past the last string read
        self._mappings: MappingsCheck | None = None  # the `mappings` string being read

    @property
    def done(self) -> bool:
        return self._syntax is not None and self._error_mentions_sources

    def feed(self, data: bytes) -> None:
        self.size += len(data)
        if self._syntax is None:
            self._process(self._pending + data if self._pending else data, final=False)
        else:
            self._search_after_error(data)

    def _search_after_error(self, data: bytes) -> None:
        """After a syntax error nothing parses, but the bytes still ship: a later
        `sourcesContent` means sources may be there, and the map fails closed."""
        if self._error_mentions_sources:
            return
        buffer = self._after_error + data
        if _CONTENTS_KEY in buffer:
            self._error_mentions_sources = True
        self._after_error = buffer[-(len(_CONTENTS_KEY) - 1) :]

    def close(self) -> MapVerdict:
        if self._syntax is None:
            self._process(self._pending, final=True)
        if self._syntax is None:
            self._check_complete()
        return self._verdict()

    # ----------------------------------------------------------------- driving

    def _process(self, buf: bytes, *, final: bool) -> None:
        if self._preamble:
            stripped = self._strip_preamble(buf, final=final)
            if stripped is None:
                self._pending = buf
                return
            buf = stripped
        self._clean = None
        self._slow_quotes = 0
        try:
            consumed = self._scan(buf, final)
        except _SyntaxProblem as problem:
            self._syntax = f"{problem.message} (byte {problem.offset})"
            self._pending = b""
            # What follows the error: after the string it was found in, if it was in one.
            resume = max(problem.offset, self._string_end)
            self._search_after_error(buf[max(0, resume - self._base) :])
            return
        self._pending = buf[consumed:]
        self._base += consumed

    def _strip_preamble(self, buf: bytes, *, final: bool) -> bytes | None:
        """Drop a UTF-8 BOM and the `)]}'` anti-XSSI prefix; None: wait for more bytes."""
        if len(buf) < len(_BOM) + len(_XSSI) and not final:
            return None
        skip = len(_BOM) if buf.startswith(_BOM) else 0
        if buf.startswith(_XSSI, skip):
            skip += len(_XSSI)  # a newline after it is JSON whitespace
        self._preamble = False
        self._base += skip
        return buf[skip:]

    def _fail(self, message: str, offset: int) -> _SyntaxProblem:
        return _SyntaxProblem(f"not valid JSON: {message}", offset)

    def _note(self, message: str, offset: int) -> None:
        """Record a problem that does not stop the scan (the first one is reported)."""
        if self._problem is None:
            self._problem = f"{message} (byte {offset})"

    def _scan(self, b: bytes, final: bool) -> int:
        """Consume what `b` completes; return how many bytes were consumed."""
        n = len(b)
        i = 0
        while True:
            if self._deep is not None:
                j = self._deep.feed(b, i)
                if j < 0:
                    return n
                self._deep_done()
                i = j
                continue
            if self._long_number:
                i = self._skip_long_number(b, i, final)
                if self._long_number:
                    return n
                continue
            if self._string is not None:
                i = self._scan_string(b, i, final)
                if self._string is not None:
                    return i
                continue
            if i < n and b[i] in _WS_BYTES:
                i = _skip_ws(b, i)
            if i >= n:
                return n
            stack = self._stack
            frame = stack[-1] if stack else None
            state = frame.state if frame is not None else self._top_state
            c = b[i]
            if state in (_VALUE, _VALUE_OR_END):
                if c == 0x5D and state == _VALUE_OR_END:
                    self._close(frame, i)
                    i += 1
                    continue
                j = self._start_value(b, i, final, frame)
                if j < 0:
                    return i
                i = j
            elif state == _COMMA_OR_END:
                i = self._after_value(frame, c, i)
            elif state == _COLON:
                if c != 0x3A or frame is None:
                    raise self._fail("expected ':' after an object key", self._base + i)
                frame.state = _VALUE
                i += 1
            elif state in (_KEY_OR_END, _KEY):
                if c == 0x7D and state == _KEY_OR_END:
                    self._close(frame, i)
                    i += 1
                elif c == _QUOTE:
                    i = self._start_string(b, i, _Role.KEY, 0)
                else:
                    raise self._fail("expected a string key", self._base + i)
            else:
                raise self._fail("unexpected data after the JSON document", self._base + i)

    def _after_value(self, frame: _Frame | None, c: int, i: int) -> int:
        assert frame is not None  # the top level goes straight to _DONE
        if c == 0x2C:
            frame.state = _KEY if frame.is_object else _VALUE
        elif c == (0x7D if frame.is_object else 0x5D):
            self._close(frame, i)
        else:
            expected = "',' or '}'" if frame.is_object else "',' or ']'"
            raise self._fail(f"expected {expected}", self._base + i)
        return i + 1

    def _value_done(self) -> None:
        stack = self._stack
        if not stack:
            self._top_state = _DONE
            return
        frame = stack[-1]
        frame.state = _COMMA_OR_END
        if not frame.is_object:
            frame.index += 1

    # ----------------------------------------------------------------- values

    def _child_role(self, frame: _Frame | None) -> _Role:
        if frame is None:
            return _Role.MAP
        if frame.is_object:
            if frame.role is _Role.MAP:
                return _MAP_KEYS.get(frame.key or "", _Role.OTHER)
            if frame.role is _Role.SECTION:
                return _SECTION_KEYS.get(frame.key or "", _Role.OTHER)
            if frame.role is _Role.OFFSET:
                return _OFFSET_KEYS.get(frame.key or "", _Role.OTHER)
            return _Role.OTHER
        return _ELEMENT_ROLES.get(frame.role, _Role.OTHER)

    def _check_kind(self, role: _Role, kind: str, offset: int) -> _Role:
        """The role the value keeps: OTHER when its type is wrong (a problem is noted)."""
        expected = _EXPECTED.get(role)
        if expected is None or kind in expected[0]:
            return role
        accepted, name = expected
        what = _ACCEPTED_NAMES.get(accepted, "something else")
        if role is _Role.MAP and not self._stack:
            name = "the top level"
            what = "a JSON object (a source map)"
        self._note(f"{name} must be {what}, not {_KIND_NAMES[kind]}", offset)
        if role is _Role.CONTENTS and kind == "string":
            return _Role.CONTENT_TEXT  # still text that ships: count it
        return _Role.OTHER

    def _start_value(self, b: bytes, i: int, final: bool, frame: _Frame | None) -> int:
        """Start (or wholly read) the value at `b[i]`; -1 when more bytes are needed."""
        role = self._child_role(frame)
        c = b[i]
        if frame is not None and frame.stats is not None and not frame.is_object:
            if frame.role is _Role.CONTENTS and frame.stats.contents is not None:
                frame.stats.contents.total = frame.index + 1
            elif frame.role is _Role.SOURCES and c != _QUOTE:
                frame.stats.add_source(None, frame.index)  # a string is added once read
        offset = self._base + i
        if c == _QUOTE:
            role = self._check_kind(role, "string", offset)
            if role is _Role.MAPPINGS and frame is not None and frame.stats is not None:
                self._mappings = frame.stats.rules.begin_mappings()
            if frame is not None and not frame.is_object and role in (_Role.NAME, _Role.OTHER):
                run = _SIMPLE_STRING_RUN.match(b, i)
                if run is not None:
                    if role is _Role.NAME and frame.stats is not None:
                        frame.stats.rules.add_names(b.count(b'"', i, run.end()) // 2)
                    self._value_done()
                    return run.end()
            return self._start_string(b, i, role, frame.index if frame is not None else 0)
        if c == 0x7B or c == 0x5B:
            is_object = c == 0x7B
            role = self._check_kind(role, "object" if is_object else "array", offset)
            if len(self._stack) >= _MAX_DEPTH:
                # JSON.parse reads any depth: read on leniently, looking for sources.
                self._note(f"nested deeper than {_MAX_DEPTH} levels", offset)
                self._deep = DeepValue()
                return i
            self._open(is_object, role, frame, offset)
            return i + 1
        if c in _LITERALS:
            return self._literal(b, i, final, role)
        if c == 0x2D or 0x30 <= c <= 0x39:
            return self._number(b, i, final, role)
        raise self._fail(f"unexpected byte {bytes([c])!r}", offset)

    def _literal(self, b: bytes, i: int, final: bool, role: _Role) -> int:
        word = _LITERALS[b[i]]
        end = i + len(word)
        if b.startswith(word, i):
            kind = "null" if word == b"null" else "boolean"
            self._check_kind(role, kind, self._base + i)
            self._rule_number(role, None, self._base + i)
            self._value_done()
            return end
        if end > len(b) and word.startswith(b[i:]) and not final:
            return -1
        raise self._fail("unexpected literal", self._base + i)

    def _number(self, b: bytes, i: int, final: bool, role: _Role) -> int:
        run = _NUMBER_RUN.match(b, i)
        assert run is not None  # b[i] is a digit or '-'
        end = run.end()
        if end - i > _MAX_NUMBER_BYTES:
            # Valid JSON that JSON.parse reads (as Infinity, or rounded): skip it leniently.
            self._note("number too long", self._base + i)
            self._check_kind(role, "number", self._base + i)
            self._long_number = True
            return self._skip_long_number(b, end, final)
        if end == len(b) and not final:
            return -1
        token = b[i:end]
        if _NUMBER.fullmatch(token) is None:
            raise self._fail(f"malformed number {token[:40]!r}", self._base + i)
        role = self._check_kind(role, "number", self._base + i)
        if role is _Role.VERSION and float(token) != 3:
            self._note(f"`version` is {token.decode()}, expected 3", self._base + i)
        self._rule_number(role, token, self._base + i)
        self._value_done()
        return end

    def _skip_long_number(self, b: bytes, i: int, final: bool) -> int:
        run = _NUMBER_RUN.match(b, i)
        end = run.end() if run is not None else i
        if end < len(b) or final:
            self._long_number = False
            self._value_done()
        return end

    def _deep_done(self) -> None:
        deep = self._deep
        assert deep is not None
        self._hidden_sources += deep.sources
        self._deep_gave_up = self._deep_gave_up or deep.gave_up
        self._deep = None
        self._value_done()

    def _rule_number(self, role: _Role, token: bytes | None, offset: int) -> None:
        """Hand an `ignoreList` entry or a section's offset to the map's rules."""
        if role not in (_Role.IGNORE_INDEX, _Role.OFFSET_LINE, _Role.OFFSET_COLUMN):
            return
        frame = self._stack[-1] if self._stack else None
        if frame is None or frame.stats is None:
            return
        rules = frame.stats.rules
        if role is _Role.IGNORE_INDEX:
            problem = rules.ignore_index(token)
        else:
            problem = rules.offset_field("line" if role is _Role.OFFSET_LINE else "column", token)
        if problem is not None:
            self._note(problem, offset)

    def _open(self, is_object: bool, role: _Role, parent: _Frame | None, offset: int) -> None:
        stats = parent.stats if parent is not None else None
        if role is _Role.MAP:
            in_section = parent is not None and parent.role is _Role.SECTION
            stats = _MapStats(rules=MapRules(in_section=in_section))
        elif stats is not None and role is _Role.SOURCES:
            stats.begin_sources()
        elif stats is not None and role is _Role.CONTENTS:
            stats.begin_contents()
        elif role is _Role.SECTIONS:
            self._is_index = True
        elif stats is not None and role is _Role.NAMES:
            stats.rules.begin_names()
        elif stats is not None and role is _Role.IGNORE_LIST:
            stats.rules.begin_ignore_list()
        elif stats is not None and role is _Role.SECTION:
            stats.rules.begin_section()
        elif stats is not None and role is _Role.OFFSET:
            stats.rules.section_offset()
        self._stack.append(_Frame(is_object, role, stats))

    def _close(self, frame: _Frame | None, i: int) -> None:
        assert frame is not None
        self._stack.pop()
        offset = self._base + i
        stats = frame.stats
        if frame.role is _Role.MAP and stats is not None:
            if "version" not in stats.keys:
                self._note("the map has no `version`", offset)
            if "mappings" not in stats.keys and "sections" not in stats.keys:
                self._note("the map has neither `mappings` nor `sections`", offset)
            problem = stats.rules.close(stats.keys, stats.last_sources_count)
            if problem is not None:
                self._note(problem, offset)
            parent = self._stack[-1] if self._stack else None
            if parent is not None and parent.role is _Role.SECTION and parent.stats is not None:
                parent.stats.rules.section_map(stats.rules)
            stats.end_contents()
            _merge(self._result, stats)
        elif frame.role is _Role.SECTION and stats is not None:
            problem = stats.rules.end_section()
            if problem is not None:
                self._note(problem, offset)
        elif frame.role is _Role.CONTENTS and stats is not None:
            stats.end_contents()
        self._value_done()

    # ----------------------------------------------------------------- strings

    def _start_string(self, b: bytes, i: int, role: _Role, index: int) -> int:
        simple = _SIMPLE_STRING.match(b, i)
        if simple is not None:
            raw = simple.group(1)
            self._string_end = self._base + simple.end()
            self._string_done(role, raw, len(raw), complete=True, offset=self._base + i)
            return simple.end()
        self._string = _String(role, self._base + i, index, role in _CAPTURED_ROLES)
        return i + 1

    def _scan_string(self, b: bytes, i: int, final: bool) -> int:
        string = self._string
        assert string is not None
        end = self._find_close(b, i)
        if end < 0:
            stop = len(b)
            if not final and _backslash_run(b, i, stop) % 2:
                stop -= 1  # an escape that the next chunk completes
            self._string_bytes(string, b, i, stop)
            return stop
        self._string_bytes(string, b, i, end)
        self._string = None
        self._string_end = self._base + end + 1
        raw = bytes(string.capture) if string.capture is not None else b""
        self._string_done(
            string.role, raw, string.length, complete=not string.overflow, offset=string.start
        )
        return end + 1

    def _find_close(self, b: bytes, i: int) -> int:
        """Offset of the quote that ends the string whose content starts at `b[i]`, or -1.

        `i` is never inside an escape, so a backslash run that starts at `i` or after a
        non-backslash byte is made of whole escapes.
        """
        if self._clean is None:
            quote = b.find(b'"', i)
            while quote > i and b[quote - 1] == _BACKSLASH:
                if _backslash_run(b, i, quote) % 2 == 0:
                    return quote
                self._slow_quotes += 1
                if self._slow_quotes > _SLOW_QUOTES:
                    self._clean = b.replace(b'\\"', b"__")
                    break
                quote = b.find(b'"', quote + 1)
            else:
                return quote
        clean = self._clean
        candidate = clean.find(b'"', i)
        limit = candidate if candidate >= 0 else len(b)
        hidden = b.find(b'\\\\"', i, limit)
        while hidden >= 0:
            if _backslash_run(b, i, hidden + 2) % 2 == 0:
                return hidden + 2
            hidden = b.find(b'\\\\"', hidden + 3, limit)
        return candidate

    def _string_bytes(self, string: _String, b: bytes, lo: int, hi: int) -> None:
        if hi <= lo:
            return
        string.length += hi - lo
        capture = string.capture
        if capture is not None and not string.overflow:
            cap = _KEY_BYTES if string.role is _Role.KEY else _CAPTURE_BYTES
            room = cap - len(capture)
            capture += b[lo : min(hi, lo + room)]
            if hi - lo > room:
                string.overflow = True
        if string.role is _Role.MAPPINGS and self._mappings is not None:
            self._mappings.feed(b[lo:hi])

    def _string_done(
        self, role: _Role, raw: bytes, length: int, *, complete: bool, offset: int
    ) -> None:
        stack = self._stack
        frame = stack[-1] if stack else None
        if role is _Role.KEY:
            assert frame is not None
            self._key_done(frame, raw, complete, offset)
            return
        stats = frame.stats if frame is not None else None
        if len(raw) > _CAPTURE_BYTES and role is not _Role.MAPPINGS:
            raw, complete = raw[:_CAPTURE_BYTES], False  # a long fast-path string
        if role is _Role.MAPPINGS and self._mappings is not None:
            self._end_mappings(self._mappings, raw, offset)
        if stats is not None:
            if role is _Role.CONTENT and stats.contents is not None:
                stats.contents.add(frame.index if frame is not None else 0, length)
            elif role is _Role.CONTENT_TEXT and length:
                text = stats.begin_contents()
                text.add(0, length)
                text.total = 1
                stats.end_contents()
            elif role is _Role.SOURCE:
                index = frame.index if frame is not None else 0
                stats.add_source(_decode_string(raw, complete, offset, self._note), index)
            elif role is _Role.SOURCE_ROOT:
                stats.source_root = _decode_string(raw, complete, offset, self._note)
            elif role is _Role.NAME:
                stats.rules.add_names(1)
        self._value_done()

    def _end_mappings(self, mappings: MappingsCheck, raw: bytes, offset: int) -> None:
        """The `mappings` string at `offset` ended (`raw`: all of it, or b'' if streamed)."""
        self._mappings = None
        if raw:
            mappings.feed(raw)
        mappings.finish()
        problem = mappings.problem
        if problem is None:
            return
        position = mappings.error_position
        if mappings.escaped:  # positions are of the decoded text: name the string
            self._note(f"invalid `mappings`: {problem} (character {position})", offset)
        else:
            self._note(f"invalid `mappings`: {problem}", offset + 1 + position)

    def _key_done(self, frame: _Frame, raw: bytes, complete: bool, offset: int) -> None:
        key = _decode_string(raw, complete, offset, self._note) if complete else None
        frame.key = key
        frame.state = _COLON
        if key is None:
            return
        if frame.role is _Role.MAP and frame.stats is not None and key in _MAP_KEYS:
            frame.stats.keys.add(key)
        elif frame.role is _Role.SECTION and key == "url" and frame.stats is not None:
            frame.stats.rules.section_url()

    # ----------------------------------------------------------------- the end

    def _check_complete(self) -> None:
        where = self._base
        if self._deep is not None:
            self._syntax = (
                f"truncated: the data ends inside a value nested deeper than {_MAX_DEPTH} "
                f"levels (byte {where})"
            )
        elif self._string is not None:
            self._syntax = f"truncated: the data ends inside a string (byte {where})"
        elif self._stack:
            kind = "an object" if self._stack[-1].is_object else "an array"
            self._syntax = f"truncated: the data ends inside {kind} (byte {where})"
        elif self._top_state != _DONE:
            self._syntax = "empty: no JSON value" if where == 0 else f"no JSON value (byte {where})"

    def _verdict(self) -> MapVerdict:
        string = self._string
        if string is not None and string.role in (_Role.CONTENT, _Role.CONTENT_TEXT):
            self._count_partial_content(string)
        verdict = self._result
        for frame in reversed(self._stack):  # maps left open by an error still count
            if frame.role is _Role.MAP and frame.stats is not None:
                frame.stats.end_contents()
                _merge(verdict, frame.stats)
        verdict.size = self.size
        verdict.is_index = self._is_index
        verdict.problem = self._syntax or self._problem
        deep = self._deep
        verdict.hidden_sources = self._hidden_sources + (deep.sources if deep else 0)
        verdict.unread_may_hold_sources = (
            self._error_mentions_sources or self._deep_gave_up or bool(deep and deep.gave_up)
        )
        return verdict

    def _count_partial_content(self, string: _String) -> None:
        """Text of a string cut by a syntax error or the end of data still shipped."""
        frame = self._stack[-1] if self._stack else None
        if frame is None or frame.stats is None:
            return
        if string.role is _Role.CONTENT_TEXT:
            text = frame.stats.begin_contents()
            text.add(0, string.length)
            text.total = 1
        elif frame.stats.contents is not None:
            frame.stats.contents.add(frame.index, string.length)


def _merge(verdict: MapVerdict, stats: _MapStats) -> None:
    best = stats.best
    content_total = best.total if best is not None else 0
    verdict.files += max(stats.last_sources_count, content_total)
    if "sections" not in stats.keys:
        verdict.maps += 1
    if best is not None and best.embedded:
        verdict.embedded += best.embedded
        verdict.embedded_bytes += best.embedded_bytes
        room = _MAX_EXAMPLES - len(verdict.examples)
        verdict.examples.extend(stats.embedded_examples()[:room])
    count, examples = stats.local_paths()
    if count:
        verdict.local_count += count
        verdict.local_paths.extend(examples[: _MAX_EXAMPLES - len(verdict.local_paths)])
        if verdict.source_root is None:
            verdict.source_root = stats.source_root


def _skip_ws(b: bytes, i: int) -> int:
    match = _WS.match(b, i)
    return match.end() if match is not None else i


def _backslash_run(b: bytes, lo: int, end: int) -> int:
    """How many backslashes end `b[lo:end]` (looked at in windows, at C speed)."""
    count = 0
    while end > lo:
        start = max(lo, end - 64)
        window = b[start:end]
        kept = len(window.rstrip(b"\\"))
        count += len(window) - kept
        if kept:
            break
        end = start
    return count


def _decode_string(
    raw: bytes, complete: bool, offset: int, note: Callable[[str, int], None] | None = None
) -> str:
    """Decode a JSON string's raw bytes; a capped prefix is decoded leniently.

    A complete short string that does not decode is a syntax error, as `json` would say.
    """
    if complete:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            # Browsers and Node decode a map as UTF-8 with U+FFFD for bad bytes, then parse
            # it: the map is invalid (noted) but it is read on as they read it.
            if note is not None:
                note("not valid UTF-8 in a string", offset + 1 + exc.start)
            text = raw.decode("utf-8", "replace")
        if "\\" not in text:
            return text
        try:
            value = json.loads('"' + text + '"')
        except ValueError as exc:
            raise _SyntaxProblem("not valid JSON: invalid string", offset) from exc
        assert isinstance(value, str)
        return value
    cut = raw.rfind(b"\\", max(0, len(raw) - 12))
    if cut >= 0:
        raw = raw[:cut]  # maybe a partial escape: drop it
    text = raw.decode("utf-8", "replace")
    try:
        value = json.loads('"' + text + '"')
    except ValueError:
        return text
    return value if isinstance(value, str) else text


# --------------------------------------------------------------------------- whole-map checks


class _MapCheck:
    """A map scan plus, for small maps, a strict validation of the whole text by `json`."""

    def __init__(self) -> None:
        self.scanner = MapScanner()
        self._small: bytearray | None = bytearray()

    @property
    def done(self) -> bool:
        return self.scanner.done

    def feed(self, data: bytes) -> None:
        self.scanner.feed(data)
        small = self._small
        if small is not None:
            if len(small) + len(data) > SMALL_MAP_LIMIT:
                self._small = None
            else:
                small += data

    def finish(self) -> MapVerdict:
        verdict = self.scanner.close()
        if verdict.problem is None and self._small is not None:
            verdict.problem = _validate_small_map(bytes(self._small))
        return verdict


def _validate_small_map(data: bytes) -> str | None:
    """Validate a small map's JSON strictly: escapes, control characters and UTF-8.

    The streaming scanner checks the grammar outside strings and every ECMA-426 rule
    (bot/engine/mapcheck.py), but not escapes, control characters or UTF-8 inside long
    strings; for a map under SMALL_MAP_LIMIT, `json.loads` covers those too.

    (The `sourcemap` package once validated small maps' `mappings` here; mapcheck.py now
    validates every map's `mappings` completely, streamed, so it is no longer used.)
    """
    skip = len(_BOM) if data.startswith(_BOM) else 0
    if data.startswith(_XSSI, skip):
        skip += len(_XSSI)
    try:
        text = data[skip:].decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8 (byte {skip + exc.start})"
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        offset = skip + len(text[: exc.pos].encode("utf-8", "surrogatepass"))
        return f"not valid JSON: {exc.msg.removesuffix(' at')} (byte {offset})"
    return None


# --------------------------------------------------------------------------- code files

_PRAGMA_WORD = b"sourceMappingURL="
# What must precede `sourceMappingURL=` to make it a pragma: a comment opener, `#` or `@`.
_PRAGMA_OPENER = re.compile(rb"(//|/\*)[#@][ \t]{0,64}\Z")
_OPENER_WINDOW = 2 + 1 + 64
_HOLD = _OPENER_WINDOW + len(_PRAGMA_WORD) - 1  # bytes kept to find a straddling pragma
_WHITESPACE = (b" ", b"\t", b"\n", b"\r", b"\f", b"\v")
_QUOTES = b"\"'`"
# A URL ends at whitespace, or at a quote: code that builds a pragma in a string
# (`"//# sourceMappingURL=data:application/json;base64," + encoded`) is not a pragma, and
# neither base64 nor percent-encoding leaves a raw quote in a real one.
_URL_END = (*_WHITESPACE, b'"', b"'", b"`")
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


class _Mode(IntEnum):
    SEARCH = 0
    URL_START = 1
    EXTERNAL = 2
    DATA_HEADER = 3
    DATA_PAYLOAD = 4


def _find_first(b: bytes, i: int, needles: tuple[bytes, ...]) -> int:
    best = -1
    for needle in needles:
        found = b.find(needle, i, best if best >= 0 else len(b))
        if found >= 0:
            best = found
    return best


def _valid_base64_prefix(piece: bytes) -> tuple[int, tuple[str, int] | None]:
    """How much of `piece` (whole groups) is valid base64, and what is wrong after it.

    As strict as `a2b_base64(strict_mode=True)`, which runs at about 140 MB/s here;
    `bytes.translate` plus the lenient decoder run at about 190 MB/s.
    """
    limit = len(piece)
    problem: tuple[str, int] | None = None
    unexpected = piece.translate(None, _BASE64_ALPHABET)
    if unexpected:
        limit = piece.index(unexpected[:1])
        problem = (f"unexpected byte {unexpected[:1]!r}", limit)
    pad = piece.find(b"=", 0, limit)
    if pad < 0:
        return limit - limit % 4, problem
    group_end = pad - pad % 4 + 4
    if pad % 4 < 2 or piece[pad:group_end] != b"=" * (group_end - pad):
        return pad - pad % 4, ("misplaced padding", pad)
    if group_end < len(piece):
        return group_end, ("data after the padding", group_end)
    return group_end, None


class _InlineMap:
    """The payload of a `data:` URL, decoded as it streams by and fed to a map check."""

    def __init__(self, header: bytes, tap: Callable[[bytes], None] | None = None) -> None:
        params = [p.strip().lower() for p in header.split(b";")]
        self._tap = tap
        self.media_type = params[0].decode("ascii", "replace") or "text/plain"
        self.base64 = b"base64" in params[1:]
        self.check = _MapCheck()
        self.encoded = 0
        self.head = b""  # the first bytes of the payload
        self._last = b""  # its last bytes (padding)
        self._percents = 0
        self._carry = b""
        self._padded = False
        self._error: str | None = None

    def feed(self, data: bytes) -> None:
        if len(self.head) < 2:
            self.head += data[: 2 - len(self.head)]
        self._last = (self._last + data)[-2:]
        self.encoded += len(data)
        if not self.base64:
            self._percents += data.count(b"%")
        if self._error is not None or self.check.done:
            return
        data = self._carry + data
        start = self.encoded - len(data)  # payload offset of data[0]
        if self.base64:
            usable = len(data) - len(data) % 4
            self._carry = data[usable:]
            self._decode_base64(data[:usable], start)
        else:
            cut = data.rfind(b"%", max(0, len(data) - 2))
            self._carry = data[cut:] if cut >= 0 else b""
            self._decoded(unquote_to_bytes(data[:cut] if cut >= 0 else data))

    def _decoded(self, data: bytes) -> None:
        self.check.feed(data)
        if self._tap is not None:
            self._tap(data)

    def _decode_base64(self, piece: bytes, start: int) -> None:
        """Decode whole 4-byte groups, strictly; what precedes an error is still scanned."""
        if not piece:
            return
        if self._padded:
            self._fail("data after the padding", start)
            return
        valid, problem = _valid_base64_prefix(piece)
        if valid:
            self._decoded(binascii.a2b_base64(piece[:valid]))
        if problem is not None:
            self._fail(problem[0], start + problem[1])
        elif piece.endswith(b"="):
            self._padded = True

    @property
    def decoded_size(self) -> int:
        """The size of the JSON, from the payload's length (decoding may stop at an error)."""
        size = self.encoded
        if not self.base64:
            return size - 2 * self._percents
        padding = len(self._last) - len(self._last.rstrip(b"="))
        return size // 4 * 3 + max(0, size % 4 - 1) - padding

    def _fail(self, what: str, offset: int) -> None:
        self._error = f"the inline map is not valid base64: {what} (payload byte {offset})"

    def finish(self) -> MapVerdict:
        carry, self._carry = self._carry, b""
        if self._error is None and not self.check.done and carry:
            start = self.encoded - len(carry)
            if not self.base64:
                self._decoded(unquote_to_bytes(carry))
            elif len(carry) % 4 == 1:
                self._fail("a truncated last group", start)
            else:
                # Browsers decode base64 "forgivingly": padding may be left out.
                self._decode_base64(carry + b"=" * (-len(carry) % 4), start)
        verdict = self.check.finish()
        if self._error is not None:
            verdict.problem = self._error
        return verdict


class _CodeScanner:
    """Streams a JS/CSS file looking for `sourceMappingURL` pragmas."""

    def __init__(self, path: str, inline_tap: InlineTap | None = None) -> None:
        self.path = path
        self._inline_tap = inline_tap
        self._result = CodeCheck()
        self._tail = b""
        self._line = 1  # the line at `_line_pos` of the current buffer
        self._line_pos = 0
        self._mode = _Mode.SEARCH
        self._pragma_line = 1
        self._block = False  # the pragma is in a /* */ comment
        self._url = bytearray()
        self._header = bytearray()
        self._inline: _InlineMap | None = None

    @property
    def done(self) -> bool:
        return False  # every pragma counts, however many came before

    def feed(self, chunk: bytes) -> None:
        self._run(self._tail + chunk if self._tail else chunk, final=False)

    def close(self) -> CodeCheck:
        self._run(self._tail, final=True)
        self._tail = b""
        return self._result

    def _run(self, b: bytes, *, final: bool) -> None:
        i = 0
        while True:
            if self._mode is _Mode.SEARCH:
                j = self._search(b, i, final)
            elif self._mode is _Mode.URL_START:
                j = self._url_start(b, i, final)
            elif self._mode is _Mode.EXTERNAL:
                j = self._external(b, i, final)
            elif self._mode is _Mode.DATA_HEADER:
                j = self._data_header(b, i, final)
            else:
                j = self._data_payload(b, i, final)
            if j < 0:  # wait for more bytes: keep them
                return
            i = j

    def _keep(self, b: bytes, i: int) -> int:
        """Keep `b[i:]` for the next buffer; returns -1 to stop `_run`."""
        self._line_at(b, i)
        self._line_pos = 0
        self._tail = b[i:]
        return -1

    def _line_at(self, b: bytes, pos: int) -> int:
        """The line of `b[pos]`; newlines are counted once, and only where they can be."""
        if pos > self._line_pos:
            self._line += b.count(b"\n", self._line_pos, pos)
            self._line_pos = pos
        return self._line

    def _past_url(self, pos: int) -> None:
        """A URL holds no whitespace, so no newline: skip counting its bytes."""
        self._line_pos = max(self._line_pos, pos)

    def _search(self, b: bytes, i: int, final: bool) -> int:
        while True:
            found = b.find(_PRAGMA_WORD, i)
            if found < 0:
                return self._keep(b, len(b) if final else max(i, len(b) - _HOLD))
            opener = _PRAGMA_OPENER.search(b, max(i, found - _OPENER_WINDOW), found)
            if opener is None:
                i = found + len(_PRAGMA_WORD)
                continue
            self._pragma_line = self._line_at(b, opener.start())
            self._block = opener.group(1) == b"/*"
            self._url = bytearray()
            self._mode = _Mode.URL_START
            return found + len(_PRAGMA_WORD)

    def _url_end(self, b: bytes, i: int, needles: tuple[bytes, ...]) -> int:
        end = _find_first(b, i, needles)
        if self._block:
            close = b.find(b"*/", i, end if end >= 0 else len(b))
            if close >= 0:
                end = close
        return end

    def _held_end(self, b: bytes, i: int) -> int:
        """Where to stop when no terminator is in sight: keep a `*` that may start `*/`."""
        n = len(b)
        return n - 1 if self._block and n > i and b[n - 1] == 0x2A else n

    def _url_start(self, b: bytes, i: int, final: bool) -> int:
        if len(b) - i < 5 and not final:
            return self._keep(b, i)
        if b[i : i + 5].lower() == b"data:":
            self._header = bytearray()
            self._mode = _Mode.DATA_HEADER
            return i + 5
        self._mode = _Mode.EXTERNAL
        return i

    def _external(self, b: bytes, i: int, final: bool) -> int:
        end = self._url_end(b, i, _URL_END)
        stop = end if end >= 0 else (len(b) if final else self._held_end(b, i))
        room = MAX_URL_BYTES - len(self._url)
        self._url += b[i : i + min(room, stop - i)]
        self._past_url(stop)
        if end < 0 and not final:
            return self._keep(b, stop)
        if self._url and len(self._result.references) >= MAX_PRAGMAS:
            self._result.more_references += 1
        elif self._url:
            url = self._url.decode("utf-8", "replace")
            self._result.references.append(MapReference(url=url, line=self._pragma_line))
        self._mode = _Mode.SEARCH
        return stop

    def _data_header(self, b: bytes, i: int, final: bool) -> int:
        end = self._url_end(b, i, _URL_END)
        stop = end if end >= 0 else (len(b) if final else self._held_end(b, i))
        room = _MAX_DATA_HEADER - len(self._header)
        comma = b.find(b",", i, min(stop, i + room + 1))
        if comma >= 0:
            self._past_url(comma)
            self._header += b[i:comma]
            tap = self._inline_tap
            line = self._pragma_line
            self._inline = _InlineMap(
                bytes(self._header),
                None if tap is None else (lambda data: tap(line, data)),
            )
            self._mode = _Mode.DATA_PAYLOAD
            return comma + 1
        if end >= 0 and end - i <= room and b[end] in _QUOTES:
            self._mode = _Mode.SEARCH  # `"…sourceMappingURL=data:"`: code, not a pragma
            return end
        if end >= 0 or final or stop - i > room:
            self._malformed_data_url()
            self._inline = None  # the payload mode then skips the rest of the URL
            self._mode = _Mode.DATA_PAYLOAD
            return i
        self._header += b[i:stop]
        return self._keep(b, stop)

    def _malformed_data_url(self) -> None:
        line = self._pragma_line
        message = "inline source map in a malformed sourceMappingURL data: URL (no comma)"
        self._result.observations.append(Observation(Rule.INLINE_MAP, self.path, message, line))
        invalid = "source map does not parse: the data: URL has no comma before its payload"
        self._result.observations.append(Observation(Rule.INVALID_MAP, self.path, invalid, line))

    def _data_payload(self, b: bytes, i: int, final: bool) -> int:
        end = self._url_end(b, i, _URL_END)
        stop = end if end >= 0 else (len(b) if final else self._held_end(b, i))
        self._past_url(stop)
        inline = self._inline
        if inline is None:  # skipping a malformed data: URL
            if end < 0 and not final:
                return self._keep(b, stop)
            self._mode = _Mode.SEARCH
            return stop
        if stop > i:
            inline.feed(b[i:stop])
        if end < 0 and not final:
            return self._keep(b, stop)
        self._inline = None
        self._mode = _Mode.SEARCH
        self._report_inline(inline)
        return stop

    def _report_inline(self, inline: _InlineMap) -> None:
        if not inline.encoded or inline.head == b"${":
            return  # nothing, or code: `…;base64,${encoded}` in a template literal
        verdict = inline.finish()
        encoding = "base64" if inline.base64 else "percent-encoded"
        message = (
            f"inline source map in a sourceMappingURL data: URL ({inline.media_type}, "
            f"{encoding}, {human_size(inline.decoded_size)} of JSON in "
            f"{human_size(inline.encoded)})"
        )
        line = self._pragma_line
        observations = self._result.observations
        observations.append(Observation(Rule.INLINE_MAP, self.path, message, line))
        observations.extend(map_observations(verdict, path=self.path, line=line, standalone=False))
