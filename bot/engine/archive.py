"""Walk an artifact's members, nested archives included, within safety limits.

`ArtifactWalk` yields one `Entry` per member (with a stream of its decompressed bytes) and an
`Observation` for everything unsafe it meets. It never extracts a member under its own name:
bytes are streamed, and the only files it writes are nested zips spooled into a private
temporary folder (zip needs random access), which it removes when the walk ends.

Every decompressed byte passes through a `_Meter` that enforces `ArchiveLimits`; reaching a
limit, or finding a container that cannot be read, ends in an `archive/limit` observation:
the walk fails closed rather than reporting a partial scan as clean.
"""

from __future__ import annotations

import bz2
import lzma
import os
import posixpath
import stat
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal, cast

from bot.engine import inflate
from bot.engine.model import ByteStream, Entry, EntryKind, Observation, Rule
from bot.engine.policy import ArchiveLimits
from bot.engine.streams import GzipStream, ReadAhead
from bot.engine.tarstream import TarMember, TarStream
from bot.engine.zipread import (
    ZipDirectory,
    ZipFormatError,
    ZipLimits,
    ZipMemberStream,
    ZipRecord,
    ZipTooLarge,
    name_digest,
)
from bot.errors import LimitReached, UnreadableEntry

CHUNK = 1 << 20
"""Bytes asked of a stream in one read: large enough that per-call overhead vanishes."""

_SNIFF = 512
"""Bytes needed to recognise every supported format: a whole tar header (its magic ends at
offset 262; its checksum covers 512 bytes)."""

ZIP_SUFFIXES = (
    ".zip",
    ".whl",
    ".jar",
    ".war",
    ".ear",
    ".aar",
    ".apk",
    ".vsix",
    ".nupkg",
    ".snupkg",
    ".xpi",
    ".egg",
)
Compression = Literal["gz", "bz2", "xz"]
TAR_SUFFIXES: dict[str, Compression | None] = {
    ".tar": None,
    ".tgz": "gz",
    ".tar.gz": "gz",
    ".taz": "gz",
    ".tbz": "bz2",
    ".tbz2": "bz2",
    ".tar.bz2": "bz2",
    ".txz": "xz",
    ".tar.xz": "xz",
}
_TAR_SUFFIXES_LONGEST_FIRST = tuple(sorted(TAR_SUFFIXES, key=len, reverse=True))
COMPRESSED_SUFFIXES: dict[str, Compression] = {".gz": "gz", ".bz2": "bz2", ".xz": "xz"}
"""A lone compressed file: a tar inside is walked, anything else is one member (the stem)."""

_CORRUPT_ERRORS: tuple[type[Exception], ...] = (
    tarfile.TarError,
    *inflate.ERRORS,  # zlib.error, and isal's IsalError
    lzma.LZMAError,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    UnicodeDecodeError,
    OverflowError,
)
"""What the standard library raises for damaged archives (gzip.BadGzipFile is an OSError)."""


Progress = Callable[[int, int], None]
"""Told `(bytes of the artifact read so far, its size)` as a walk goes; see `ProgressMeter`."""

PROGRESS_INTERVAL = 0.1
"""Seconds between two progress reports (the last one is always made)."""


