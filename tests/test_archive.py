"""The archive walker: formats, nesting, paths, and hostile archives that must fail closed."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.engine.archive import ArtifactWalk, archive_kind, normalise_member, sniff_kind
from bot.engine.model import Entry, EntryKind, Observation, Rule
from bot.engine.policy import MIB, ArchiveLimits
from tests.archives import Member, compress, tar_bytes, write, zip_bytes

REAL = Path(__file__).parent / "fixtures" / "real"


def walk(path: Path, *, limits: ArchiveLimits | None = None, name: str | None = None) -> dict:
    """Walk fully, reading every stream; return entries' contents and observations."""
    files: dict[str, bytes] = {}
    archives: list[str] = []
    observations: list[Observation] = []
    walker = ArtifactWalk(path, name=name or path.name, limits=limits or ArchiveLimits())
    for item in walker:
        if isinstance(item, Observation):
            observations.append(item)
            continue
        assert isinstance(item, Entry)
        if item.kind is EntryKind.ARCHIVE:
            archives.append(item.path)
            continue
        assert item.stream is not None
        chunks = []
        try:
            while chunk := item.stream.read(1 << 16):
                chunks.append(chunk)
        except Exception as exc:  # the walker reports it; the consumer just stops
            from bot.errors import LimitReached

            assert isinstance(exc, LimitReached)
        files[item.path] = b"".join(chunks)
    return {"files": files, "archives": archives, "obs": observations, "count": walker.files}


def rules(result: dict) -> list[tuple[str, str]]:
    return [(o.rule.value, o.path) for o in result["obs"]]


# --- formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "compression"),
    [
        ("pkg.tgz", "gz"),
        ("pkg.tar.gz", "gz"),
        ("pkg.tar.bz2", "bz2"),
        ("pkg.tar.xz", "xz"),
        ("pkg.tar", None),
    ],
)
def test_tar_formats(tmp_path: Path, name: str, compression: str | None) -> None:
    data = tar_bytes(
        [Member("package/a.js", b"A"), Member("package/b/c.map", b"{}")], compression=compression
    )
    result = walk(write(tmp_path, name, data))
    assert result["files"] == {f"{name}!/package/a.js": b"A", f"{name}!/package/b/c.map": b"{}"}
    assert result["obs"] == []
    assert result["count"] == 2


@pytest.mark.parametrize("suffix", [".zip", ".whl", ".jar", ".vsix", ".nupkg"])
def test_zip_family(tmp_path: Path, suffix: str) -> None:
    data = zip_bytes([Member("dir/", kind="dir"), Member("dir/x.js", b"x" * 1000)])
    result = walk(write(tmp_path, "art" + suffix, data))
    assert result["files"] == {f"art{suffix}!/dir/x.js": b"x" * 1000}
    assert result["obs"] == []


def test_stored_zip(tmp_path: Path) -> None:
    data = zip_bytes([Member("x.css", b"body{}")], method=zipfile.ZIP_STORED)
    assert walk(write(tmp_path, "a.zip", data))["files"] == {"a.zip!/x.css": b"body{}"}


def test_lone_file_and_sniffing(tmp_path: Path) -> None:
    lone = walk(write(tmp_path, "app.js", b"console.log(1)"))
    assert lone["files"] == {"app.js": b"console.log(1)"}
    # An Actions artifact downloaded without a suffix is recognised by its bytes.
    nameless = walk(write(tmp_path, "artifact", zip_bytes([Member("a.txt", b"t")])))
    assert nameless["files"] == {"artifact!/a.txt": b"t"}


def test_lone_gzip_file_and_gzipped_tar(tmp_path: Path) -> None:
    single = walk(write(tmp_path, "bundle.js.gz", gzip.compress(b"var a")))
    assert single["files"] == {"bundle.js.gz!/bundle.js": b"var a"}
    tar_in_gz = walk(write(tmp_path, "x.gz", tar_bytes([Member("m.js", b"m")], compression="gz")))
    assert tar_in_gz["files"] == {"x.gz!/m.js": b"m"}


