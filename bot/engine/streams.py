"""Byte streams for the archive walker: a lean gzip reader and a read-ahead thread.

Both exist for speed. A scan is judged against the floor of merely decompressing the same
archive, so decompression must cost no more than it has to, and should overlap with the
checks: ISA-L (inflate.py), zlib, bz2 and lzma release the GIL while they work, so a thread
that decompresses the next megabytes while the main thread checks the current ones uses the
second core.
"""

from __future__ import annotations

import queue
import threading
import zlib
from typing import Final

from bot.engine import inflate
from bot.engine.model import ByteStream

INPUT_CHUNK: Final = 256 * 1024
"""Compressed bytes handed to the inflater at a time."""

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
"""zlib's window-bits value for a gzip wrapper: it parses the header and checks the CRC-32
and length in each member's trailer (RFC 1952), so no second CRC pass is needed."""


class GzipStream:
    """Decompress a gzip stream, members concatenated, in large pieces.

    Compared with `gzip.GzipFile` it inflates through ISA-L where installed (inflate.py),
    skips a second CRC computation (the inflater already checks the trailer) and the small
    default buffers. Zero bytes between or after members are tolerated, as gzip(1) does.
    Errors are the inflater's (`inflate.ERRORS`) or `EOFError` for a stream cut short.
    """

    def __init__(self, raw: ByteStream) -> None:
        self._raw = raw
        self._inflater = inflate.decompressobj(_GZIP_WBITS)
        self._input = b""
        self._between_members = False
        self._finished = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = size if size is not None and size > 0 else 1 << 20
        while not self._finished:
            if self._between_members and not self._start_next_member():
                break
            if not self._input:
                self._input = self._raw.read(INPUT_CHUNK)
                if not self._input:
                    # ISA-L may hold output back until called once more without input.
                    out = self._inflater.decompress(b"", want)
                    if out or self._inflater.eof:
                        self._between_members = self._inflater.eof
                        if out:
                            return out
                        continue
                    raise EOFError("compressed stream ended before the end-of-stream marker")
            out = self._inflater.decompress(self._input, want)
            if self._inflater.eof:
                self._input = self._inflater.unused_data
                self._between_members = True
            else:
                self._input = self._inflater.unconsumed_tail
            if out:
                return out
        return b""

    def _start_next_member(self) -> bool:
        """Skip zero padding; start the next member, or finish at the end of the input."""
        while True:
            self._input = self._input.lstrip(b"\0")
            if self._input:
                self._inflater = inflate.decompressobj(_GZIP_WBITS)
                self._between_members = False
                return True
            self._input = self._raw.read(INPUT_CHUNK)
            if not self._input:
                self._finished = True
                return False


_END: Final = object()


class ReadAhead:
    """Read a stream on a helper thread, a few chunks ahead of the consumer.

    At most `depth` chunks wait in the queue, so memory stays bounded. An exception raised
    by the source is raised again, in order, from `read`. `close` stops the thread; it is
    safe to call at any time and more than once.
    """

    def __init__(self, source: ByteStream, *, chunk: int = 1 << 20, depth: int = 4) -> None:
        self._source = source
        self._chunk = chunk
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._pending = b""
        self._offset = 0
        self._done = False
        self._thread = threading.Thread(target=self._run, name="release-guard-readahead")
        self._thread.daemon = True
        self._thread.start()

    def readable(self) -> bool:
        return True

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                data = self._source.read(self._chunk)
                if not self._put(data if data else _END):
                    return
                if not data:
                    return
        except BaseException as exc:  # handed over to the consumer, which raises it
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read(self, size: int = -1) -> bytes:
        if self._offset >= len(self._pending):
            if self._done:
                return b""
            item = self._queue.get()
            if item is _END:
                self._done = True
                return b""
            if isinstance(item, BaseException):
                self._done = True
                raise item
            assert isinstance(item, bytes)
            self._pending, self._offset = item, 0
        if size is None or size < 0 or (self._offset == 0 and size >= len(self._pending)):
            data = self._pending[self._offset :] if self._offset else self._pending
            self._pending, self._offset = b"", 0
            return data
        end = self._offset + size
        data = self._pending[self._offset : end]
        self._offset = min(end, len(self._pending))
        return data

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        close = getattr(self._source, "close", None)
        if close is not None:
            close()
