"""Generate the hostile corpus of issue 16: artifacts that once slipped through, hung the
scanner or ate its memory. Nothing here is committed as a blob: every case is built, on
demand, into a folder (the big ones streamed to disk), by `build(name, folder)`.

Each case is a file a consumer (a browser, Node, `unzip`, `tar`) would read, and whose
content must end in an error-level finding (or exit 2) when `release-guard scan` reads it.
Zips are written by hand (`_Zip`), not with `zipfile`, because most of them break the rules
`zipfile` would enforce: the layout follows PKWARE's APPNOTE.TXT (sections 4.3.7 local file
header, 4.3.12 central directory header, 4.3.14-4.3.16 zip64 and end records).
"""

from __future__ import annotations

import base64
import io
import json
import struct
import tarfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

LEAKY_SOURCE = "export const apiKey = process.env.KEY; // original source\n"


def leaky_map(**extra: object) -> dict[str, object]:
    """A small valid map whose `sourcesContent` embeds a source file."""
    document: dict[str, object] = {"version": 3}
    document.update(extra)
    document.update(
        {"sources": ["src/app.ts"], "mappings": "AAAA", "sourcesContent": [LEAKY_SOURCE]}
    )
    return document


def _map_bytes(head: bytes) -> bytes:
    """`head` (raw JSON members, comma-terminated) spliced in front of a leaky map's members."""
    tail = json.dumps(leaky_map()).encode()
    return b"{" + head + tail[1:]


# --------------------------------------------------------------------------- zip writing


@dataclass
class ZipMember:
    """One entry of a hand-made zip. `data` is what is stored (already compressed when
    `method` is 8); the sizes and CRC default to what `data` honestly holds."""

    name: bytes
    data: bytes = b""
    method: int = 0
    crc: int | None = None
    size: int | None = None
    compressed_size: int | None = None
    flags: int = 0
    local_name: bytes | None = None  # a local header that disagrees with the directory
    offset: int | None = None  # a directory entry pointing at another entry's header
    write_local: bool = True


class _Zip:
    """Write a zip by hand, streaming to a file (zip64 records when the counts need them)."""

    def __init__(self, path: Path, *, prefix: bytes = b"") -> None:
        self._out = path.open("wb")
        self._out.write(prefix)
        self._position = len(prefix)
        self._central = path.with_suffix(".cd.tmp").open("w+b")
        self._central_path = path.with_suffix(".cd.tmp")
        self._count = 0

    def local_header(self, member: ZipMember, raw_size: int, crc: int) -> bytes:
        name = member.local_name if member.local_name is not None else member.name
        size = member.size if member.size is not None else raw_size
        compressed = (
            member.compressed_size if member.compressed_size is not None else len(member.data)
        )
        return (
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                20,
                member.flags,
                member.method,
                0,
                0x21,
                crc,
                compressed,
                size,
                len(name),
                0,
            )
            + name
        )

    def add(self, member: ZipMember, *, raw_size: int | None = None) -> int:
        """Write `member`; returns the offset of its local header."""
        raw = len(member.data) if raw_size is None else raw_size
        crc = member.crc if member.crc is not None else zlib.crc32(member.data)
        offset = self._position if member.offset is None else member.offset
        if member.write_local:
            header = self.local_header(member, raw, crc)
            self._out.write(header)
            self._out.write(member.data)
            self._position += len(header) + len(member.data)
        size = member.size if member.size is not None else raw
        compressed = (
            member.compressed_size if member.compressed_size is not None else len(member.data)
        )
        self._central.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                (3 << 8) | 20,
                20,
                member.flags,
                member.method,
                0,
                0x21,
                crc,
                compressed,
                size,
                len(member.name),
                0,
                0,
                0,
                0,
                0o100644 << 16,
                offset,
            )
            + member.name
        )
        self._count += 1
        return offset

    def write_raw(self, data: bytes) -> None:
        self._out.write(data)
        self._position += len(data)

    @property
    def position(self) -> int:
        return self._position

    def close(self) -> None:
        start = self._position
        self._central.seek(0)
        size = 0
        while chunk := self._central.read(1 << 20):
            self._out.write(chunk)
            size += len(chunk)
        self._central.close()
        self._central_path.unlink()
        end = start + size
        count = self._count
        if count > 0xFFFF:
            self._out.write(
                struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, size, start)
            )
            self._out.write(struct.pack("<IIQI", 0x07064B50, 0, end, 1))
            count = 0xFFFF
        self._out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, size, start, 0))
        self._out.close()