def test_nested_archives_and_paths(tmp_path: Path) -> None:
    inner_tgz = tar_bytes([Member("package/cli.js", b"c")], compression="gz")
    inner_zip = zip_bytes([Member("w/x.py", b"p")])
    outer = zip_bytes([Member("pkg-1.0.0.tgz", inner_tgz), Member("lib.whl", inner_zip)])
    result = walk(write(tmp_path, "artifact.zip", outer))
    assert result["files"] == {
        "artifact.zip!/pkg-1.0.0.tgz!/package/cli.js": b"c",
        "artifact.zip!/lib.whl!/w/x.py": b"p",
    }
    assert result["archives"] == ["artifact.zip!/pkg-1.0.0.tgz", "artifact.zip!/lib.whl"]
    entries = [
        item
        for item in ArtifactWalk(tmp_path / "artifact.zip", name="artifact", limits=ArchiveLimits())
        if isinstance(item, Entry) and item.kind is EntryKind.FILE
    ]
    assert [(e.logical_path, e.inner_path, e.depth) for e in entries] == [
        ("pkg-1.0.0.tgz!/package/cli.js", "package/cli.js", 1),
        ("lib.whl!/w/x.py", "w/x.py", 1),
    ]


def test_zip_nested_in_tar_is_spooled_and_cleaned(tmp_path: Path) -> None:
    inner = zip_bytes([Member("a.js", b"a")])
    outer = tar_bytes([Member("bundle.zip", inner)], compression="gz")
    before = set(os.listdir(os.environ.get("TMPDIR", "/tmp")))
    result = walk(write(tmp_path, "a.tgz", outer))
    assert result["files"] == {"a.tgz!/bundle.zip!/a.js": b"a"}
    after = set(os.listdir(os.environ.get("TMPDIR", "/tmp")))
    assert not {n for n in after - before if n.startswith("release-guard-")}


def test_directory_input(tmp_path: Path) -> None:
    root = tmp_path / "dist"
    write(root, "a.js", b"a")
    write(root, "sub/b.css", b"b")
    write(root, "pkg.tgz", tar_bytes([Member("package/c.js", b"c")], compression="gz"))
    (root / "link.js").symlink_to(root / "a.js")
    os.mkfifo(root / "pipe")
    result = walk(root)
    assert result["files"] == {
        "dist/a.js": b"a",
        "dist/pkg.tgz!/package/c.js": b"c",
        "dist/sub/b.css": b"b",
    }
    assert sorted(rules(result)) == [
        ("archive/unsafe-path", "dist/link.js"),
        ("archive/unsafe-path", "dist/pipe"),
    ]


def test_real_actions_artifact() -> None:
    result = walk(REAL / "actions-artifact-leaky.zip")
    assert sorted(result["files"]) == [
        "actions-artifact-leaky.zip!/leaky-esbuild-1.0.0.tgz!/package/dist/index.js",
        "actions-artifact-leaky.zip!/leaky-esbuild-1.0.0.tgz!/package/dist/index.js.map",
        "actions-artifact-leaky.zip!/leaky-esbuild-1.0.0.tgz!/package/package.json",
    ]


# --- unsafe entries ------------------------------------------------------------------------


