"""Deflate decompression through ISA-L (`isal`), with the standard library's zlib as fallback.

Inflating is a large part of a scan's cost: a 27 MB npm tarball is 75 MB of deflate output,
0.40 s of CPU for zlib and 0.17 s for ISA-L's inflate (python-isal, `isal.isal_zlib`, the same
interface as `zlib`), measured here. Like zlib it releases the GIL while it works, so the read-ahead
thread (streams.py) overlaps it with the checks. Where no `isal` wheel exists for the
platform, zlib serves, with the same results: both implement RFC 1950/1951/1952 and check
the gzip trailer's CRC-32 and length.

`decompressobj(wbits)` is the one entry point; `ERRORS` lists what a damaged stream raises
with either backend (isal's `IsalError` is not a `zlib.error`).
"""

from __future__ import annotations

import zlib
from types import ModuleType
from typing import Final, Protocol

_isal: ModuleType | None
try:
    from isal import isal_zlib as _isal
except ImportError:  # no wheel for this platform: zlib serves
    _isal = None


class Decompressor(Protocol):
    """What `zlib.decompressobj()` returns, and `isal_zlib.decompressobj()` likewise."""

    @property
    def eof(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    @property
    def unconsumed_tail(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int = 0, /) -> bytes: ...
    def flush(self, length: int = ..., /) -> bytes: ...


ERRORS: Final[tuple[type[Exception], ...]] = (zlib.error,) + (
    () if _isal is None else (_isal.error,)
)
"""What a corrupt deflate stream raises, whichever backend inflates it."""

_use_isal = _isal is not None


def backend() -> str:
    """`isal` or `zlib`: what inflates now (the benchmarks print it)."""
    return "isal" if _use_isal else "zlib"


def use_zlib(enabled: bool) -> None:
    """Inflate with zlib even where isal is installed (tests of the fallback), or not."""
    global _use_isal
    _use_isal = _isal is not None and not enabled


def decompressobj(wbits: int) -> Decompressor:
    """A streaming inflater; `wbits` as zlib's (16 + 15: gzip, -15: raw deflate)."""
    if _use_isal and _isal is not None:
        inflater: Decompressor = _isal.decompressobj(wbits)
        return inflater
    return zlib.decompressobj(wbits)
