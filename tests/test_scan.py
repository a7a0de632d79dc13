"""The whole engine on real bundler output and pinned published packages, and on crafted input."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from bot.engine.model import Conclusion, Report, Rule, Severity
from bot.engine.policy import ArchiveLimits, ArtifactRules, Policy
from bot.engine.scan import resolve_reference, scan_path
from bot.errors import InputError
from tests.archives import Member, tar_bytes, write, zip_bytes

REAL = Path(__file__).parent / "fixtures" / "real"
EXPECTED = json.loads((REAL / "expected.json").read_text(encoding="utf-8"))["fixtures"]


@pytest.mark.parametrize("fixture", sorted(EXPECTED))
def test_real_fixture_findings(fixture: str) -> None:
    expected = EXPECTED[fixture]
    path = REAL / fixture
    artifact = scan_path(path, policy=Policy())
    report = Report(artifacts=[artifact])
    got = {(f.rule.value, f.severity.value, f.path) for f in artifact.findings}
    want = {(f["rule"], f["severity"], f["path"]) for f in expected["findings"]}
    assert got == want
    assert len(artifact.findings) == len(expected["findings"])
    assert report.conclusion.value == expected["conclusion"]
    assert report.summary == expected["summary"]
    assert artifact.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert artifact.size == path.stat().st_size


def test_embedded_sources_message_gives_evidence_not_source() -> None:
    artifact = scan_path(REAL / "leaky-esbuild-1.0.0.tgz", policy=Policy())
    [finding] = [f for f in artifact.findings if f.rule is Rule.EMBEDDED_SOURCES]
    assert "3" in finding.message
    assert ".ts" in finding.message  # original paths are named
    source = (REAL / "src" / "app" / "greet.ts").read_text(encoding="utf-8")
    longest_line = max(source.splitlines(), key=len).strip()
    assert longest_line not in finding.message


def test_reference_notice_says_whether_map_is_present() -> None:
    present = scan_path(REAL / "leaky-esbuild-1.0.0.tgz", policy=Policy())
    missing = scan_path(REAL / "dangling-esbuild-1.0.0.tgz", policy=Policy())
    [ref_present] = [f for f in present.findings if f.rule is Rule.REFERENCE]
    [ref_missing] = [f for f in missing.findings if f.rule is Rule.REFERENCE]
    assert "is in the artifact" in ref_present.message
    assert "not in the artifact" in ref_missing.message
    assert ref_present.line is not None


def test_policy_severity_and_off() -> None:
    policy = Policy(
        severities={Rule.EMBEDDED_SOURCES: Severity.WARNING, Rule.REFERENCE: None},
    )
    artifact = scan_path(REAL / "leaky-esbuild-1.0.0.tgz", policy=policy)
    assert [(f.rule, f.severity) for f in artifact.findings] == [
        (Rule.EMBEDDED_SOURCES, Severity.WARNING)
    ]
    assert Report(artifacts=[artifact]).conclusion is Conclusion.SUCCESS


def test_allowlist_per_artifact_name() -> None:
    policy = Policy(
        artifacts=(
            ArtifactRules(name="leaky-*", allow=("package/package.json", "package/dist/*.js")),
        ),
    )
    artifact = scan_path(REAL / "leaky-esbuild-1.0.0.tgz", policy=policy)
    not_allowed = [f.path for f in artifact.findings if f.rule is Rule.NOT_ALLOWED]
    assert not_allowed == ["leaky-esbuild-1.0.0.tgz!/package/dist/index.js.map"]
    # The same rules inside an Actions artifact: the inner path matches.
    policy_zip = Policy(
        artifacts=(
            ArtifactRules(name="actions-*", allow=("package/package.json", "package/dist/*.js")),
        ),
    )
    nested = scan_path(REAL / "actions-artifact-leaky.zip", policy=policy_zip)
    assert [f.path for f in nested.findings if f.rule is Rule.NOT_ALLOWED] == [
        "actions-artifact-leaky.zip!/leaky-esbuild-1.0.0.tgz!/package/dist/index.js.map"
    ]


def test_forbidden_files_in_nested_package(tmp_path: Path) -> None:
    inner = tar_bytes(
        [
            Member("package/index.js", b"module.exports = 1\n"),
            Member("package/.env", b"TOKEN=x"),
            Member("package/.npmrc", b"//registry.npmjs.org/:_authToken=x"),
            Member("package/certs/server.key", b"-----"),
            Member("package/.git/config", b"[core]"),
        ],
        compression="gz",
    )
    artifact = scan_path(
        write(tmp_path, "artifact.zip", zip_bytes([Member("pkg-1.0.0.tgz", inner)])),
        policy=Policy(),
    )
    forbidden = sorted(
        f.path.rsplit("!/", 1)[1] for f in artifact.findings if f.rule is Rule.FORBIDDEN
    )
    # A VCS folder is reported once, as the folder, not once per file in it.
    assert forbidden == [
        "package/.env",
        "package/.git/",
        "package/.npmrc",
        "package/certs/server.key",
    ]
    assert all(f.severity is Severity.ERROR for f in artifact.findings if f.rule is Rule.FORBIDDEN)


def test_inline_map_in_lone_js_file(tmp_path: Path) -> None:
    import base64

    source_map = {
        "version": 3,
        "sources": ["/Users/dev/app/src/a.ts"],
        "sourcesContent": ["let secret = 1"],
        "mappings": "AAAA",
    }
    encoded = base64.b64encode(json.dumps(source_map).encode()).decode()
    path = write(
        tmp_path,
        "app.js",
        f"let a=1;\n//# sourceMappingURL=data:application/json;base64,{encoded}\n".encode(),
    )
    artifact = scan_path(path, policy=Policy())
    assert {(f.rule, f.line) for f in artifact.findings} == {
        (Rule.INLINE_MAP, 2),
        (Rule.EMBEDDED_SOURCES, 2),
        (Rule.LOCAL_PATH, 2),
    }
    assert all("let secret" not in f.message for f in artifact.findings)


def test_directory_artifact(tmp_path: Path) -> None:
    root = tmp_path / "dist"
    write(root, "index.js", b"x\n//# sourceMappingURL=index.js.map\n")
    write(
        root,
        "index.js.map",
        json.dumps(
            {"version": 3, "sources": ["a.ts"], "sourcesContent": ["x"], "mappings": "AAAA"}
        ).encode(),
    )
    artifact = scan_path(root, policy=Policy())
    assert artifact.sha256 is None
    assert artifact.files == 2
    assert {(f.rule, f.path) for f in artifact.findings} == {
        (Rule.EMBEDDED_SOURCES, "dist/index.js.map"),
        (Rule.REFERENCE, "dist/index.js"),
    }


def test_unreadable_inputs_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        scan_path(tmp_path / "missing.tgz", policy=Policy())
    fifo = tmp_path / "fifo"
    import os

    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        scan_path(fifo, policy=Policy())


def test_empty_directory_is_neutral(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    artifact = scan_path(tmp_path / "empty", policy=Policy())
    assert Report(artifacts=[artifact]).conclusion is Conclusion.NEUTRAL


def test_limit_finding_fails_closed(tmp_path: Path) -> None:
    from bot.engine.policy import ArchiveLimits

    data = tar_bytes([Member("package/a.js.map", b"{" + b" " * 50_000 + b"}")], compression="gz")
    policy = Policy(limits=ArchiveLimits(max_entry_size=10_000))
    artifact = scan_path(write(tmp_path, "p.tgz", data), policy=policy)
    assert [f.rule for f in artifact.findings] == [Rule.ARCHIVE_LIMIT]
    assert Report(artifacts=[artifact]).conclusion is Conclusion.FAILURE


def test_pax_bomb_in_gzip_is_a_finding(tmp_path: Path) -> None:
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 4 * 1024**3
    raw = io.BytesIO(header.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 2048)
    import gzip

    path = write(tmp_path, "x.tgz", gzip.compress(raw.getvalue()))
    artifact = scan_path(path, policy=Policy())
    assert [f.rule for f in artifact.findings] == [Rule.ARCHIVE_LIMIT]


@pytest.mark.parametrize(
    ("logical", "url", "expected"),
    [
        ("package/dist/a.js", "a.js.map", "package/dist/a.js.map"),
        ("package/dist/a.js", "../maps/a.js.map", "package/maps/a.js.map"),
        ("package/dist/a.js", "https://cdn.example/a.js.map", None),
        ("package/dist/a.js", "/a.js.map", None),
        ("a.js", "../../etc/a.map", None),
        ("x.tgz!/package/a.js", "a.js%2Emap", "x.tgz!/package/a.js.map"),
        ("x.tgz!/package/a.js", "../../../b.map", None),
    ],
)
def test_resolve_reference(logical: str, url: str, expected: str | None) -> None:
    assert resolve_reference(logical, url) == expected


class Clock:
    """A clock that jumps ten minutes every time it is read: each read of a scan is slow."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 600.0
        return self.now