def _deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def _write_zip(path: Path, members: Iterable[ZipMember], *, prefix: bytes = b"") -> None:
    archive = _Zip(path, prefix=prefix)
    for member in members:
        archive.add(member)
    archive.close()


# --------------------------------------------------------------------------- the cases


def _deep_map(path: Path) -> None:
    """An unknown key nested 600 deep (JSON.parse and json.loads read it), then sources."""
    depth = 600
    path.write_bytes(_map_bytes(b'"x_deep":' + b"[" * depth + b"]" * depth + b","))


def _deep_index_map(path: Path) -> None:
    """An index map whose sections nest index maps 200 deep; the innermost embeds sources."""
    inner = json.dumps(leaky_map())
    document = inner
    for _ in range(200):
        document = (
            '{"version":3,"sections":[{"offset":{"line":0,"column":0},"map":' + document + "}]}"
        )
    path.write_text(document)


def _bad_utf8_key(path: Path) -> None:
    path.write_bytes(_map_bytes(b'"x_\xff":1,'))


def _bad_utf8_source(path: Path) -> None:
    document = json.dumps(leaky_map()).encode().replace(b"src/app.ts", b"src/\xffapp.ts")
    path.write_bytes(document)


def _long_number(path: Path) -> None:
    path.write_bytes(_map_bytes(b'"x_n":' + b"7" * 2000 + b","))


def _pragmas_then_inline(path: Path) -> None:
    """256 external pragmas, then an inline map with sources (the cap once hid it)."""
    inline = base64.b64encode(json.dumps(leaky_map()).encode()).decode()
    lines = ["console.log(1);"]
    lines += [f"//# sourceMappingURL=x{i}.js.map" for i in range(300)]
    lines.append(f"//# sourceMappingURL=data:application/json;charset=utf-8;base64,{inline}")
    path.write_text("\n".join(lines) + "\n")


def _zip_short_size(path: Path) -> None:
    """The headers declare the first 60 bytes of a leaky map (their CRC matches); the deflate
    stream holds the whole map, which `unzip` extracts."""
    document = json.dumps(leaky_map()).encode()
    _write_zip(
        path,
        [
            ZipMember(
                b"app.js.map",
                _deflate(document),
                method=8,
                crc=zlib.crc32(document[:60]),
                size=60,
            )
        ],
    )


def _zip_overlap(path: Path) -> None:
    """David Fifield's overlapping-entry zip bomb ("A better zip bomb", 2019), `.txt` names:
    every entry's deflate stream quotes the next entry's local header in a stored block, then
    continues into the next entry's data, down to one shared kernel."""
    count = 1500
    kernel_raw = b"\0" * (1 << 20)
    kernel = _deflate(kernel_raw)
    names = [f"{i:04d}.txt".encode() for i in range(count)]
    archive = _Zip(path)
    # Build from the last entry back: entry i's data = quote(LFH(i+1)) + data(i+1).
    raw_sizes = [0] * count
    crcs = [0] * count
    compressed = [0] * count
    raw_sizes[-1], crcs[-1], compressed[-1] = len(kernel_raw), zlib.crc32(kernel_raw), len(kernel)
    headers: list[bytes] = [b""] * count
    headers[-1] = archive.local_header(
        ZipMember(names[-1], kernel, method=8), raw_sizes[-1], crcs[-1]
    )
    for i in range(count - 2, -1, -1):
        quoted = headers[i + 1]
        raw_sizes[i] = len(quoted) + raw_sizes[i + 1]
        crcs[i] = zlib.crc32(kernel_raw, zlib.crc32(_concat_headers(headers, i + 1)))
        compressed[i] = 5 + len(quoted) + compressed[i + 1]
        member = ZipMember(names[i], b"", method=8, compressed_size=compressed[i])
        headers[i] = archive.local_header(member, raw_sizes[i], crcs[i])
    for i in range(count):
        quote = b""
        if i + 1 < count:
            length = len(headers[i + 1])
            quote = struct.pack("<BHH", 0, length, length ^ 0xFFFF)
        archive.write_raw(headers[i] + quote)
    archive.write_raw(kernel)
    offset = 0
    for i in range(count):
        archive.add(
            ZipMember(
                names[i],
                method=8,
                crc=crcs[i],
                size=raw_sizes[i],
                compressed_size=compressed[i],
                offset=offset,
                write_local=False,
            )
        )
        offset += len(headers[i]) + (5 if i + 1 < count else 0)
    archive.close()