class ProgressMeter:
    """Report how far a walk has read through an artifact, at most every `interval` seconds.

    Counts what the walk has consumed of the artifact itself (compressed bytes for an archive,
    file sizes for a directory). `update` may be called from read-ahead threads, so the
    callback may run on one of them; it must be quick and must not raise.
    """

    def __init__(
        self,
        callback: Progress,
        total: int,
        *,
        interval: float = PROGRESS_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._callback = callback
        self.total = total
        self.done = 0
        self._interval = interval
        self._clock = clock
        self._next = 0.0
        self._lock = threading.Lock()

    def update(self, done: int) -> None:
        """Move to `done` bytes (never backwards); report if the interval has passed."""
        with self._lock:
            if done > self.done:
                self.done = min(done, self.total) if self.total else done
            now = self._clock()
            if now < self._next:
                return
            self._next = now + self._interval
            shown = self.done
        self._callback(shown, self.total)

    def advance(self, size: int) -> None:
        """Move `size` bytes further."""
        self.update(self.done + size)

    def finish(self) -> None:
        """Report the end (always, whatever the interval)."""
        with self._lock:
            self.done = max(self.done, self.total)
            self._next = self._clock() + self._interval
            shown = self.done
        self._callback(shown, self.total)


class _ProgressReader:
    """A pass-through stream that tells a `ProgressMeter` how many bytes were read."""

    def __init__(self, raw: ByteStream, meter: ProgressMeter) -> None:
        self._raw = raw
        self._meter = meter
        self._count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._count += len(data)
        self._meter.update(self._count)
        return data


class _ContainerUnreadable(Exception):
    """A container could not be opened or walked; the message says why (internal)."""


def archive_kind(name: str) -> tuple[str, Compression | None] | None:
    """Return how a member called `name` is walked, or None when it is not an archive.

    The answer is ("zip", None), ("tar", compression) or ("compressed", compression).
    """
    lowered = name.lower()
    if lowered.endswith(ZIP_SUFFIXES):
        return "zip", None
    for suffix in _TAR_SUFFIXES_LONGEST_FIRST:
        if lowered.endswith(suffix):
            return "tar", TAR_SUFFIXES[suffix]
    for suffix, compression in COMPRESSED_SUFFIXES.items():
        if lowered.endswith(suffix):
            return "compressed", compression
    return None


def sniff_kind(head: bytes) -> tuple[str, Compression | None] | None:
    """Recognise an archive by its first bytes (for artifacts whose name says nothing)."""
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return "zip", None
    if head.startswith(b"\x1f\x8b"):
        return "compressed", "gz"
    if head.startswith(b"BZh"):
        return "compressed", "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "compressed", "xz"
    if _is_tar_header(head):
        return "tar", None
    return None


def _is_tar_header(head: bytes) -> bool:
    return len(head) >= 262 and head[257:262] == b"ustar"


def _is_valid_tar_header(head: bytes) -> bool:
    """A ustar header whose checksum holds: what `tar` itself accepts as a first member."""
    if not _is_tar_header(head) or len(head) < tarfile.BLOCKSIZE:
        return False
    try:
        tarfile.TarInfo.frombuf(head[: tarfile.BLOCKSIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _format_at_start(head: bytes) -> str | None:
    """The archive format other than zip that `head` starts, if any (a polyglot's other half)."""
    if _is_valid_tar_header(head):
        return "tar"
    kind = sniff_kind(head)
    if kind is not None and kind[0] == "compressed":
        return {"gz": "gzip", "bz2": "bzip2", "xz": "xz"}[kind[1] or ""]
    return None


_ANY = ZipLimits(max_entries=1 << 62, max_directory_size=1 << 62, max_name_bytes=0xFFFF)
"""No bounds: only whether a file is a zip at all is asked with these."""


clock: Callable[[], float] = time.monotonic
"""The clock of `limits.max_seconds` (a module attribute, so tests can move time)."""


class _Meter:
    """The artifact-wide budget: entries seen, decompressed bytes produced, time spent."""

    def __init__(self, limits: ArchiveLimits, cancel: threading.Event | None = None) -> None:
        self.limits = limits
        self._cancel = cancel
        self.entries = 0
        self.total = 0
        self.tripped: LimitReached | None = None
        self._lock = threading.Lock()  # read-ahead threads count bytes too
        self._deadline = clock() + limits.max_seconds

    def check_time(self) -> None:
        if self._cancel is not None and self._cancel.is_set():
            raise self.trip("the scan was cancelled")
        if clock() > self._deadline:
            raise self.trip(
                f"still reading after {self.limits.max_seconds:g} seconds (limits.max_seconds)"
            )

    def trip(self, message: str) -> LimitReached:
        if self.tripped is None:
            self.tripped = LimitReached(message)
        return self.tripped

    def count_entry(self) -> None:
        self.check_time()
        self.entries += 1
        if self.entries > self.limits.max_entries:
            raise self.trip(f"more than {self.limits.max_entries:,} entries (limits.max_entries)")

    def count_bytes(self, size: int) -> None:
        with self._lock:
            self.total += size
            total = self.total
        if total > self.limits.max_total_size:
            raise self.trip(
                f"more than {self.limits.max_total_size:,} decompressed bytes in the artifact "
                "(limits.max_total_size)"
            )


class MeteredStream:
    """A read-once byte stream whose reads count against the artifact's limits.

    Used at two levels: over a decompressor (a zip member, a gzip/bzip2/xz stream), where
    it counts produced bytes towards `max_total_size` and checks the compression ratio, and
    over a member of an archive, where it checks `max_entry_size`. Errors of the underlying
    reader become `UnreadableEntry`, so content checks only ever see `LimitReached`.
    """

    def __init__(
        self,
        raw: ByteStream,
        meter: _Meter,
        *,
        label: str,
        max_size: int | None = None,
        counts_total: bool = False,
        compressed_size: Callable[[], int] | None = None,
    ) -> None:
        self._raw = raw
        self._meter = meter
        self._label = label
        self._max_size = max_size
        self._counts_total = counts_total
        self._compressed_size = compressed_size
        self.size = 0
        self.failure: LimitReached | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.failure is not None:
            raise self.failure
        if size is None or size < 0:
            return self._read_all()
        want = min(size, CHUNK)
        try:
            data = self._raw.read(want)
        except LimitReached as exc:
            self.failure = exc
            raise
        except _CORRUPT_ERRORS as exc:
            self.failure = UnreadableEntry(f"{self._label}: {_describe(exc)}")
            raise self.failure from exc
        if data:
            self._account(len(data))
        return data

    def _read_all(self) -> bytes:
        parts = []
        while chunk := self.read(CHUNK):
            parts.append(chunk)
        return b"".join(parts)

    def _account(self, size: int) -> None:
        self.size += size
        limits = self._meter.limits
        try:
            self._meter.check_time()
            if self._max_size is not None and self.size > self._max_size:
                raise self._meter.trip(
                    f"{self._label}: more than {self._max_size:,} bytes in one entry "
                    "(limits.max_entry_size)"
                )
            if self._counts_total:
                self._meter.count_bytes(size)
            if self._compressed_size is not None and self.size > limits.ratio_grace:
                compressed = max(self._compressed_size(), 1)
                if self.size / compressed > limits.max_ratio:
                    raise self._meter.trip(
                        f"{self._label}: compression ratio above {limits.max_ratio:g} "
                        f"({self.size:,} bytes from {compressed:,}; limits.max_ratio)"
                    )
        except LimitReached as exc:
            self.failure = exc
            raise

    def close(self) -> None:
        close = getattr(self._raw, "close", None)
        if close is not None:
            close()

    def drain(self) -> None:
        """Read what the consumer left, so the stream's own checks (CRC, limits) run."""
        while self.read(CHUNK):
            pass


class _CountingReader:
    """Count the compressed bytes a decompressor consumes (for the ratio check)."""

    def __init__(self, raw: ByteStream) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return data


class _PeekableStream:
    """A stream whose first bytes can be looked at before it is read."""

    def __init__(self, raw: ByteStream, head: bytes) -> None:
        self._raw = raw
        self._head = head

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._head:
            if size is None or size < 0 or size >= len(self._head):
                head, self._head = self._head, b""
                rest = self._raw.read(-1 if size is None or size < 0 else size - len(head))
                return head + rest
            head, self._head = self._head[:size], self._head[size:]
            return head
        return self._raw.read(size)


def _read_head(raw: ByteStream) -> bytes:
    parts = []
    wanted = _SNIFF
    while wanted > 0:
        data = raw.read(wanted)
        if not data:
            break
        parts.append(data)
        wanted -= len(data)
    return b"".join(parts)


def _describe(exc: BaseException) -> str:
    """Say what went wrong reading an archive, in a line (no traceback, no repr noise)."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


def display_name(name: str) -> str:
    """Make a member name safe to carry around: undecodable bytes become `\\xNN` text."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return name


SHOWN_NAME_CHARS = 200
"""How much of an unsafe name a message quotes (names run to 64 KiB)."""


def _shown_name(name: str) -> str:
    shown = repr(name[:SHOWN_NAME_CHARS])
    return shown if len(name) <= SHOWN_NAME_CHARS else f"{shown}… ({len(name):,} characters)"


def normalise_member(name: str) -> tuple[str, str | None]:
    """Return a member's normalised inner path and why its name is unsafe (or None).

    The inner path uses `/`, has no leading `/`, `./` or drive, and no `..` segment, so
    that allow and deny lists match it the way they would match the extracted file.
    Backslashes count as separators, as Windows extractors treat them.
    """
    reason = None
    shown = name.replace("\\", "/")
    if len(shown) > 1 and shown[1] == ":" and shown[0].isascii() and shown[0].isalpha():
        reason, shown = "absolute path (drive letter)", shown[2:]
    elif shown.startswith("/"):
        reason = "absolute path"
    parts = [part for part in shown.split("/") if part not in ("", ".")]
    if ".." in parts:
        reason = "path climbs out of the archive (..)"
    elif reason is None and "\x00" in name:
        reason = "NUL byte in the name"
    clean = [part for part in parts if part != ".."]
    return "/".join(clean) or "(empty name)", reason


@dataclass(slots=True)
class _Container:
    """Where a container sits: the prefixes its members' paths start with, and its depth."""

    display: str
    logical: str
    depth: int

    def member_paths(self, inner: str) -> tuple[str, str]:
        display = f"{self.display}!/{inner}" if self.display else inner
        logical = f"{self.logical}!/{inner}" if self.logical else inner
        return display, logical


class ArtifactWalk:
    """Iterate over an artifact's members: `Entry` items and `Observation` items.

    A FILE entry's stream is valid until the next item is requested. A nested archive is
    yielded as an ARCHIVE entry, then its members follow. `files` counts the FILE entries
    yielded so far. The walk ends early, after an `archive/limit` observation, when a limit
    is reached.
    """

    def __init__(
        self,
        path: Path,
        *,
        name: str,
        limits: ArchiveLimits,
        progress: ProgressMeter | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self._path = path
        self._name = name
        self._meter = _Meter(limits, cancel)
        self._limits = limits
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._reported: list[UnreadableEntry] = []
        self._progress = progress
        self.files = 0

    def _already_reported(self, exc: UnreadableEntry) -> bool:
        """Tell whether a read failure was reported already (one failure, one observation).

        A truncated `.tgz` fails while a member is read and again when the walker asks for
        the next member: the same exception object both times.
        """
        return any(seen is exc for seen in self._reported)

    def __iter__(self) -> Iterator[Entry | Observation]:
        try:
            if self._path.is_dir():
                yield from self._walk_directory()
            else:
                yield from self._walk_file()
        except LimitReached as exc:
            yield self._limit_observation(self._name, exc)
        finally:
            if self._tempdir is not None:
                self._tempdir.cleanup()
                self._tempdir = None
            if self._progress is not None:
                self._progress.finish()

    # --- observations -----------------------------------------------------------------------

    def _limit_observation(self, path: str, exc: LimitReached) -> Observation:
        tripped = self._meter.tripped or exc
        if isinstance(tripped, UnreadableEntry):
            message = f"could not be read: {tripped}; the scan fails closed."
        else:
            message = f"safety limit reached: {tripped}; the scan stopped and fails closed."
        return Observation(rule=Rule.ARCHIVE_LIMIT, path=path, message=message)

    def _too_long(self, name: str) -> bool:
        limit = self._limits.max_path_length
        # A name has at least as many UTF-8 bytes as characters: encode only when it may pass.
        return len(name) > limit or len(name.encode("utf-8", "surrogateescape")) > limit

    def _long_name(self, container: _Container, name: str) -> Observation:
        size = len(name.encode("utf-8", "surrogateescape"))
        shown = display_name(name[:SHOWN_NAME_CHARS])
        return Observation(
            rule=Rule.ARCHIVE_LIMIT,
            path=container.member_paths(f"{shown}…")[0],
            message=(
                f"an entry name of {size:,} bytes (over {self._limits.max_path_length:,}; "
                "limits.max_path_length): the entry was not read, so the scan fails closed."
            ),
        )

    @staticmethod
    def _unsafe(path: str, why: str) -> Observation:
        return Observation(rule=Rule.UNSAFE_PATH, path=path, message=f"unsafe entry: {why}.")

    @staticmethod
    def _unreadable(path: str, why: str) -> Observation:
        return Observation(
            rule=Rule.ARCHIVE_LIMIT,
            path=path,
            message=f"could not be read: {why}; its contents were not scanned, so the scan "
            "fails closed.",
        )

    # --- top level ----------------------------------------------------------------------------

    def _walk_file(self) -> Iterator[Entry | Observation]:
        root = _Container(display=self._name, logical="", depth=0)
        with self._path.open("rb") as handle:
            head = _read_head(handle)
            handle.seek(0)
            kind = sniff_kind(head) or archive_kind(self._name)
            source: ByteStream = handle
            if self._progress is not None:
                source = _ProgressReader(handle, self._progress)
            if kind is None:
                stream = MeteredStream(
                    source,
                    self._meter,
                    label=self._name,
                    max_size=self._limits.max_entry_size,
                    counts_total=True,
                )
                self._meter.count_entry()
                self.files += 1
                yield Entry(
                    path=self._name,
                    logical_path=self._name,
                    inner_path=self._name,
                    depth=0,
                    kind=EntryKind.FILE,
                    stream=stream,
                )
                if stream.failure is not None:  # a limit its reader met: reported here
                    raise stream.failure
                return
            other = self._second_format(handle, head, kind)
            if other is not None:
                yield self._unsafe(
                    self._name,
                    f"the file is both a {kind[0]} and a {other[0]} archive (tools read it "
                    "differently); both readings were scanned",
                )
            yield from self._walk_container(
                kind,
                source=source,
                container=root,
                stem=_strip_suffix(self._name),
                on_disk=self._path,
            )
            if other is not None:
                handle.seek(0)
                yield from self._walk_container(
                    other,
                    source=handle,
                    container=root,
                    stem=_strip_suffix(self._name),
                    on_disk=self._path,
                )

    def _second_format(
        self, handle: IO[bytes], head: bytes, kind: tuple[str, Compression | None]
    ) -> tuple[str, Compression | None] | None:
        """Another archive format the artifact also parses as (a polyglot), or None.

        A zip is found from its end, every other format from its start, so one file can be
        both: `tar` extracts one set of files and `unzip` another.
        """
        if kind[0] != "zip":
            try:
                directory = ZipDirectory(handle.fileno(), os.fstat(handle.fileno()).st_size, _ANY)
            except ZipTooLarge:
                return "zip", None
            except (ZipFormatError, OSError):
                return None
            return ("zip", None) if directory.count else None
        if _is_valid_tar_header(head):
            return "tar", None
        return None

    def _walk_directory(self) -> Iterator[Entry | Observation]:
        root = _Container(display=self._name, logical="", depth=0)
        for relative, full in _directory_members(self._path):
            self._meter.count_entry()
            display, logical = f"{self._name}/{relative}", relative
            try:
                info = full.lstat()
            except OSError as exc:
                yield self._unreadable(display, _describe(exc))
                continue
            if stat.S_ISLNK(info.st_mode):
                yield self._unsafe(display, "symbolic link (not followed)")
                continue
            if not stat.S_ISREG(info.st_mode):
                yield self._unsafe(display, "device, socket or pipe")
                continue
            yield from self._member_from_opener(
                root,
                inner=relative,
                paths=(display, logical),
                opener=lambda full=full: full.open("rb"),  # type: ignore[misc]
                on_disk=full,
            )
            if self._progress is not None:
                self._progress.advance(info.st_size)

    # --- containers ---------------------------------------------------------------------------

    def _walk_container(
        self,
        kind: tuple[str, Compression | None],
        *,
        source: ByteStream,
        container: _Container,
        stem: str,
        on_disk: Path | None,
    ) -> Iterator[Entry | Observation]:
        """Walk one archive; a container that cannot be read becomes an observation."""
        fmt, compression = kind
        try:
            if fmt == "zip":
                yield from self._walk_zip(source, container, on_disk)
            elif fmt == "tar":
                yield from self._walk_tar(source, container, compression)
            else:
                assert compression is not None
                yield from self._walk_compressed(source, container, compression, stem)
        except _ContainerUnreadable as exc:
            yield self._unreadable(container.display, str(exc))
        except UnreadableEntry as exc:
            # The container's own stream broke (truncated, corrupt): say so once.
            if not self._already_reported(exc):
                self._reported.append(exc)
                yield self._unreadable(container.display, str(exc))

    def _walk_zip(
        self, source: ByteStream, container: _Container, on_disk: Path | None
    ) -> Iterator[Entry | Observation]:
        spooled: Path | None = None
        if on_disk is None:
            spooled = self._spool(source, container.display)
            on_disk = spooled
        try:
            with on_disk.open("rb") as handle:
                yield from self._walk_zip_file(handle.fileno(), container, spooled is None)
        finally:
            if spooled is not None:
                spooled.unlink(missing_ok=True)

    def _zip_limits(self) -> ZipLimits:
        limits = self._limits
        return ZipLimits(
            max_entries=max(0, limits.max_entries - self._meter.entries),
            max_directory_size=limits.max_directory_size,
            max_name_bytes=limits.max_path_length,
        )

    def _open_zip(self, fd: int) -> tuple[ZipDirectory, list[tuple[str, bool]]]:
        """Read a zip's end records and check its layout, within the limits."""
        try:
            directory = ZipDirectory(fd, os.fstat(fd).st_size, self._zip_limits())
            return directory, directory.check_layout(self._meter.check_time)
        except ZipTooLarge as exc:
            raise self._meter.trip(str(exc)) from exc
        except (ZipFormatError, OSError) as exc:
            raise _ContainerUnreadable(_describe(exc)) from exc

    def _walk_zip_file(
        self, fd: int, container: _Container, top_level: bool
    ) -> Iterator[Entry | Observation]:
        directory, problems = self._open_zip(fd)
        for problem, _ in problems:
            yield self._unsafe(container.display, problem)
        if not top_level:  # the artifact itself was checked by `_second_format`
            other = _format_at_start(os.pread(fd, _SNIFF, 0))
            if other is not None:
                yield self._unsafe(
                    container.display,
                    f"the file is both a zip and a {other} archive (tools read it "
                    "differently); only the zip reading was scanned",
                )
        if any(fatal for _, fatal in problems):
            # Entries that share bytes (a bomb) or run into the directory: nothing in it can
            # be read one way only, so none of it is read and the scan fails closed.
            return
        seen: set[bytes] = set()
        # The artifact itself is read by position here, not as a stream: progress is where
        # each member ends (top level only; nested zips are spooled copies).
        progress = self._progress if container.depth == 0 and top_level else None
        records = directory.records()
        while True:
            try:
                record = next(records)
            except StopIteration:
                break
            except ZipTooLarge as exc:
                raise self._meter.trip(str(exc)) from exc
            except (ZipFormatError, OSError) as exc:
                raise _ContainerUnreadable(_describe(exc)) from exc
            yield from self._zip_member(directory, record, container, seen)
            if progress is not None:
                progress.update(record.header_offset + record.compressed_size)

    def _zip_member(
        self,
        directory: ZipDirectory,
        record: ZipRecord,
        container: _Container,
        seen: set[bytes],
    ) -> Iterator[Entry | Observation]:
        self._meter.count_entry()
        name = display_name(record.name)
        inner, unsafe = normalise_member(name)
        paths = container.member_paths(inner)
        if record.name_problem is not None:
            yield self._unsafe(paths[0], f"{record.name_problem} ({_shown_name(name)})")
        if unsafe is not None:
            yield self._unsafe(paths[0], f"{unsafe} ({_shown_name(name)})")
        mode = record.external_attr >> 16
        if record.create_system == 3 and stat.S_ISLNK(mode):
            yield self._unsafe(paths[0], "symbolic link")
            return
        special = stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)
        if record.create_system == 3 and (special or stat.S_ISSOCK(mode)):
            # Only the type bits say "device": many zips carry bare permission bits (0o644).
            yield self._unsafe(paths[0], "device, socket or pipe")
            return
        if record.is_dir:
            return
        key = name_digest(inner)
        if key in seen:
            yield self._unsafe(paths[0], "duplicate entry name (which copy is extracted varies)")
        seen.add(key)

        def opener() -> ByteStream:
            try:
                raw = ZipMemberStream(directory, record, directory.data_offset(record))
            except (ZipFormatError, OSError) as exc:
                raise UnreadableEntry(f"{paths[0]}: {_describe(exc)}") from exc
            return MeteredStream(
                raw,
                self._meter,
                label=paths[0],
                counts_total=True,
                compressed_size=lambda: record.compressed_size,
            )

        yield from self._member_from_opener(container, inner=inner, paths=paths, opener=opener)

    def _walk_tar(
        self, source: ByteStream, container: _Container, compression: Compression | None
    ) -> Iterator[Entry | Observation]:
        if compression is None:
            yield from self._walk_tar_stream(source, container)
            return
        decompressed = self._decompressor(source, compression, label=container.display)
        try:
            yield from self._walk_tar_stream(decompressed, container)
            # Read what follows the end-of-archive marker, so that the compressed stream's
            # own check (gzip's CRC-32 and length) runs and trailing data is counted.
            decompressed.drain()
        finally:
            decompressed.close()

    def _walk_tar_stream(
        self, raw: ByteStream, container: _Container
    ) -> Iterator[Entry | Observation]:
        archive = TarStream(raw)
        seen: set[str] = set()
        members = iter(archive)
        while True:
            try:
                member = next(members)
            except StopIteration:
                break
            except _CORRUPT_ERRORS as exc:
                raise _ContainerUnreadable(_describe(exc)) from exc
            yield from self._tar_member(archive, member, container, seen)

    def _tar_member(
        self,
        archive: TarStream,
        member: TarMember,
        container: _Container,
        seen: set[str],
    ) -> Iterator[Entry | Observation]:
        self._meter.count_entry()
        if self._too_long(member.name):
            yield self._long_name(container, member.name)
            return
        name = display_name(member.name)
        inner, unsafe = normalise_member(member.name)
        inner = display_name(inner)
        paths = container.member_paths(inner)
        if name != member.name:
            yield self._unsafe(paths[0], "name is not valid UTF-8")
        if unsafe is not None:
            yield self._unsafe(paths[0], f"{unsafe} ({_shown_name(name)})")
        if member.kind in ("symlink", "hardlink"):
            kind = "symbolic link" if member.kind == "symlink" else "hard link"
            yield self._unsafe(paths[0], f"{kind} to {_shown_name(display_name(member.linkname))}")
            return
        if member.kind == "device":
            yield self._unsafe(paths[0], "device or FIFO")
            return
        if member.kind == "sparse":
            yield self._unreadable(paths[0], "GNU sparse file (not supported)")
            return
        if member.kind != "file":
            return
        if inner in seen:
            yield self._unsafe(paths[0], "duplicate entry name (which copy is extracted varies)")
        seen.add(inner)
        yield from self._member_from_opener(
            container, inner=inner, paths=paths, opener=lambda: archive
        )

    def _walk_compressed(
        self, source: ByteStream, container: _Container, compression: Compression, stem: str
    ) -> Iterator[Entry | Observation]:
        """A lone gzip/bzip2/xz stream: a tar inside is walked, anything else is one file."""
        raw = self._decompressor(source, compression, label=container.display)
        try:
            head = _read_head(raw)
            peek = _PeekableStream(raw, head)
            if _is_tar_header(head):
                yield from self._walk_tar_stream(peek, container)
                return
            self._meter.count_entry()
            inner = stem or "(decompressed)"
            yield from self._member_from_opener(
                container,
                inner=inner,
                paths=container.member_paths(inner),
                opener=lambda: peek,
            )
        finally:
            raw.close()

    def _decompressor(
        self, source: ByteStream, compression: Compression, *, label: str
    ) -> MeteredStream:
        counting = _CountingReader(source)
        stream: ByteStream
        if compression == "gz":
            stream = GzipStream(counting)
        elif compression == "bz2":
            stream = bz2.BZ2File(cast("IO[bytes]", counting), mode="rb")
        else:
            stream = lzma.LZMAFile(cast("IO[bytes]", counting), mode="rb")  # noqa: SIM115
        return MeteredStream(
            ReadAhead(stream),
            self._meter,
            label=label,
            counts_total=True,
            compressed_size=lambda: counting.count,
        )

    # --- members ------------------------------------------------------------------------------

    def _member_from_opener(
        self,
        container: _Container,
        *,
        inner: str,
        paths: tuple[str, str],
        opener: Callable[[], ByteStream],
        on_disk: Path | None = None,
    ) -> Iterator[Entry | Observation]:
        """Yield a member as a FILE entry, or as an ARCHIVE entry followed by its members."""
        display, logical = paths
        depth = container.depth
        kind = archive_kind(inner)
        try:
            raw = opener()
        except UnreadableEntry as exc:
            yield self._unreadable(display, str(exc))
            return
        except OSError as exc:
            yield self._unreadable(display, _describe(exc))
            return
        stream = MeteredStream(
            raw, self._meter, label=display, max_size=self._limits.max_entry_size
        )
        try:
            if kind is not None and depth + 1 > self._limits.max_depth:
                yield Observation(
                    rule=Rule.ARCHIVE_LIMIT,
                    path=display,
                    message=(
                        f"nested archive deeper than {self._limits.max_depth} levels "
                        "(limits.max_depth): not opened, so the scan fails closed."
                    ),
                )
                kind = None
            if kind is not None:
                yield Entry(display, logical, inner, depth, EntryKind.ARCHIVE)
                nested = _Container(display=display, logical=logical, depth=depth + 1)
                yield from self._walk_container(
                    kind,
                    source=stream,
                    container=nested,
                    stem=_strip_suffix(posixpath.basename(inner)),
                    on_disk=on_disk,
                )
            else:
                self.files += 1
                yield Entry(display, logical, inner, depth, EntryKind.FILE, stream)
            self._after_member(stream, display)
        finally:
            close = getattr(raw, "close", None)
            if close is not None:
                close()
        failure = stream.failure
        if isinstance(failure, UnreadableEntry) and not self._already_reported(failure):
            self._reported.append(failure)
            yield self._unreadable(display, str(failure))

    def _after_member(self, stream: MeteredStream, display: str) -> None:
        """Re-raise a limit the consumer hit (it stops the walk); note a read failure."""
        if isinstance(stream.failure, UnreadableEntry):
            return
        if stream.failure is not None or self._meter.tripped is not None:
            raise stream.failure or self._meter.tripped  # type: ignore[misc]

    def _spool(self, source: ByteStream, label: str) -> Path:
        """Copy a nested zip to the private temporary folder (zip needs random access)."""
        if self._tempdir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="release-guard-")
        fd, name = tempfile.mkstemp(dir=self._tempdir.name, suffix=".zip")
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    out.write(chunk)
        except UnreadableEntry as exc:
            Path(name).unlink(missing_ok=True)
            raise _ContainerUnreadable(str(exc)) from exc
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name)


def _strip_suffix(name: str) -> str:
    lowered = name.lower()
    for suffix in (*COMPRESSED_SUFFIXES, ".tgz", ".tbz2", ".tbz", ".txz", ".taz"):
        if lowered.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _directory_members(root: Path) -> Iterator[tuple[str, Path]]:
    """Every entry below `root`, sorted, never following a symbolic link to a folder."""
    stack = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            yield prefix.rstrip("/") or ".", folder
            continue
        subfolders = []
        for child in children:
            relative = f"{prefix}{child.name}"
            if child.is_dir(follow_symlinks=False):
                subfolders.append((f"{relative}/", Path(child.path)))
            else:
                yield relative, Path(child.path)
        stack.extend(reversed(subfolders))
