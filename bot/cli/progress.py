"""Show `release-guard scan`'s progress on a terminal: one line on stderr, redrawn in place.

The engine knows nothing of terminals: `scan_path(progress=…)` reports `(bytes read, size)`
about ten times a second, and `ProgressBar` turns that into
`[2/3] dist.tgz  [#######.......]  48%  12.0/25.1 MiB`. The line is erased when the scan ends,
so the report that follows (or a redirected stdout) is never mixed with it. Nothing is shown
when stderr is not a terminal.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from typing import Final, TextIO

_MIB: Final = 1024 * 1024
_CLEAR: Final = "\r\x1b[K"
_MIN_BAR: Final = 10


def _amount(done: int, total: int) -> str:
    if total >= _MIB:
        return f"{done / _MIB:.1f}/{total / _MIB:.1f} MiB"
    if total >= 1024:
        return f"{done / 1024:.0f}/{total / 1024:.0f} KiB"
    return f"{done}/{total} B"


def render_line(index: int, count: int, name: str, done: int, total: int, *, width: int) -> str:
    """Return the progress line for artifact `index` of `count`, fitted to `width` columns."""
    fraction = min(done / total, 1.0) if total > 0 else 1.0
    prefix = f"[{index}/{count}] "
    suffix = f" {fraction * 100:3.0f}%  {_amount(done, total)}"
    room = width - len(prefix) - len(suffix) - 1  # leave the last column free (no wrap)
    bar_width = max(min(room // 2, 40), _MIN_BAR)
    name_room = room - bar_width - 4  # two spaces and the brackets
    if name_room < 4:
        # A narrow terminal: the count, the percentage and as much of the name as fits.
        return f"{prefix}{fraction * 100:3.0f}% {name}"[: max(width - 1, 1)]
    shown = name if len(name) <= name_room else name[: name_room - 1] + "…"
    filled = int(fraction * bar_width)
    bar = "#" * filled + "." * (bar_width - filled)
    return f"{prefix}{shown.ljust(name_room)}  [{bar}]{suffix}"


class ProgressBar:
    """Draw one artifact's progress at a time on a terminal stream."""

    def __init__(self, stream: TextIO, *, width: Callable[[], int] | None = None) -> None:
        self._stream = stream
        self._width = width or (lambda: shutil.get_terminal_size((80, 24)).columns)
        self._lock = threading.Lock()
        self._drawn = False

    @classmethod
    def for_stream(cls, stream: TextIO) -> ProgressBar | None:
        """Return a bar drawing on `stream` if it is a terminal, else None (show nothing)."""
        try:
            interactive = stream.isatty()
        except (AttributeError, ValueError):
            interactive = False
        return cls(stream) if interactive else None

    def tracker(self, index: int, count: int, name: str) -> Callable[[int, int], None]:
        """Return the `progress` callback for artifact `index` of `count`."""

        def show(done: int, total: int) -> None:
            line = render_line(index, count, name, done, total, width=self._width())
            with self._lock:
                self._stream.write(_CLEAR + line)
                self._stream.flush()
                self._drawn = True

        return show

    def clear(self) -> None:
        """Erase the line (call when the scan ends, however it ends)."""
        with self._lock:
            if self._drawn:
                self._stream.write(_CLEAR)
                self._stream.flush()
                self._drawn = False