def _concat_headers(headers: list[bytes], start: int) -> bytes:
    return b"".join(headers[start:])


def _tar_zip_polyglot(path: Path) -> None:
    """A valid tar (a README) that is also a valid zip (`.env` and a leaky map)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        readme = b"Just a readme.\n"
        info = tarfile.TarInfo("README")
        info.size = len(readme)
        archive.addfile(info, io.BytesIO(readme))
    prefix = buffer.getvalue()
    document = json.dumps(leaky_map()).encode()
    archive_zip = _Zip(path, prefix=prefix)
    for name, data in ((b".env", b"TOKEN=hunter2\n"), (b"app.js.map", document)):
        archive_zip.add(ZipMember(name, data))
    archive_zip.close()


def _tar_long_pax_path(path: Path) -> None:
    """One member whose pax `path` is about 1 MiB: 520,000 folders, ending in `.env`."""
    name = "a/" * 520_000 + ".env"
    with tarfile.open(path, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(name)
        data = b"TOKEN=hunter2\n"
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


def _zip_long_name(path: Path) -> None:
    """One entry whose name is 65,535 bytes long: 32,765 folders, then `.env`."""
    name = b"a/" * 32_764 + b"bb/" + b".env"
    assert len(name) == 0xFFFF
    _write_zip(path, [ZipMember(name, b"TOKEN=hunter2\n")])


def _zip_million_entries(path: Path) -> None:
    """1,000,000 tiny entries (the default limit is 100,000), streamed to disk."""
    archive = _Zip(path)
    for i in range(1_000_000):
        archive.add(ZipMember(b"%07d" % i))
    archive.close()


def _zip_long_unicode_names(path: Path) -> None:
    """500 entries with 65,535-byte non-ASCII names: a 33 MB central directory."""
    archive = _Zip(path)
    for i in range(500):
        name = (f"{i:03d}" + "é" * 32_766).encode()[:0xFFFF]
        archive.add(ZipMember(name, flags=0x800))
    archive.close()


def _zip_many_unsafe_names(path: Path) -> None:
    """99,000 entries with unsafe (parent-climbing) CJK names."""
    archive = _Zip(path)
    for i in range(99_000):
        archive.add(ZipMember(("../" + "漢字" * 20 + f"{i}.txt").encode(), flags=0x800))
    archive.close()


def _zip_long_unsafe_names(path: Path) -> None:
    """1,000 parent-climbing names of 4,083 bytes (just under the path limit), all
    non-ASCII: every renderer gets the longest names a report can hold."""
    archive = _Zip(path)
    for i in range(1000):
        name = ("../" + f"{i:04d}" + "é" * 2038).encode()
        archive.add(ZipMember(name, flags=0x800))
    archive.close()


def _zip_nul_name(path: Path) -> None:
    _write_zip(path, [ZipMember(b"evil\0.txt", b"hello\n")])


def _zip_local_name_differs(path: Path) -> None:
    """The central directory says `README.txt`; the local header (what a streaming
    extractor reads) says `.env`."""
    _write_zip(path, [ZipMember(b"README.txt", b"TOKEN=hunter2\n", local_name=b".env")])


def _zip_undeclared_encoding(path: Path) -> None:
    """A non-ASCII name without the UTF-8 flag: cp437 to some extractors, UTF-8 to others."""
    _write_zip(path, [ZipMember("café.js".encode(), b"1;\n")])


def _zip_nested_big(path: Path) -> None:
    """A zip holding a 120 MB zip (spooled to the temporary folder when scanned)."""
    inner_path = path.with_name("inner-big.zip")
    archive = _Zip(inner_path)
    block = bytes(range(256)) * 4096  # 1 MiB, stored
    for i in range(120):
        archive.add(ZipMember(f"blob{i}.bin".encode(), block))
    archive.close()
    outer = _Zip(path)
    size = inner_path.stat().st_size
    crc = 0
    with inner_path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            crc = zlib.crc32(chunk, crc)
    member = ZipMember(b"inner.zip", b"", crc=crc, size=size, compressed_size=size)
    outer.write_raw(outer.local_header(member, size, crc))
    with inner_path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            outer.write_raw(chunk)
    member.offset = 0
    member.write_local = False
    outer.add(member)
    outer.close()
    inner_path.unlink()


@dataclass(frozen=True)
class Case:
    name: str
    filename: str
    build: Callable[[Path], None]
    why: str


CASES: tuple[Case, ...] = (
    Case("deep-map", "deep.js.map", _deep_map, "unknown key nested 600 deep, then sources"),
    Case("deep-index-map", "index.js.map", _deep_index_map, "index maps nested 200 deep"),
    Case("utf8-key", "key.js.map", _bad_utf8_key, "invalid UTF-8 in an unknown key"),
    Case("utf8-source", "source.js.map", _bad_utf8_source, "invalid UTF-8 in a sources name"),
    Case("long-number", "number.js.map", _long_number, "a 2,000-digit number"),
    Case("pragmas", "app.js", _pragmas_then_inline, "300 external pragmas, then an inline map"),
    Case("zip-short-size", "short.zip", _zip_short_size, "declared 60 bytes, more extracted"),
    Case("zip-overlap", "overlap.zip", _zip_overlap, "Fifield's overlapping-entry bomb"),
    Case("tar-zip-polyglot", "both.zip", _tar_zip_polyglot, "a valid tar and a valid zip"),
    Case("tar-long-pax-path", "long.tar", _tar_long_pax_path, "a 1 MiB pax path"),
    Case("zip-long-name", "longname.zip", _zip_long_name, "a 65,535-byte entry name"),
    Case("zip-million", "million.zip", _zip_million_entries, "1,000,000 tiny entries"),
    Case("zip-unicode-names", "unicode.zip", _zip_long_unicode_names, "33 MB directory"),
    Case("zip-unsafe-cjk", "cjk.zip", _zip_many_unsafe_names, "99,000 unsafe CJK names"),
    Case("zip-long-unsafe", "longunsafe.zip", _zip_long_unsafe_names, "1,000 long unsafe names"),
    Case("zip-nul-name", "nul.zip", _zip_nul_name, "a NUL in a name"),
    Case("zip-local-differs", "local.zip", _zip_local_name_differs, "directory vs local name"),
    Case("zip-name-encoding", "enc.zip", _zip_undeclared_encoding, "undeclared name encoding"),
)

BY_NAME = {case.name: case for case in CASES}


def build(name: str, folder: Path) -> Path:
    """Build case `name` into `folder` (once) and return its path."""
    case = BY_NAME[name] if name in BY_NAME else _EXTRA[name]
    path = folder / case.filename
    if not path.exists():
        partial = path.with_name(path.name + ".partial")
        case.build(partial)
        partial.rename(path)
    return path


_EXTRA = {
    "zip-nested-big": Case(
        "zip-nested-big", "nested.zip", _zip_nested_big, "a 120 MB nested zip (spooled)"
    )
}


if __name__ == "__main__":  # pragma: no cover - a helper for looking at the corpus by hand
    import sys

    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    for case in (*CASES, *_EXTRA.values()):
        print(build(case.name, target))