@pytest.mark.parametrize("name", ["package.tgz", "cli.js.map"])
def test_a_scan_past_max_seconds_stops_and_fails_closed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    source_map = json.dumps(
        {"version": 3, "sources": ["a.ts"], "mappings": "", "names": [], "x": [0] * 200_000}
    ).encode()
    data = (
        tar_bytes([Member("package/cli.js.map", source_map)], compression="gz")
        if name.endswith(".tgz")
        else source_map
    )
    path = write(tmp_path, name, data)
    monkeypatch.setattr("bot.engine.archive.clock", Clock())
    artifact = scan_path(path, policy=Policy(limits=ArchiveLimits(max_seconds=300)))
    [finding] = [f for f in artifact.findings if f.rule is Rule.ARCHIVE_LIMIT]
    assert finding.severity is Severity.ERROR
    assert "still reading after 300 seconds (limits.max_seconds)" in finding.message
    assert Report(artifacts=[artifact]).conclusion is Conclusion.FAILURE


def test_a_lone_file_over_a_limit_is_a_finding_not_a_silent_pass(tmp_path: Path) -> None:
    source_map = json.dumps(
        {"version": 3, "sources": ["a.ts"], "sourcesContent": ["x" * 50_000], "mappings": ""}
    ).encode()
    path = write(tmp_path, "cli.js.map", source_map)
    artifact = scan_path(path, policy=Policy(limits=ArchiveLimits(max_entry_size=10_000)))
    assert [f.rule for f in artifact.findings] == [Rule.ARCHIVE_LIMIT]
    assert "more than 10,000 bytes in one entry" in artifact.findings[0].message