@pytest.mark.parametrize("make", [tar_bytes, zip_bytes])
def test_traversal_absolute_and_links(tmp_path: Path, make) -> None:
    members = [
        Member("../../etc/passwd", b"root"),
        Member("/abs/file.js", b"x"),
        Member("C:\\win\\evil.js", b"w"),
        Member("link", kind="symlink", target="/etc/shadow"),
        Member("ok.js", b"ok"),
    ]
    if make is tar_bytes:
        members += [Member("hard", kind="hardlink", target="ok.js"), Member("dev", kind="chr")]
    else:
        members += [Member("dev", kind="chr")]
    result = walk(write(tmp_path, "a.tar" if make is tar_bytes else "a.zip", make(members)))
    unsafe = {o.path: o.message for o in result["obs"] if o.rule is Rule.UNSAFE_PATH}
    prefix = "a.tar!/" if make is tar_bytes else "a.zip!/"
    assert "climbs out" in unsafe[prefix + "etc/passwd"]
    assert "absolute" in unsafe[prefix + "abs/file.js"]
    assert "drive letter" in unsafe[prefix + "win/evil.js"]
    assert "symbolic link" in unsafe[prefix + "link"]
    assert "device" in unsafe[prefix + "dev"]
    if make is tar_bytes:
        assert "hard link" in unsafe[prefix + "hard"]
    # Traversal names are still scanned (nothing is extracted), under a normalised path.
    assert result["files"][prefix + "etc/passwd"] == b"root"
    assert prefix + "link" not in result["files"]


def test_duplicate_names(tmp_path: Path) -> None:
    data = zip_bytes([Member("a.js", b"1"), Member("./a.js", b"2")])
    result = walk(write(tmp_path, "d.zip", data))
    assert [(o.rule, o.path) for o in result["obs"]] == [(Rule.UNSAFE_PATH, "d.zip!/a.js")]
    assert "duplicate" in result["obs"][0].message


def test_non_utf8_tar_name(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT, encoding="latin-1") as tf:
        info = tarfile.TarInfo("caf\xe9.js")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    result = walk(write(tmp_path, "n.tar", raw.getvalue()))
    assert result["files"] == {"n.tar!/caf\\xe9.js": b"x"}
    assert [(o.rule, o.message) for o in result["obs"]] == [
        (Rule.UNSAFE_PATH, "unsafe entry: name is not valid UTF-8.")
    ]


def test_normalise_member() -> None:
    assert normalise_member("./package//dist/x.js") == ("package/dist/x.js", None)
    assert normalise_member("a\\b\\c.js") == ("a/b/c.js", None)
    assert normalise_member("..")[1] is not None
    assert normalise_member("")[0] == "(empty name)"


# --- limits and damage -------------------------------------------------------------------------


def limit_messages(result: dict) -> list[str]:
    return [o.message for o in result["obs"] if o.rule is Rule.ARCHIVE_LIMIT]


def test_ratio_bomb_zip(tmp_path: Path) -> None:
    bomb = zip_bytes([Member("zeros.bin", b"\0" * (8 * MIB))])
    limits = ArchiveLimits(max_ratio=100, ratio_grace=MIB)
    result = walk(write(tmp_path, "bomb.zip", bomb), limits=limits)
    [message] = limit_messages(result)
    assert "compression ratio" in message and "limits.max_ratio" in message


def test_ratio_bomb_gzip_unread_member_still_counted(tmp_path: Path) -> None:
    # The walker skips a member nobody reads by decompressing it: that must count too.
    bomb = tar_bytes(
        [Member("zeros.bin", b"\0" * (8 * MIB)), Member("z.js", b"")], compression="gz"
    )
    limits = ArchiveLimits(max_ratio=100, ratio_grace=MIB)
    walker = ArtifactWalk(write(tmp_path, "bomb.tgz", bomb), name="bomb.tgz", limits=limits)
    observations = [item for item in walker if isinstance(item, Observation)]
    assert [o.rule for o in observations] == [Rule.ARCHIVE_LIMIT]


def test_total_size_limit(tmp_path: Path) -> None:
    data = zip_bytes([Member(f"f{i}.js", os.urandom(1000)) for i in range(10)])
    result = walk(write(tmp_path, "t.zip", data), limits=ArchiveLimits(max_total_size=5000))
    [message] = limit_messages(result)
    assert "limits.max_total_size" in message
    assert len(result["files"]) <= 6


def test_entry_size_limit(tmp_path: Path) -> None:
    data = tar_bytes([Member("big.js", b"x" * 5000)])
    result = walk(write(tmp_path, "e.tar", data), limits=ArchiveLimits(max_entry_size=4096))
    [message] = limit_messages(result)
    assert "limits.max_entry_size" in message


