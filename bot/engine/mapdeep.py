"""Read a JSON value too deep for the map scanner, leniently, looking only for sources.

`JSON.parse` in browsers and Node, and `json.loads`, read maps nested far deeper than the
map scanner follows (it stops building frames at 512 levels). A map may hide a nested index
map, or a `sourcesContent` after an unknown key, below that depth. `DeepValue` reads such a
value to its end as a consumer would (any depth, any number length, invalid UTF-8 decoded as
U+FFFD), keeping one byte per open level, and counts the `sourcesContent` members that hold
text anywhere inside it: the map scanner then reports the map as fail-closed invalid. Past
`MAX_DEEP_LEVELS` it gives up: what it could not read may hold sources (`gave_up`).
"""

from __future__ import annotations

import json
import re
from typing import Final

MAX_DEEP_LEVELS: Final = 1 << 20
"""Open levels followed (one byte each); deeper, the value is skipped and fails closed."""

_KEY_BYTES: Final = 64  # more than `"sourcesContent"` with every character escaped (6 each)
_STRUCTURE: Final = re.compile(rb'["{}\[\]:,]')
_STRING_STOP: Final = re.compile(rb'["\\]')
_CONTENTS: Final = "sourcesContent"

_OBJECT: Final = 0x7B
_ARRAY: Final = 0x5B
_CONTENTS_ARRAY: Final = 0x43  # an array that is the value of a `sourcesContent` member


class DeepValue:
    """Consume one JSON value from its opening bracket; `feed` until it returns an offset.

    `feed(b, i)` reads `b[i:]` and returns the offset just past the value's end, or -1 when
    the whole buffer was consumed and the value goes on. Nothing is held between calls but
    the open levels and, inside a key, up to `_KEY_BYTES` of it.
    """

    def __init__(self) -> None:
        self._levels = bytearray()
        self._uncounted = 0  # levels open past MAX_DEEP_LEVELS
        self._in_string = False
        self._escape = False
        self._string_length = 0
        self._key: bytearray | None = None  # the key being read, when the string is a key
        self._expect_key = False
        self._last_key: str | None = None
        self._after_colon = False
        self.sources = 0
        """`sourcesContent` members seen with text (a string, or an array holding one)."""
        self.gave_up = False

    def feed(self, b: bytes, i: int) -> int:
        n = len(b)
        while i < n:
            if self._in_string:
                i = self._string(b, i)
                continue
            found = _STRUCTURE.search(b, i)
            if found is None:
                return -1
            i = found.start()
            c = b[i]
            if c == 0x22:
                self._begin_string()
                i += 1
            elif c in (_OBJECT, _ARRAY):
                if len(self._levels) >= MAX_DEEP_LEVELS:
                    # Deeper levels are only counted: what they hold is not looked at.
                    self.gave_up = True
                    self._uncounted += 1
                    i += 1
                    continue
                kind = c
                if c == _ARRAY and self._after_colon and self._last_key == _CONTENTS:
                    kind = _CONTENTS_ARRAY
                self._levels.append(kind)
                self._expect_key = c == _OBJECT
                self._after_colon = False
                i += 1
            elif c in (0x7D, 0x5D):
                if self._uncounted:
                    self._uncounted -= 1
                    i += 1
                    continue
                if self._levels:
                    self._levels.pop()
                self._after_colon = False
                self._expect_key = False
                i += 1
                if not self._levels:
                    return i
            elif c == 0x3A:
                self._after_colon = True
                i += 1
            else:  # a comma
                self._expect_key = bool(self._levels) and self._levels[-1] == _OBJECT
                self._after_colon = False
                i += 1
        return -1

    def _begin_string(self) -> None:
        self._in_string = True
        self._escape = False
        self._string_length = 0
        self._key = bytearray() if self._expect_key else None
        self._expect_key = False

    def _string(self, b: bytes, i: int) -> int:
        """Read string bytes from `b[i]`; return where reading stopped."""
        n = len(b)
        while i < n:
            if self._escape:
                self._escape = False
                self._take(b, i, i + 1)
                i += 1
                continue
            stop = _STRING_STOP.search(b, i)
            end = stop.start() if stop is not None else n
            self._take(b, i, end)
            if stop is None:
                return n
            if b[end] == 0x5C:
                self._escape = True
                self._take(b, end, end + 1)
                i = end + 1
                continue
            self._in_string = False
            self._string_done()
            return end + 1
        return n

    def _take(self, b: bytes, lo: int, hi: int) -> None:
        self._string_length += hi - lo
        key = self._key
        if key is not None and len(key) < _KEY_BYTES:
            key += b[lo : min(hi, lo + _KEY_BYTES - len(key))]

    def _string_done(self) -> None:
        key = self._key
        if key is not None:
            self._last_key = _decode_key(bytes(key)) if self._string_length <= _KEY_BYTES else None
            self._key = None
            return
        has_text = self._string_length > 0
        in_contents = bool(self._levels) and self._levels[-1] == _CONTENTS_ARRAY
        direct = self._after_colon and self._last_key == _CONTENTS
        if has_text and (in_contents or direct):
            self.sources += 1
        self._after_colon = False


def _decode_key(raw: bytes) -> str | None:
    """A key as a consumer reads it: UTF-8 with U+FFFD for bad bytes, JSON escapes applied."""
    text = raw.decode("utf-8", "replace")
    try:
        value = json.loads('"' + text + '"')
    except ValueError:
        return None
    return value if isinstance(value, str) else None
