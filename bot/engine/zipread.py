"""Read a zip the way its most and least careful extractors would, and refuse where they differ.

`zipfile` reads the whole central directory into memory before a caller can count it (a
million tiny entries cost 575 MB), cuts names at a NUL, trusts the sizes the directory
declares (a deflate stream that holds a whole map under a declared size of 60 bytes gives 60
bytes, while `unzip` inflates the stream to its end), and never compares the directory with
the local headers (which streaming extractors read instead), nor looks for entries that share
bytes (David Fifield's overlapping-entry bomb, "A better zip bomb", 2019).

This reader walks the central directory record by record from disk, so an entry limit stops it
before the records it bounds are built; checks every record against its local header and every
entry's data against the others (`ZipLayout.check`); and reads member data itself, failing
when the data disagrees with the declared size or CRC (`ZipMemberStream`).

Format: PKWARE's APPNOTE.TXT 6.3.10: 4.3.7 local file header, 4.3.12 central directory
header, 4.3.14-4.3.16 zip64 end records, 4.5.3 zip64 extended information, 4.4.4 general
purpose flags (bit 0 encrypted, bit 3 data descriptor, bit 11 UTF-8 names).
"""

from __future__ import annotations

import bz2
import hashlib
import lzma
import os
import struct
import zlib
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final, Protocol

from bot.engine import inflate

_EOCD: Final = struct.Struct("<4s4H2LH")
_EOCD64_LOCATOR: Final = struct.Struct("<4sLQL")
_EOCD64: Final = struct.Struct("<4sQ2H2L4Q")
_CENTRAL: Final = struct.Struct("<4s4B4HL2L5H2L")
_LOCAL: Final = struct.Struct("<4s2B4HL2L2H")
_MAX_COMMENT: Final = 0xFFFF
_READ: Final = 1 << 20

FLAG_ENCRYPTED: Final = 0x1
FLAG_DESCRIPTOR: Final = 0x8
FLAG_LZMA_END: Final = 0x2
FLAG_UTF8: Final = 0x800

STORED: Final = 0
DEFLATED: Final = 8
BZIP2: Final = 12
LZMA: Final = 14
_METHODS: Final = {STORED: "stored", DEFLATED: "deflate", BZIP2: "bzip2", LZMA: "lzma"}


class ZipFormatError(ValueError):
    """The zip cannot be read, or its parts disagree (the message says how)."""


class ZipTooLarge(ZipFormatError):
    """A structure is larger than its limit allows (the walker reports `archive/limit`)."""


@dataclass(frozen=True, slots=True)
class ZipRecord:
    """One central directory record, with what the walker needs to judge and read it."""

    raw_name: bytes
    name: str
    name_problem: str | None
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    header_offset: int
    create_system: int
    external_attr: int
    index: int
    """The record's position in the directory (0 for the first)."""

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


@dataclass(frozen=True, slots=True)
class ZipLimits:
    """The bounds a directory walk enforces before it builds what they bound."""

    max_entries: int
    max_directory_size: int
    max_name_bytes: int


def decode_name(raw: bytes, flags: int) -> tuple[str, str | None]:
    """Decode a zip name as `zipfile` does, and say why extractors may read it differently.

    Bit 11 says UTF-8; without it APPNOTE says IBM code page 437, which `zipfile` and
    Info-ZIP use, while many tools (7-Zip on Linux, Go's archive/zip, browsers' unzippers)
    take UTF-8: a non-ASCII name without the flag has two readings. A NUL is kept (C
    extractors and `zipfile` cut the name there): `normalise_member` reports it.
    """
    problem = None
    if flags & FLAG_UTF8:
        try:
            return raw.decode("utf-8"), problem
        except UnicodeDecodeError:
            text = raw.decode("utf-8", "surrogateescape")
            return text, problem or "name flagged UTF-8 but not valid UTF-8"
    if raw.isascii():
        return raw.decode("ascii"), problem
    return raw.decode("cp437"), problem or (
        "non-ASCII name without the UTF-8 flag (code page 437 to some extractors, UTF-8 to others)"
    )