def test_entry_count_limit(tmp_path: Path) -> None:
    data = zip_bytes([Member(f"f{i}", b"") for i in range(50)])
    result = walk(write(tmp_path, "c.zip", data), limits=ArchiveLimits(max_entries=20))
    [message] = limit_messages(result)
    assert "limits.max_entries" in message
    assert result["count"] <= 20


def test_depth_limit(tmp_path: Path) -> None:
    data = zip_bytes([Member("leaf.js", b"l")])
    for level in range(4):
        data = zip_bytes([Member(f"level{level}.zip", data)])
    result = walk(write(tmp_path, "deep.zip", data), limits=ArchiveLimits(max_depth=2))
    [message] = limit_messages(result)
    assert "limits.max_depth" in message
    # The archive past the limit is reported as a plain member: its contents stay unread.
    assert list(result["files"]) == ["deep.zip!/level3.zip!/level2.zip!/level1.zip"]


def test_self_similar_quine_like_nesting_stops(tmp_path: Path) -> None:
    data = b"seed"
    for _ in range(12):
        data = tar_bytes([Member("again.tgz", data)], compression="gz")
    result = walk(write(tmp_path, "q.tgz", data))
    assert any("limits.max_depth" in m for m in limit_messages(result))


def test_huge_pax_header_is_refused_without_allocating(tmp_path: Path) -> None:
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 8 * 1024**3  # claims 8 GiB
    block = header.tobuf(format=tarfile.GNU_FORMAT)
    result = walk(write(tmp_path, "pax.tar", block + b"\0" * 1024))
    [message] = limit_messages(result)
    assert "could not be read" in message and "pax header of 8,589,934,592 bytes" in message


