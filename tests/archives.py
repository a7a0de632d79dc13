"""Build archives for tests, hostile ones included, in memory or in a folder."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

FIXED_DATE = (1985, 10, 26, 8, 15, 0)


@dataclass
class Member:
    """One member to put in an archive; `kind` is file, dir, symlink, hardlink, chr or fifo."""

    name: str
    data: bytes = b""
    kind: str = "file"
    target: str = ""
    extra: dict[str, str] = field(default_factory=dict)


def tar_bytes(members: Iterable[Member], *, compression: str | None = None) -> bytes:
    """Return a tar (optionally gz/bz2/xz) holding `members` exactly as given."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.mtime = 499162500
            info.pax_headers = dict(member.extra)
            if member.kind == "file":
                info.size = len(member.data)
                archive.addfile(info, io.BytesIO(member.data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "symlink": tarfile.SYMTYPE,
                "hardlink": tarfile.LNKTYPE,
                "chr": tarfile.CHRTYPE,
                "fifo": tarfile.FIFOTYPE,
            }[member.kind]
            info.linkname = member.target
            archive.addfile(info)
    return compress(raw.getvalue(), compression)


def compress(data: bytes, compression: str | None) -> bytes:
    if compression is None:
        return data
    if compression == "gz":
        return gzip.compress(data, mtime=0)
    if compression == "bz2":
        return bz2.compress(data)
    if compression == "xz":
        return lzma.compress(data)
    raise ValueError(compression)


def zip_bytes(members: Iterable[Member], *, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """Return a zip holding `members`; links and devices carry Unix mode bits."""
    raw = io.BytesIO()
    with (
        warnings.catch_warnings(),  # duplicate names are wanted here
        zipfile.ZipFile(raw, "w", compression=method) as archive,
    ):
        warnings.simplefilter("ignore")
        for member in members:
            info = zipfile.ZipInfo(member.name, date_time=FIXED_DATE)
            info.compress_type = method
            info.create_system = 3
            modes = {
                "file": 0o100644,
                "dir": 0o040755,
                "symlink": 0o120777,
                "chr": 0o020644,
                "fifo": 0o010644,
            }
            info.external_attr = modes[member.kind] << 16
            data = member.target.encode() if member.kind == "symlink" else member.data
            archive.writestr(info, data)
    return raw.getvalue()


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path