class ZipDirectory:
    """The central directory of the zip open at file descriptor `fd` (`size` bytes long).

    Construction reads only the end records. `records()` walks the directory from disk, a
    record at a time; `layout()` checks it against the local headers. Both raise
    `ZipFormatError` (or `ZipTooLarge`) rather than build more than the limits allow.
    """

    def __init__(self, fd: int, size: int, limits: ZipLimits) -> None:
        self._fd = fd
        self._data_offsets = array("Q")
        self.file_size = size
        self.limits = limits
        self.count, self.directory_size, self.directory_offset, self.end_offset = self._end()
        # Data prepended to the archive shifts every offset (a self-extracting stub, or a
        # tar that is a zip too): what `zipfile` calls `concat`.
        self.shift = self.end_offset - self.directory_size - self.directory_offset
        if self.shift < 0:
            raise ZipFormatError("the central directory overlaps its end record")
        if self.directory_size > limits.max_directory_size:
            raise ZipTooLarge(
                f"central directory of {self.directory_size:,} bytes (over "
                f"{limits.max_directory_size:,}; limits.max_directory_size)"
            )
        if self.count > limits.max_entries:
            raise ZipTooLarge(
                f"{self.count:,} entries declared (over {limits.max_entries:,}; limits.max_entries)"
            )

    def read_at(self, size: int, offset: int) -> bytes:
        return os.pread(self._fd, size, offset)

    def _end(self) -> tuple[int, int, int, int]:
        """Entries, directory size, directory offset and where the end records start."""
        tail_size = min(self.file_size, _EOCD.size + _MAX_COMMENT)
        tail_start = self.file_size - tail_size
        tail = self.read_at(tail_size, tail_start)
        at = tail.rfind(b"PK\x05\x06")
        while at >= 0 and at + _EOCD.size > len(tail):
            at = tail.rfind(b"PK\x05\x06", 0, at)
        if at < 0:
            raise ZipFormatError("no end of central directory record (not a zip)")
        _, disk, start_disk, on_disk, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
        end = tail_start + at
        if disk or start_disk or on_disk != count:
            raise ZipFormatError("a multi-disk (split) zip")
        locator_at = end - _EOCD64_LOCATOR.size
        if locator_at >= 0:
            locator = self.read_at(_EOCD64_LOCATOR.size, locator_at)
            if locator[:4] == b"PK\x06\x07":
                _, _, record_at, _ = _EOCD64_LOCATOR.unpack(locator)
                record = self.read_at(_EOCD64.size, record_at)
                if len(record) < _EOCD64.size or record[:4] != b"PK\x06\x06":
                    raise ZipFormatError("the zip64 end record is missing or damaged")
                fields = _EOCD64.unpack(record)
                count, cd_size, cd_offset = fields[7], fields[8], fields[9]
                end = record_at
        return count, cd_size, cd_offset, end

    # --- the directory, a record at a time ---------------------------------------------------

    def records(self) -> Iterator[ZipRecord]:
        """Each record in directory order, read from disk in bounded pieces."""
        start = self.directory_offset + self.shift
        stop = start + self.directory_size
        buffer = b""
        position = start
        at = 0
        seen = 0
        while True:
            if len(buffer) - at < _CENTRAL.size or not self._whole_record(buffer, at):
                if position >= stop:
                    break
                chunk = self.read_at(min(_READ, stop - position), position)
                if not chunk:
                    raise ZipFormatError("the central directory is truncated")
                position += len(chunk)
                buffer = buffer[at:] + chunk
                at = 0
                continue
            record, at = self._record(buffer, at, seen)
            seen += 1
            if seen > self.count:
                raise ZipTooLarge(
                    f"the central directory holds more records than the {self.count:,} its "
                    "end record declares"
                )
            yield record
        if at != len(buffer):
            raise ZipFormatError("the central directory ends inside a record")
        if seen != self.count:
            raise ZipFormatError(
                f"the central directory holds {seen:,} records; its end record declares "
                f"{self.count:,}"
            )

    @staticmethod
    def _whole_record(buffer: bytes, at: int) -> bool:
        names: tuple[int, int, int] = struct.unpack_from("<3H", buffer, at + 28)
        return len(buffer) - at >= _CENTRAL.size + names[0] + names[1] + names[2]

    def _record(self, buffer: bytes, at: int, index: int) -> tuple[ZipRecord, int]:
        fields = _CENTRAL.unpack_from(buffer, at)
        if fields[0] != b"PK\x01\x02":
            raise ZipFormatError("bad central directory record signature")
        name_len, extra_len, comment_len = fields[12], fields[13], fields[14]
        if name_len > self.limits.max_name_bytes:
            raise ZipTooLarge(
                f"an entry name of {name_len:,} bytes (over {self.limits.max_name_bytes:,}; "
                "limits.max_path_length)"
            )
        name_at = at + _CENTRAL.size
        raw_name = buffer[name_at : name_at + name_len]
        extra = buffer[name_at + name_len : name_at + name_len + extra_len]
        size, compressed, offset = fields[11], fields[10], fields[18]
        size, compressed, offset = _zip64_fields(extra, size, compressed, offset)
        name, problem = decode_name(raw_name, fields[5])
        record = ZipRecord(
            raw_name=raw_name,
            name=name,
            name_problem=problem,
            flags=fields[5],
            method=fields[6],
            crc=fields[9],
            compressed_size=compressed,
            size=size,
            header_offset=offset + self.shift,
            create_system=fields[2],
            external_attr=fields[17],
            index=index,
        )
        return record, name_at + name_len + extra_len + comment_len

    # --- the directory against the local headers -----------------------------------------------

    def data_offset(self, record: ZipRecord) -> int:
        """Where `record`'s data starts, after checking its local header agrees with it."""
        if record.index < len(self._data_offsets):
            return self._data_offsets[record.index]  # checked by `check_layout`
        # One read for the header, the name and (usually) the extra field.
        wanted = _LOCAL.size + len(record.raw_name) + 64
        header = self.read_at(wanted, record.header_offset)
        if len(header) < _LOCAL.size or header[:4] != b"PK\x03\x04":
            raise ZipFormatError("no local header where the central directory points")
        fields = _LOCAL.unpack_from(header)
        flags, method, crc, compressed, size = fields[3], fields[4], fields[7], fields[8], fields[9]
        name_len: int = fields[10]
        extra_len: int = fields[11]
        name = header[_LOCAL.size : _LOCAL.size + name_len]
        if name != record.raw_name:
            raise ZipFormatError(
                "the local header names the entry differently from the central directory"
            )
        if method != record.method or (flags ^ record.flags) & (FLAG_ENCRYPTED | FLAG_DESCRIPTOR):
            raise ZipFormatError(
                "the local header's method or flags differ from the central directory's"
            )
        if not flags & FLAG_DESCRIPTOR:
            extra_at = _LOCAL.size + name_len
            extra = header[extra_at : extra_at + extra_len]
            if len(extra) < extra_len:
                extra = self.read_at(extra_len, record.header_offset + extra_at)
            size, compressed, _ = _zip64_fields(extra, size, compressed, 0)
            if (crc, compressed, size) != (record.crc, record.compressed_size, record.size):
                raise ZipFormatError(
                    "the local header's sizes or CRC differ from the central directory's"
                )
        return record.header_offset + _LOCAL.size + name_len + extra_len

    def check_layout(self, entry: Callable[[], None]) -> list[tuple[str, bool]]:
        """Check every record against its local header and the others; return what is unsafe.

        `entry` is called once per record, before anything is kept for it (it raises when
        the walk's entry budget is spent). Raises ZipFormatError for a record whose local
        header disagrees with it; returns the layout's problems, each with whether it is fatal
        (no entry can then be read one way only): entries that share bytes (each byte of a
        zip belongs to at most one entry) and entries inside the directory are; data before
        the first entry (a second format's file, or a self-extracting stub) is not.
        """
        starts = array("Q")
        ends = array("Q")
        offsets = array("Q")
        for record in self.records():
            entry()
            data = self.data_offset(record)
            starts.append(record.header_offset)
            ends.append(data + record.compressed_size)
            offsets.append(data)
        self._data_offsets = offsets
        problems: list[tuple[str, bool]] = []
        order = sorted(range(len(starts)), key=starts.__getitem__)
        previous_end = 0
        overlaps = 0
        for index in order:
            if starts[index] < previous_end:
                overlaps += 1
            previous_end = max(previous_end, ends[index])
        if overlaps:
            problems.append(
                (
                    f"{overlaps:,} entries share bytes with another entry (an overlapping-entry "
                    "zip bomb, or a zip that extractors read differently): not read",
                    True,
                )
            )
        directory_start = self.directory_offset + self.shift
        if previous_end > directory_start:
            problems.append(("entry data runs into the central directory: not read", True))
        first = starts[order[0]] if order else directory_start
        if first > 0:
            problems.append(
                (
                    f"{first:,} bytes before the first entry (data of another format, or a "
                    "self-extracting stub: tools read this file differently)",
                    False,
                )
            )
        return problems