@pytest.mark.parametrize("compression", ["gz", "bz2", "xz"])
def test_truncated_compressed_tar(tmp_path: Path, compression: str) -> None:
    data = tar_bytes(
        [Member("a.js", os.urandom(50_000)), Member("b.js", b"b")], compression=compression
    )
    result = walk(write(tmp_path, f"t.tar.{compression}", data[: len(data) // 2]))
    messages = limit_messages(result)
    assert len(messages) == 1
    assert "could not be read" in messages[0]


def test_corrupt_zip_and_crc(tmp_path: Path) -> None:
    assert (
        "could not be read"
        in limit_messages(walk(write(tmp_path, "bad.zip", b"PK\x03\x04junk")))[0]
    )
    data = bytearray(zip_bytes([Member("a.js", b"a" * 100)], method=zipfile.ZIP_STORED))
    data[data.index(b"a" * 100)] = ord("b")  # stored data no longer matches its CRC
    result = walk(write(tmp_path, "crc.zip", bytes(data)))
    [message] = limit_messages(result)
    assert "CRC" in message


def test_encrypted_zip_member_is_unreadable(tmp_path: Path) -> None:
    data = bytearray(zip_bytes([Member("a.js", b"a")]))
    # Set the "encrypted" flag bit in both the local and the central header.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.index(signature) + offset
        data[at] |= 1
    result = walk(write(tmp_path, "enc.zip", bytes(data)))
    [message] = limit_messages(result)
    assert "could not be read" in message
    assert result["files"] == {}


def test_empty_and_garbage_inputs(tmp_path: Path) -> None:
    assert walk(write(tmp_path, "empty.tgz", b""))["obs"][0].rule is Rule.ARCHIVE_LIMIT
    assert (
        walk(write(tmp_path, "junk.tgz", b"\x1f\x8bnotgzip"))["obs"][0].rule is Rule.ARCHIVE_LIMIT
    )
    nested = zip_bytes([Member("inner.tgz", b"not a tarball"), Member("ok.js", b"k")])
    result = walk(write(tmp_path, "n.zip", nested))
    assert result["files"] == {"n.zip!/ok.js": b"k"}
    assert [o.path for o in result["obs"]] == ["n.zip!/inner.tgz"]


def test_unread_streams_are_skipped_safely(tmp_path: Path) -> None:
    data = tar_bytes([Member(f"f{i}.js", os.urandom(3000)) for i in range(5)], compression="gz")
    walker = ArtifactWalk(write(tmp_path, "s.tgz", data), name="s.tgz", limits=ArchiveLimits())
    seen = [item.path for item in walker if isinstance(item, Entry)]
    assert len(seen) == 5
    assert walker.files == 5


def test_archive_kind_and_sniff() -> None:
    assert archive_kind("X.TAR.GZ") == ("tar", "gz")
    assert archive_kind("a.js") is None
    assert sniff_kind(b"\xfd7zXZ\x00rest") == ("compressed", "xz")
    assert sniff_kind(b"plain text") is None


# --- property tests: no input crashes the walker -----------------------------------------------


def _consume(path: Path, limits: ArchiveLimits) -> None:
    for item in ArtifactWalk(path, name=path.name, limits=limits):
        if isinstance(item, Entry) and item.stream is not None:
            try:
                while item.stream.read(4096):
                    pass
            except Exception as exc:
                from bot.errors import LimitReached

                assert isinstance(exc, LimitReached)


SMALL = ArchiveLimits(max_entries=200, max_total_size=4 * MIB, ratio_grace=64 * 1024)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.binary(max_size=4096),
    suffix=st.sampled_from([".zip", ".tgz", ".tar", ".tar.xz", ".tar.bz2", ".gz", ".js"]),
)
def test_arbitrary_bytes_never_crash(tmp_path: Path, data: bytes, suffix: str) -> None:
    _consume(write(tmp_path, "fuzz" + suffix, data), SMALL)


def _mutations() -> st.SearchStrategy[tuple[str, bytes]]:
    base = [
        (
            "a.zip",
            zip_bytes(
                [
                    Member("p/a.js", b"//# sourceMappingURL=a.js.map\n"),
                    Member("x.tgz", tar_bytes([Member("m", b"m" * 300)], compression="gz")),
                ]
            ),
        ),
        (
            "b.tgz",
            tar_bytes(
                [
                    Member("package/a.map", b'{"version":3}'),
                    Member("l", kind="symlink", target=".."),
                ],
                compression="gz",
            ),
        ),
        ("c.tar.xz", tar_bytes([Member("a", b"a" * 500)], compression="xz")),
    ]
    return st.sampled_from(base).flatmap(
        lambda pair: st.tuples(
            st.just(pair[0]),
            st.lists(
                st.tuples(st.integers(0, len(pair[1]) - 1), st.integers(0, 255)), max_size=8
            ).map(lambda edits, blob=pair[1]: _apply(blob, edits)),
        )
    )


def _apply(blob: bytes, edits: list[tuple[int, int]]) -> bytes:
    mutable = bytearray(blob)
    for at, value in edits:
        mutable[at] = value
    return bytes(mutable)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=_mutations(), cut=st.integers(0, 10_000))
def test_mutated_archives_never_crash(tmp_path: Path, case: tuple[str, bytes], cut: int) -> None:
    name, blob = case
    blob = blob[: max(1, len(blob) - cut % max(1, len(blob)))] if cut % 3 == 0 else blob
    _consume(write(tmp_path, name, blob), SMALL)


def test_compress_helper_roundtrip() -> None:
    assert gzip.decompress(compress(b"x", "gz")) == b"x"


def test_zip_members_with_bare_permission_bits_are_regular_files(tmp_path: Path) -> None:
    # zipfile.writestr(name, data) stores 0o600 with no file-type bits, as many tools do.
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w") as archive:
        archive.writestr("a.js", b"a")
    result = walk(write(tmp_path, "p.zip", raw.getvalue()))
    assert result["files"] == {"p.zip!/a.js": b"a"}
    assert result["obs"] == []
