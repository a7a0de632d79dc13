"""Inflating through ISA-L (`isal`) and through the zlib fallback gives the same walk."""

from __future__ import annotations

import gzip
import io
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.engine import inflate
from bot.engine.streams import GzipStream
from tests.archives import Member, tar_bytes, write, zip_bytes
from tests.test_archive import walk


@pytest.fixture(params=["isal", "zlib"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    inflate.use_zlib(request.param == "zlib")
    if inflate.backend() != request.param:
        pytest.fail("isal is a dependency: reinstall the package (pip install -e .)")
    yield request.param
    inflate.use_zlib(False)


def _text(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    words = [b"const", b"return", b"value", b"=>", b"{", b"}", b"\n"]
    return b" ".join(rng.choice(words) for _ in range(size // 4))[:size]


def test_gzip_members_padding_and_small_reads(backend: str) -> None:
    first, second = _text(300_000, 1), _text(50_000, 2)
    data = gzip.compress(first, mtime=0) + b"\0" * 512 + gzip.compress(second, mtime=0)
    for size in (1, 4096, 1 << 20):
        stream = GzipStream(io.BytesIO(data))
        out = bytearray()
        while chunk := stream.read(size):
            out += chunk
        assert bytes(out) == first + second


def test_tgz_and_zip_walks_are_the_same_with_either_backend(tmp_path: Path, backend: str) -> None:
    members = [Member("package/a.js", _text(200_000, 3)), Member("package/b.map", b"{}")]
    tgz = walk(write(tmp_path, "p.tgz", tar_bytes(members, compression="gz")))
    wheel = walk(write(tmp_path, "p.zip", zip_bytes(members)))
    for name, result in (("p.tgz", tgz), ("p.zip", wheel)):
        assert result["obs"] == []
        assert result["files"][f"{name}!/package/a.js"] == members[0].data


def test_zip_members_inflate_through_the_backend(
    tmp_path: Path, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[str] = []
    real = inflate.decompressobj

    def spy(wbits: int) -> inflate.Decompressor:
        inflater = real(wbits)
        made.append(f"{wbits}:{type(inflater).__module__}")
        return inflater

    monkeypatch.setattr(inflate, "decompressobj", spy)
    data = zip_bytes([Member("a.js", _text(10_000, 4)), Member("s.js", b"s")])
    result = walk(write(tmp_path, "p.zip", data))
    assert result["files"]["p.zip!/a.js"] == _text(10_000, 4)
    module = "isal_zlib" if backend == "isal" else "zlib"
    assert made == [f"-15:{module}"] * 2  # both members are deflated by zip_bytes


def test_corrupt_deflate_data_is_a_finding_with_either_backend(
    tmp_path: Path, backend: str
) -> None:
    payload = os.urandom(20_000) + _text(100_000, 5)
    tgz = bytearray(tar_bytes([Member("a.js", payload)], compression="gz"))
    for at in range(200, len(tgz) - 20, len(tgz) // 7):
        tgz[at] ^= 0x55
    result = walk(write(tmp_path, "bad.tgz", bytes(tgz)))
    assert [o.rule.value for o in result["obs"]] == ["archive/limit"]
    assert "could not be read" in result["obs"][0].message
    data = bytearray(zip_bytes([Member("a.js", _text(100_000, 6))]))
    start = data.index(b"a.js") + 4  # the member's deflate data follows its local header
    for at in range(start + 10, start + 400, 37):
        data[at] ^= 0xFF
    result = walk(write(tmp_path, "bad.zip", bytes(data)))
    assert [o.rule.value for o in result["obs"]] == ["archive/limit"]
    assert "could not be read" in result["obs"][0].message