def _zip64_fields(extra: bytes, size: int, compressed: int, offset: int) -> tuple[int, int, int]:
    """Apply a zip64 extended-information field (0x0001) to the 0xFFFFFFFF placeholders."""
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, at)
        body = extra[at + 4 : at + 4 + length]
        if tag == 0x0001:
            values = [v[0] for v in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            wanted = [size == 0xFFFFFFFF, compressed == 0xFFFFFFFF, offset == 0xFFFFFFFF]
            result = [size, compressed, offset]
            for slot, needed in enumerate(wanted):
                if needed:
                    if not values:
                        raise ZipFormatError("a zip64 field is missing a value")
                    result[slot] = values.pop(0)
            return result[0], result[1], result[2]
        at += 4 + length
    return size, compressed, offset


def name_digest(name: str) -> bytes:
    """A short fixed-size key for a name, so that a set of seen names stays small."""
    return hashlib.blake2b(name.encode("utf-8", "surrogateescape"), digest_size=16).digest()


class ZipMemberStream:
    """A member's decompressed bytes, checked against what the directory declares.

    Fails (ZipFormatError) as soon as the data yields more than the declared size, and at the
    end when it yields less, when the compressed stream ends before or after its declared
    compressed size, or when the CRC-32 differs: `unzip` inflates a deflate stream to its
    end whatever the headers say, so a reader that stops at the declared size sees less.
    """

    def __init__(self, directory: ZipDirectory, record: ZipRecord, data_offset: int) -> None:
        if record.flags & FLAG_ENCRYPTED:
            raise ZipFormatError("the entry is encrypted")
        method = record.method
        if method not in _METHODS:
            raise ZipFormatError(f"compression method {method} is not supported")
        self._directory = directory
        self._record = record
        self._position = data_offset
        self._left = record.compressed_size
        self._produced = 0
        self._crc = 0
        # zlib's decompressor bounds its output by leaving input unconsumed; bz2's and lzma's
        # keep the input and say when they need more.
        self._zlib: inflate.Decompressor | None = None
        self._other: _Decompressor | None = None
        if method == DEFLATED:
            self._zlib = inflate.decompressobj(-15)  # ISA-L where installed (inflate.py)
        elif method == BZIP2:
            self._other = bz2.BZ2Decompressor()
        elif method == LZMA:
            self._other = _ZipLzma()
        # An LZMA stream may end without its end marker (flag bit 1 says it has one); then
        # only the sizes say where it ends.
        self._needs_end = not (method == LZMA and not record.flags & FLAG_LZMA_END)
        self._input = b""
        self._done = False

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = size if size is not None and size > 0 else _READ
        while not self._done:
            out = self._step(want)
            if out:
                self._account(out)
                return out
        return b""

    def _fetch(self) -> None:
        if self._input or not self._left:
            return
        chunk = self._directory.read_at(min(self._left, _READ), self._position)
        if not chunk:
            raise ZipFormatError("the entry's data is truncated")
        self._position += len(chunk)
        self._left -= len(chunk)
        self._input = chunk

    def _step(self, want: int) -> bytes:
        """Produce at most `want` bytes (maybe none); at the end, run the final checks."""
        inflater = self._zlib or self._other
        if inflater is not None and inflater.eof:
            if inflater.unused_data or self._input or self._left:
                raise ZipFormatError(
                    "the compressed stream ends before the entry's declared compressed size"
                )
            self._finish()
            return b""
        self._fetch()
        if inflater is None:
            if not self._input:
                self._finish()
                return b""
            out, self._input = self._input[:want], self._input[want:]
            return out
        if self._zlib is not None:
            if not self._input:
                # ISA-L may hold output back until it is called once more without input;
                # zlib then returns nothing, and the checks below run as before.
                out = self._zlib.decompress(b"", want)
                if out or self._zlib.eof:
                    return out
                self._finish()
                return b""
            out = self._zlib.decompress(self._input, want)
            self._input = self._zlib.unconsumed_tail
            return out
        other = self._other
        assert other is not None
        if other.needs_input:
            if not self._input:
                self._finish()
                return b""
            data, self._input = self._input, b""
            return other.decompress(data, want)
        return other.decompress(b"", want)

    def _finish(self) -> None:
        self._done = True
        inflater = self._zlib or self._other
        if inflater is not None and self._needs_end and not inflater.eof:
            raise ZipFormatError(
                "the compressed stream does not end within the entry's declared compressed size"
            )
        if self._produced != self._record.size:
            raise ZipFormatError(
                f"the entry's data holds {self._produced:,} bytes; its headers declare "
                f"{self._record.size:,}"
            )
        if self._crc != self._record.crc:
            raise ZipFormatError("CRC-32 mismatch (the data is damaged or was altered)")

    def _account(self, out: bytes) -> None:
        self._produced += len(out)
        declared = self._record.size
        if self._produced > declared:
            raise ZipFormatError(
                f"the entry's data holds more than the {declared:,} bytes its headers declare "
                "(extractors that trust the data read more than this scan would)"
            )
        self._crc = zlib.crc32(out, self._crc)


class _Decompressor(Protocol):
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    @property
    def needs_input(self) -> bool: ...

    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes: ...


class _ZipLzma:
    """LZMA as zip stores it (APPNOTE 5.8.8): a 4-byte header (version, size of the
    properties), the 5-byte LZMA properties (lc/lp/pb, dictionary size), then a raw LZMA1
    stream, decoded with output bounds like the other decompressors."""

    def __init__(self) -> None:
        self._header = b""
        self._inner: lzma.LZMADecompressor | None = None

    @property
    def eof(self) -> bool:
        return self._inner is not None and self._inner.eof

    @property
    def unused_data(self) -> bytes:
        return self._inner.unused_data if self._inner is not None else b""

    @property
    def needs_input(self) -> bool:
        return self._inner is None or self._inner.needs_input

    def decompress(self, data: bytes, max_length: int = -1, /) -> bytes:
        if self._inner is None:
            self._header += data
            if len(self._header) < 4:
                return b""
            size = int.from_bytes(self._header[2:4], "little")
            if size != 5:
                raise ZipFormatError("LZMA properties of an unknown size")
            if len(self._header) < 4 + size:
                return b""
            properties, data = self._header[4:9], self._header[9:]
            packed = properties[0]
            if packed >= 9 * 5 * 5:
                raise ZipFormatError("invalid LZMA properties")
            lc, packed = packed % 9, packed // 9
            lp, pb = packed % 5, packed // 5
            dict_size = int.from_bytes(properties[1:5], "little")
            lzma1 = {"id": lzma.FILTER_LZMA1, "dict_size": dict_size, "lc": lc, "lp": lp, "pb": pb}
            self._inner = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[lzma1])
        return self._inner.decompress(data, max_length)
