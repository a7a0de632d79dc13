"""Issue 16, piece by piece: the zip reader, the lenient map reading, the finding cap, the
renderers' escaping, the deny list's folder search, cancellation (the whole corpus runs as
subprocesses in test_hostile_corpus.py)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import tarfile
import tempfile
import threading
import zipfile
from pathlib import Path

import pytest

from bot.checks import output
from bot.config import load_policy
from bot.engine.archive import ArtifactWalk
from bot.engine.filerules import DenyList
from bot.engine.mapdeep import DeepValue
from bot.engine.model import (
    ArtifactReport,
    Entry,
    Finding,
    Observation,
    Report,
    Rule,
    Severity,
)
from bot.engine.policy import ArchiveLimits, Policy
from bot.engine.scan import MAX_FINDINGS_PER_RULE, apply_policy, scan_path
from bot.engine.sourcemaps import check_code_stream, check_map_stream
from bot.engine.zipread import ZipDirectory, ZipFormatError, ZipLimits, decode_name
from bot.errors import ConfigError, LimitReached
from bot.report.json_report import json_text
from tests import hostile
from tests.hostile import ZipMember, leaky_map


def observations(path: Path, limits: ArchiveLimits | None = None) -> list[Observation]:
    """Walk `path`, reading every member to its end; return the observations."""
    found = []
    for item in ArtifactWalk(path, name=path.name, limits=limits or ArchiveLimits()):
        if isinstance(item, Observation):
            found.append(item)
        elif isinstance(item, Entry) and item.stream is not None:
            try:
                while item.stream.read(1 << 16):
                    pass
            except LimitReached:  # the walker reports it (anything else is a bug: raised)
                continue
    return found


def messages(found: list[Observation], rule: Rule) -> list[str]:
    return [o.message for o in found if o.rule is rule]


# --- zips ---------------------------------------------------------------------------------------


def test_a_zip_written_by_zipfile_reads_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "ok.zip"
    data = {"a.txt": b"hello" * 1000, "dir/b.js": b"1;", "c.bin": bytes(range(256))}
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in data.items():
            method = zipfile.ZIP_STORED if name == "c.bin" else zipfile.ZIP_DEFLATED
            archive.writestr(name, content, compress_type=method)
        archive.writestr("d.bz2.txt", b"bz" * 500, compress_type=zipfile.ZIP_BZIP2)
        archive.writestr("e.xz.txt", b"xz" * 500, compress_type=zipfile.ZIP_LZMA)
    read: dict[str, bytes] = {}
    for item in ArtifactWalk(path, name="ok.zip", limits=ArchiveLimits()):
        assert not isinstance(item, Observation), item
        assert item.stream is not None
        read[item.inner_path] = item.stream.read(1 << 20) + item.stream.read(1 << 20)
    assert read == {**data, "d.bz2.txt": b"bz" * 500, "e.xz.txt": b"xz" * 500}


def test_a_zip64_directory_is_read(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    archive = hostile._Zip(path)
    for index in range(70_000):  # past 65,535: only the zip64 end record counts them
        archive.add(ZipMember(b"f%05d.txt" % index))
    archive.close()
    with path.open("rb") as handle:
        directory = ZipDirectory(handle.fileno(), path.stat().st_size, _LIMITS)
        assert directory.count == 70_000
        assert directory.check_layout(lambda: None) == []
        assert sum(1 for _ in directory.records()) == 70_000


_LIMITS = ZipLimits(max_entries=100_000, max_directory_size=64 << 20, max_name_bytes=4096)


def test_the_declared_entry_count_is_checked_before_any_record_is_read(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    hostile._write_zip(path, [ZipMember(b"f%d" % i) for i in range(11)])
    found = observations(path, ArchiveLimits(max_entries=10))
    assert any("11 entries declared (over 10" in m for m in messages(found, Rule.ARCHIVE_LIMIT))


def test_a_directory_larger_than_its_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.zip"
    hostile._write_zip(path, [ZipMember(b"x" * 200 + b"%d" % i) for i in range(20)])
    found = observations(path, ArchiveLimits(max_directory_size=1024))
    assert any("limits.max_directory_size" in m for m in messages(found, Rule.ARCHIVE_LIMIT))


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        (ZipMember(b"a.txt", b"abc", size=2), "holds more than the 2 bytes"),
        (ZipMember(b"a.txt", b"abc", size=4), "holds 3 bytes; its headers declare 4"),
        (ZipMember(b"a.txt", b"abc", crc=1), "CRC-32 mismatch"),
        (
            ZipMember(b"a.txt", hostile._deflate(b"abc") + b"junk", method=8, size=3),
            "ends before the entry's declared compressed size",
        ),
        (
            ZipMember(b"a.txt", hostile._deflate(b"abc")[:-1], method=8, size=3),
            "does not end within the entry's declared compressed size",
        ),
        (ZipMember(b"a.txt", b"abc", method=9), "compression method 9 is not supported"),
        (ZipMember(b"a.txt", b"abc", flags=1), "encrypted"),
    ],
)
def test_data_that_disagrees_with_its_headers_fails_closed(
    tmp_path: Path, member: ZipMember, expected: str
) -> None:
    path = tmp_path / "bad.zip"
    hostile._write_zip(path, [member])
    found = messages(observations(path), Rule.ARCHIVE_LIMIT)
    assert any(expected in m for m in found), found


def test_a_local_header_that_disagrees_with_the_directory_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "local.zip"
    hostile._write_zip(path, [ZipMember(b"a.js", b"1;", local_name=b"b.js")])
    found = messages(observations(path), Rule.ARCHIVE_LIMIT)
    assert any("names the entry differently" in m for m in found), found


def test_entries_that_share_bytes_are_not_read(tmp_path: Path) -> None:
    path = tmp_path / "shared.zip"
    archive = hostile._Zip(path)
    offset = archive.add(ZipMember(b"a.txt", b"abc"))
    archive.add(ZipMember(b"a.txt", b"abc", offset=offset, write_local=False))
    archive.close()
    found = observations(path)
    assert any("share bytes" in m for m in messages(found, Rule.UNSAFE_PATH))
    assert not any(isinstance(o, Entry) for o in found)


def test_names_are_kept_whole_and_ambiguous_ones_are_findings() -> None:
    assert decode_name(b"evil\0.txt", 0) == ("evil\0.txt", None)
    assert decode_name("é".encode(), 0x800) == ("é", None)
    assert decode_name(b"a\xff", 0x800)[1] == "name flagged UTF-8 but not valid UTF-8"
    text, problem = decode_name("é".encode(), 0)
    assert text == "├⌐" and problem is not None and "code page 437" in problem


def test_a_nul_in_a_name_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "nul.zip"
    hostile._write_zip(path, [ZipMember(b"evil\0.txt", b"x")])
    assert any("NUL byte" in m for m in messages(observations(path), Rule.UNSAFE_PATH))


def test_not_a_zip_is_unreadable_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "x.zip"
    path.write_bytes(b"PK\x03\x04 not really")
    with path.open("rb") as handle, pytest.raises(ZipFormatError):
        ZipDirectory(handle.fileno(), path.stat().st_size, _LIMITS)
    assert messages(observations(path), Rule.ARCHIVE_LIMIT)


def test_a_tar_that_is_also_a_zip_is_scanned_both_ways(tmp_path: Path) -> None:
    path = hostile.build("tar-zip-polyglot", tmp_path)
    found = observations(path)
    unsafe = messages(found, Rule.UNSAFE_PATH)
    assert any("both a tar and a zip" in m for m in unsafe), unsafe
    assert any("bytes before the first entry" in m for m in unsafe), unsafe


def test_a_name_past_max_path_length_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.zip"
    hostile._write_zip(path, [ZipMember(b"a/" * 100 + b"x")])
    found = observations(path, ArchiveLimits(max_path_length=100))
    assert any("limits.max_path_length" in m for m in messages(found, Rule.ARCHIVE_LIMIT))


# --- maps -----------------------------------------------------------------------------------------


def map_rules(data: bytes) -> dict[Rule, Observation]:
    found = check_map_stream(io.BytesIO(data), path="a.js.map")
    return {o.rule: o for o in found}


@pytest.mark.parametrize(
    "head",
    [
        b'"x":' + b"[" * 600 + b"]" * 600 + b",",
        b'"x":' + b'{"a":' * 600 + b"1" + b"}" * 600 + b",",
        b'"x\xff\xfe":1,',
        b'"x":' + b"9" * 5000 + b",",
        b'"x":-' + b"1" * 3000 + b".5e7,",
    ],
    ids=["deep-arrays", "deep-objects", "bad-utf8-key", "long-number", "long-float"],
)
def test_what_consumers_read_is_read_on_to_the_sources(head: bytes) -> None:
    found = map_rules(hostile._map_bytes(head))
    assert Rule.EMBEDDED_SOURCES in found
    assert Rule.INVALID_MAP in found  # still not a valid map


def test_a_long_number_across_chunks_is_skipped_without_holding_it() -> None:
    data = hostile._map_bytes(b'"x":' + b"1" * (3 << 20) + b",")
    found = map_rules(data)
    assert Rule.EMBEDDED_SOURCES in found


def test_sources_below_the_depth_the_scanner_follows_fail_closed() -> None:
    inner = json.dumps(leaky_map())
    document = inner
    for _ in range(200):
        document = '{"version":3,"sections":[{"offset":{"line":0,"column":0},"map":' + document
        document += "}]}"
    found = map_rules(document.encode())
    invalid = found[Rule.INVALID_MAP]
    assert invalid.fail_closed
    assert "embeds sources" in invalid.message


def test_a_deep_value_without_sources_stays_a_warning() -> None:
    data = b'{"version":3,"mappings":"","x":' + b"[" * 600 + b'"text"' + b"]" * 600 + b"}"
    invalid = map_rules(data)[Rule.INVALID_MAP]
    assert not invalid.fail_closed


def test_an_unparsable_rest_that_mentions_sources_fails_closed() -> None:
    data = b'{"version":3,"mappings":"", @@ "sourcesContent":["secret"]}'
    invalid = map_rules(data)[Rule.INVALID_MAP]
    assert invalid.fail_closed
    plain = map_rules(b'{"version":3,"mappings":"", @@ }')[Rule.INVALID_MAP]
    assert not plain.fail_closed


def test_deep_value_counts_sources_at_any_depth_and_across_feeds() -> None:
    data = b'[[{"a":1,"sources\\u0043ontent":["x\\"y"]},{"sourcesContent":[null,""]}]]tail'
    end = data.index(b"tail")
    whole = DeepValue()
    assert whole.feed(data, 0) == end
    assert whole.sources == 1
    for cut in range(1, end):
        deep = DeepValue()
        assert deep.feed(data[:cut], 0) == -1
        assert deep.feed(data[cut:], 0) == end - cut
        assert deep.sources == 1


def test_a_fail_closed_observation_is_an_error_whatever_the_policy() -> None:
    policy = Policy(severities={Rule.INVALID_MAP: Severity.NOTICE})
    found = apply_policy(
        [
            Observation(Rule.INVALID_MAP, "a.js.map", "m", fail_closed=True),
            Observation(Rule.INVALID_MAP, "b.js.map", "m"),
        ],
        policy,
    )
    assert [f.severity for f in found] == [Severity.ERROR, Severity.NOTICE]


def test_an_inline_map_after_many_external_pragmas_is_read() -> None:
    path = Path("app.js")
    lines = [f"//# sourceMappingURL=x{i}.js.map" for i in range(1000)]
    inline = json.dumps(leaky_map()).encode()
    lines.append(
        "//# sourceMappingURL=data:application/json;base64," + base64.b64encode(inline).decode()
    )
    result = check_code_stream(io.BytesIO("\n".join(lines).encode()), path=str(path))
    assert Rule.EMBEDDED_SOURCES in {o.rule for o in result.observations}
    assert len(result.references) == 256
    assert result.more_references == 1000 - 256


# --- reports ------------------------------------------------------------------------------------


def test_findings_of_one_rule_past_the_cap_collapse_into_one(tmp_path: Path) -> None:
    path = tmp_path / "many.zip"
    hostile._write_zip(path, [ZipMember(b"../f%d.txt" % i) for i in range(1000)])
    report = scan_path(path, policy=Policy())
    unsafe = [f for f in report.findings if f.rule is Rule.UNSAFE_PATH]
    assert len(unsafe) == MAX_FINDINGS_PER_RULE + 1
    assert unsafe[-1].message.startswith(f"{1000 - MAX_FINDINGS_PER_RULE:,} more")
    assert unsafe[-1].severity is Severity.ERROR


def test_the_json_report_escapes_unsafe_characters_inside_long_runs() -> None:
    text = "é" * 5000 + "\u202e" + "漢" * 10 + "\udcff"
    rendered = json_text({"name": text})
    assert "\\u202e" in rendered and "\\udcff" in rendered
    assert json.loads(rendered)["name"] == text
    assert "é" * 5000 in rendered


def test_json_of_a_report_with_a_collapsed_rule_parses() -> None:
    report = Report()
    assert json.loads(json_text(report.to_dict()))["conclusion"] == "neutral"


# --- paths --------------------------------------------------------------------------------------


def test_the_shortest_denied_folder_is_found_in_a_very_deep_path() -> None:
    deny = DenyList()
    path = "a/" * 200_000 + ".git/objects/" + "b/" * 10 + "x"
    found = deny.match(path, path)
    assert found is not None
    assert found.folder == "a/" * 200_000 + ".git/"
    nested = deny.match("p/.git/q/.git/r", "p/.git/q/.git/r")
    assert nested is not None and nested.folder == "p/.git/"


# --- cancellation -------------------------------------------------------------------------------


def test_a_cancelled_scan_stops_and_removes_its_spooled_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    inner = tmp_path / "inner.zip"
    hostile._write_zip(inner, [ZipMember(b"a.js", b"1;" * 1000), ZipMember(b"b.js", b"2;")])
    outer = tmp_path / "outer.tar"
    with tarfile.open(outer, "w") as archive:
        archive.add(inner, "inner.zip")
    cancel = threading.Event()
    walk = ArtifactWalk(outer, name="outer.tar", limits=ArchiveLimits(), cancel=cancel)
    found = []
    for item in walk:
        if isinstance(item, Observation):
            found.append(item)
        elif item.stream is not None:
            assert list(spool.glob("release-guard-*/*.zip"))  # spooled while it is walked
            cancel.set()
            with pytest.raises(LimitReached):
                item.stream.read(1 << 16)
    assert any("the scan was cancelled" in m for m in messages(found, Rule.ARCHIVE_LIMIT))
    assert list(spool.iterdir()) == []


def test_a_nested_zip_that_is_also_a_tar_is_reported(tmp_path: Path) -> None:
    polyglot = hostile.build("tar-zip-polyglot", tmp_path)
    outer = tmp_path / "outer.tgz"
    with tarfile.open(outer, "w:gz") as archive:
        archive.add(polyglot, "package/both.zip")
    unsafe = messages(observations(outer), Rule.UNSAFE_PATH)
    assert any("both a zip and a tar" in m for m in unsafe), unsafe


def test_a_check_run_carries_at_most_max_annotations(tmp_path: Path) -> None:
    findings = [
        Finding(Rule.UNSAFE_PATH, Severity.ERROR, f"a.zip!/f{i}", "unsafe entry.")
        for i in range(300)
    ]
    report = Report(
        artifacts=[
            ArtifactReport(name, name, None, 1, 1, findings=list(findings))
            for name in ("a.zip", "b.zip")
        ]
    )
    annotations = output.annotations_for(
        report, locate=lambda finding: None, fallback_path="package.json"
    )
    assert len(annotations) == output.MAX_ANNOTATIONS


def test_cancelling_a_worker_scan_waits_for_it_to_remove_its_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.handlers.artifacts import _scan_in_thread

    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    monkeypatch.setattr(tempfile, "tempdir", None)
    path = hostile.build("zip-nested-big", tmp_path)

    async def scenario() -> None:
        task = asyncio.ensure_future(_scan_in_thread(path, Policy(), "nested.zip"))
        while not list(spool.glob("release-guard-*/*.zip")):
            assert not task.done()
            await asyncio.sleep(0.002)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert list(spool.iterdir()) == []  # already gone when the cancellation arrives

    asyncio.run(scenario())


def test_the_new_limits_are_configurable_within_their_ceilings() -> None:
    policy = load_policy(
        "limits:\n  max_path_length: 1024\n  max_directory_size: 8MiB\n", path="rg.yml"
    )
    assert policy.limits.max_path_length == 1024
    assert policy.limits.max_directory_size == 8 << 20
    with pytest.raises(ConfigError, match="above the ceiling"):
        load_policy("limits:\n  max_path_length: 70000\n", path="rg.yml")
    with pytest.raises(ConfigError, match="above the ceiling"):
        load_policy("limits:\n  max_directory_size: 2GiB\n", path="rg.yml")


def test_past_its_depth_cap_a_deep_value_gives_up_and_holds_no_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bot.engine import mapdeep

    monkeypatch.setattr(mapdeep, "MAX_DEEP_LEVELS", 100)
    deep = DeepValue()
    data = b"[" * 1000 + b'{"sourcesContent":["x"]}' + b"]" * 1000 + b"tail"
    assert deep.feed(data, 0) == data.index(b"tail")
    assert deep.gave_up
    assert len(deep._levels) == 0
