"""ECMA-426 conformance of a source map, checked as the map streams by.

`sourcemaps.MapScanner` walks the JSON and calls into this module at a few points; nothing
here reads JSON itself, so the map is never held or decoded whole:

- `MapRules`, one per map object (the top level, or a section's `map`): the structural
  rules of "Source map format" and "Index source map" that the scanner's type checks do
  not cover: required `sources`; `file`, `ignoreList` and their types; `ignoreList` indices
  in range; an index map's sections (an `offset` with integral `line` and `column`, a
  `map`, sorted and not overlapping; no `mappings` beside `sections`; no index map inside
  a section), and the bounds of the mappings' source and name indices.
- `MappingsCheck`: the `mappings` string, fed in pieces: the grammar (segments of 1, 4 or 5
  base64 VLQ fields separated by `,` and `;`, no empty segment), each VLQ within 32 bits,
  and the decoded positions and indices never negative ("DecodeMappingsField").

The spec (tc39/ecma426, spec.emu) says that a consumer may "optionally report an error" for
most of these; a release gate reports every one, as `sourcemap/invalid`. The conformance
suite (tc39/source-map-tests) is run against this module by tests/test_conformance.py.

`mappings` is the one check whose work is per byte: it runs in C (`bot/engine/_vlq.c`, built
with the package; about 200 MB/s, the GIL released) and, where that extension was not
built, in `_feed_python`, the same state machine in Python (about 3 MB/s), which is also
the reference the tests compare the extension with.
"""

from __future__ import annotations

import math
import re
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Final, TypeAlias

_vlq: ModuleType | None
try:
    from bot.engine import _vlq
except ImportError:  # the extension was not built: _feed_python serves (see use_python)
    _vlq = None

# The slots of a `mappings` state (bot/engine/_vlq.c uses the same order).
U, SHIFT, DIGITS, FIELDS, AFTER_COMMA, LINE, COLUMN, SOURCE = range(8)
ORIGINAL_LINE, ORIGINAL_COLUMN, NAME, MAX_SOURCE, MAX_NAME, LAST_LINE = range(8, 14)
LAST_COLUMN, POSITION, ERROR, ERROR_POSITION, ERROR_DETAIL, SEGMENTS = range(14, 20)
STATE_SIZE: Final = 20

# Error codes (slot ERROR), as _vlq.c.
(
    E_NONE,
    E_CHARACTER,
    E_CONTINUATION,
    E_EMPTY_SEGMENT,
    E_FIELD_COUNT,
    E_TOO_LARGE,
    E_NEGATIVE_COLUMN,
    E_NEGATIVE_SOURCE,
    E_NEGATIVE_ORIGINAL_LINE,
    E_NEGATIVE_ORIGINAL_COLUMN,
    E_NEGATIVE_NAME,
    E_OUT_OF_RANGE,
) = range(12)

_LIMIT_32: Final = 1 << 32
_RUNNING_LIMIT: Final = 1 << 53  # keeps the C integers exact; no real map comes near
_ALPHABET: Final = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_DIGIT: Final = bytes(
    _ALPHABET.index(c) if c in _ALPHABET else 64 if c == 0x2C else 65 if c == 0x3B else 255
    for c in range(256)
)
_MESSAGES: Final = {
    E_CHARACTER: "a character outside base64 VLQ, `,` and `;`",
    E_CONTINUATION: "a base64 VLQ ends in a continuation digit",
    E_EMPTY_SEGMENT: "a segment with no fields (an empty segment between separators)",
    E_TOO_LARGE: "a base64 VLQ value exceeds 32 bits",
    E_NEGATIVE_COLUMN: "a negative generated column",
    E_NEGATIVE_SOURCE: "a negative source index",
    E_NEGATIVE_ORIGINAL_LINE: "a negative original line",
    E_NEGATIVE_ORIGINAL_COLUMN: "a negative original column",
    E_NEGATIVE_NAME: "a negative name index",
    E_OUT_OF_RANGE: "a position beyond 2^53",
}


_ESCAPE: Final = re.compile(rb'\\(?:u([0-9a-fA-F]{4})|(["\\\\/bfnrt]))')
_SIMPLE_ESCAPES: Final = {
    b'"': b'"',
    b"\\": b"\\",
    b"/": b"/",
    b"b": b"\b",
    b"f": b"\f",
    b"n": b"\n",
    b"r": b"\r",
    b"t": b"\t",
}


def _unescaped(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    if code is not None:
        return chr(int(code, 16)).encode("utf-8", "surrogatepass")
    return _SIMPLE_ESCAPES[match.group(2)]


def new_state() -> array[int]:
    """A fresh `mappings` state: every field 0, no maximum and no last line yet."""
    state = array("q", [0] * STATE_SIZE)
    state[MAX_SOURCE] = state[MAX_NAME] = state[LAST_LINE] = -1
    return state


def _feed_python(state: array[int], data: bytes) -> None:
    """The state machine of _vlq.c's `run`, in Python; the two must agree slot for slot."""
    if state[ERROR]:
        return
    u, shift, digits, fields = state[U], state[SHIFT], state[DIGITS], state[FIELDS]
    after_comma, line, column = state[AFTER_COMMA], state[LINE], state[COLUMN]
    source, oline, ocolumn = state[SOURCE], state[ORIGINAL_LINE], state[ORIGINAL_COLUMN]
    name, max_source, max_name = state[NAME], state[MAX_SOURCE], state[MAX_NAME]
    last_line, last_column = state[LAST_LINE], state[LAST_COLUMN]
    segments = state[SEGMENTS]
    error = detail = 0
    i = 0
    n = len(data)
    while i < n:
        d = _DIGIT[data[i]]
        if d < 64:
            bits = d & 31
            if bits:
                if shift >= 35:
                    error = E_TOO_LARGE
                    break
                u |= bits << shift
            if shift < 35:
                shift += 5
            digits += 1
            if d & 32:
                i += 1
                continue
            if u >= _LIMIT_32:
                error = E_TOO_LARGE
                break
            value = u >> 1
            if u & 1:
                value = -value if value else -(1 << 31)
            u = shift = digits = 0
            if fields == 0:
                column += value
                if column < 0:
                    error = E_NEGATIVE_COLUMN
                elif column > _RUNNING_LIMIT:
                    error = E_OUT_OF_RANGE
            elif fields == 1:
                source += value
            elif fields == 2:
                oline += value
            elif fields == 3:
                ocolumn += value
                if source < 0:
                    error = E_NEGATIVE_SOURCE
                elif oline < 0:
                    error = E_NEGATIVE_ORIGINAL_LINE
                elif ocolumn < 0:
                    error = E_NEGATIVE_ORIGINAL_COLUMN
                elif max(abs(source), abs(oline), abs(ocolumn)) > _RUNNING_LIMIT:
                    error = E_OUT_OF_RANGE
                elif source > max_source:
                    max_source = source
            elif fields == 4:
                name += value
                if name < 0:
                    error = E_NEGATIVE_NAME
                elif name > _RUNNING_LIMIT:
                    error = E_OUT_OF_RANGE
                elif name > max_name:
                    max_name = name
            else:
                error, detail = E_FIELD_COUNT, 6
            if error:
                break
            fields += 1
            i += 1
            continue
        if d == 255:
            error, detail = E_CHARACTER, data[i]
            break
        if digits:
            error = E_CONTINUATION
            break
        if fields == 0:
            if d == 64 or after_comma:
                error = E_EMPTY_SEGMENT
                break
        else:
            if fields in (2, 3):
                error, detail = E_FIELD_COUNT, fields
                break
            if line != last_line:
                last_line, last_column = line, column
            elif column > last_column:
                last_column = column
            segments += 1
            fields = 0
        if d == 64:
            after_comma = 1
        else:
            after_comma = 0
            line += 1
            column = 0
        i += 1
    state[U], state[SHIFT], state[DIGITS], state[FIELDS] = u, shift, digits, fields
    state[AFTER_COMMA], state[LINE], state[COLUMN] = after_comma, line, column
    state[SOURCE], state[ORIGINAL_LINE], state[ORIGINAL_COLUMN] = source, oline, ocolumn
    state[NAME], state[MAX_SOURCE], state[MAX_NAME] = name, max_source, max_name
    state[LAST_LINE], state[LAST_COLUMN], state[SEGMENTS] = last_line, last_column, segments
    state[POSITION] += i
    if error:
        state[ERROR], state[ERROR_POSITION], state[ERROR_DETAIL] = error, state[POSITION], detail


Feeder: TypeAlias = "Callable[[array[int], bytes], None]"


def compiled_feeder() -> Feeder | None:
    """The C implementation, or None where the extension was not built."""
    return None if _vlq is None else _vlq.feed


_feed: Feeder = compiled_feeder() or _feed_python


def use_python(enabled: bool) -> None:
    """Force the pure-Python state machine (tests), or go back to the best available."""
    global _feed
    _feed = _feed_python if enabled else (compiled_feeder() or _feed_python)


def describe(state: array[int]) -> str | None:
    """The first problem a state recorded, in words (without its position), or None."""
    error = state[ERROR]
    if not error:
        return None
    if error == E_FIELD_COUNT:
        count = state[ERROR_DETAIL]
        fields = "more than 5 fields" if count > 5 else f"{count} fields"
        return f"a segment with {fields}; a segment has 1, 4 or 5"
    if error == E_CHARACTER:
        return f"{_MESSAGES[error]}: {bytes([state[ERROR_DETAIL]])!r}"
    return _MESSAGES.get(error, f"error {error}")


class MappingsCheck:
    """One `mappings` string, fed with the raw bytes of its JSON text in any pieces.

    A JSON escape in the string (`\\/`, `\\u0041`) is decoded first: legal JSON, though no
    generator writes one. Memory is constant: an incomplete escape (at most 5 bytes) waits
    for the next piece.
    """

    def __init__(self) -> None:
        self.state = new_state()
        self._held = b""
        self.escaped = False  # an escape was decoded: positions are of the decoded text

    def feed(self, raw: bytes) -> None:
        if self._held or b"\\" in raw:
            self.escaped = True
            raw = self._unescape(self._held + raw)
        if raw:
            _feed(self.state, raw)

    def _unescape(self, raw: bytes) -> bytes:
        """Decode the complete escapes of `raw`; hold back one that the next piece ends.

        An invalid escape (`\\q`) is left as it is: its backslash is then reported as a
        character outside the alphabet, at the same position however the string was cut.
        """
        self._held = b""
        cut = raw.rfind(b"\\", max(0, len(raw) - 6))
        if cut >= 0:
            head = raw[: cut + 1]
            run = len(head) - len(head.rstrip(b"\\"))
            tail = len(raw) - cut
            if run % 2 and (tail < 2 or (raw[cut + 1 : cut + 2] == b"u" and tail < 6)):
                raw, self._held = raw[:cut], raw[cut:]
        return _ESCAPE.sub(_unescaped, raw)

    def finish(self) -> None:
        """The string ended: the last segment ends as if a line followed."""
        if self._held:
            held, self._held = self._held, b""
            _feed(self.state, held)  # a lone `\` at the end: not base64
        _feed(self.state, b";")

    @property
    def problem(self) -> str | None:
        return describe(self.state)

    @property
    def error_position(self) -> int:
        """Where the problem is: the index of the character in the (decoded) string."""
        return self.state[ERROR_POSITION]


def _integral(token: bytes) -> float | None:
    """The value of a JSON number token when it is integral ("an integral Number"), or None."""
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) and value.is_integer() else None


@dataclass(slots=True)
class _Section:
    """One entry of `sections` while it is read (its keys may come in any order)."""

    offset: bool = False  # an `offset` object was seen
    line: float | None = None
    column: float | None = None
    has_line: bool = False
    has_column: bool = False
    map_last: tuple[int, int] | None = None  # the section map's last mapping, unshifted
    has_map: bool = False
    url: bool = False


class MapRules:
    """The ECMA-426 rules of one map object; the scanner reports the first problem.

    `in_section` is True for a section's `map`. Counts are of the last occurrence of a
    key (JSON.parse keeps the last of duplicate keys).
    """

    def __init__(self, *, in_section: bool) -> None:
        self.in_section = in_section
        self.names = 0
        self.ignore_max = -1
        self.mappings: MappingsCheck | None = None
        self._sections_seen = False
        self._section: _Section | None = None
        self._previous_offset: tuple[float, float] | None = None
        self._previous_last: tuple[float, float] | None = None

    # ----------------------------------------------------------------- fields

    def begin_mappings(self) -> MappingsCheck:
        self.mappings = MappingsCheck()
        return self.mappings

    def begin_names(self) -> None:
        self.names = 0

    def add_names(self, count: int) -> None:
        self.names += count

    def begin_ignore_list(self) -> None:
        self.ignore_max = -1

    def ignore_index(self, token: bytes | None) -> str | None:
        """An entry of `ignoreList` (None: not a number): a problem, or None."""
        value = None if token is None else _integral(token)
        if value is None or value < 0:
            shown = "not a number" if token is None else token[:40].decode("ascii", "replace")
            return f"an entry of `ignoreList` must be a non-negative integer, not {shown}"
        self.ignore_max = max(self.ignore_max, int(min(value, 1 << 62)))
        return None

    # ----------------------------------------------------------------- sections

    def begin_section(self) -> None:
        self._section = _Section()

    def section_offset(self) -> None:
        if self._section is not None:
            self._section.offset = True

    def offset_field(self, key: str, token: bytes | None) -> str | None:
        """`line` or `column` of a section's `offset` (None: not a number)."""
        section = self._section
        if section is None:
            return None
        value = None if token is None else _integral(token)
        if key == "line":
            section.has_line, section.line = True, value
        else:
            section.has_column, section.column = True, value
        if value is None:
            return f"a section's `offset.{key}` must be an integer"
        return None

    def section_map(self, child: MapRules) -> None:
        if self._section is not None:
            self._section.has_map = True
            self._section.map_last = child.last_position()

    def section_url(self) -> None:
        if self._section is not None:
            self._section.url = True

    def end_section(self) -> str | None:
        """The section's object closed: its own rules, then order and overlap."""
        section, self._section = self._section, None
        if section is None:
            return None
        if not section.offset:
            return "a section has no `offset`"
        if not section.has_line or not section.has_column:
            missing = "line" if not section.has_line else "column"
            return f"a section's `offset` has no `{missing}`"
        if not section.has_map:
            if section.url:
                return "a section has a `url` instead of a `map` (not part of ECMA-426)"
            return "a section has no `map`"
        line, column = section.line or 0.0, section.column or 0.0
        position = (line, column)
        problem = None
        if self._previous_offset is not None and position < self._previous_offset:
            problem = (
                f"`sections` are not sorted: offset {_position(position)} comes after "
                f"{_position(self._previous_offset)}"
            )
        elif self._previous_last is not None and position <= self._previous_last:
            problem = (
                f"`sections` overlap: offset {_position(position)} is not after the previous "
                f"section's last mapping at {_position(self._previous_last)}"
            )
        self._previous_offset = position
        if section.map_last is not None:
            last_line, last_column = section.map_last
            shifted = last_column + column if last_line == 0 else float(last_column)
            self._previous_last = (last_line + line, shifted)
        return problem

    # ----------------------------------------------------------------- the end

    def last_position(self) -> tuple[int, int] | None:
        """The generated position of the map's last mapping (line, column), if any."""
        mappings = self.mappings
        if mappings is None or mappings.state[ERROR] or mappings.state[LAST_LINE] < 0:
            return None
        return mappings.state[LAST_LINE], mappings.state[LAST_COLUMN]

    def close(self, keys: set[str], sources: int) -> str | None:
        """The map object closed, with these keys and `sources` entries: the rules that
        need all of it (the first problem only)."""
        if "sections" in keys:
            if self.in_section:
                return "a section's `map` is itself an index map (it must be a regular map)"
            if "mappings" in keys:
                return "an index map has both `sections` and `mappings`"
            return None
        if "sources" not in keys:
            return "the map has no `sources`"
        if self.ignore_max >= sources:
            return (
                f"`ignoreList` holds index {self.ignore_max}, but `sources` has "
                f"{sources} {_entries(sources)}"
            )
        mappings = self.mappings
        if mappings is None or mappings.problem is not None:
            return None  # the scanner reported the string's own problem where it ended
        state = mappings.state
        if state[MAX_SOURCE] >= sources:
            return (
                f"invalid `mappings`: a segment points at source {state[MAX_SOURCE]}, but "
                f"`sources` has {sources} {_entries(sources)}"
            )
        if state[MAX_NAME] >= self.names:
            return (
                f"invalid `mappings`: a segment points at name {state[MAX_NAME]}, but "
                f"`names` has {self.names} {_entries(self.names)}"
            )
        return None


def _entries(count: int) -> str:
    return "entry" if count == 1 else "entries"


def _position(position: tuple[float, float]) -> str:
    line, column = position
    return f"line {line:g}, column {column:g}"
