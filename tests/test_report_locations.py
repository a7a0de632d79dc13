"""Splitting a display path into the file on disk and the member inside it."""

from __future__ import annotations

import pytest

from bot.engine.model import ArtifactReport, Finding, Rule, Severity
from bot.report.locations import FindingLocation, locate, tidy_path


def where(name: str, path: str, finding_path: str, line: int | None = None) -> FindingLocation:
    artifact = ArtifactReport(name, path, None, 0, 0)
    return locate(artifact, Finding(Rule.MAP_FILE, Severity.WARNING, finding_path, "m", line))


def test_the_artifact_itself() -> None:
    assert where("app.js", "build/app.js", "app.js", 3) == FindingLocation("build/app.js", None, 3)


def test_a_member_of_an_archive() -> None:
    found = where("pkg.tgz", "./dist/pkg.tgz", "pkg.tgz!/package/cli.js", 54)
    assert found == FindingLocation("dist/pkg.tgz", "package/cli.js", 54)
    assert found.file_line is None
    assert found.member_label == "package/cli.js:54"


def test_nested_archives_keep_the_inner_separators() -> None:
    found = where("art.zip", "/tmp/art.zip", "art.zip!/pkg.tgz!/package/x.js")
    assert found == FindingLocation("/tmp/art.zip", "pkg.tgz!/package/x.js", None)
    assert found.member_label == "pkg.tgz!/package/x.js"


def test_a_file_under_a_directory_artifact() -> None:
    found = where("dist", "out/dist/", "dist/js/app.js.map", 2)
    assert found == FindingLocation("out/dist/js/app.js.map", None, 2)
    assert found.file_line == 2 and found.member_label is None


def test_a_path_not_under_the_artifact_is_taken_as_it_is() -> None:
    assert where("a.zip", "a.zip", "other/b.js").file == "other/b.js"


def test_empty_paths_fall_back_to_the_artifact() -> None:
    assert where("a.zip", "x/a.zip", "").file == "x/a.zip"
    assert where("a.zip", "", "a.zip!/m").file == "a.zip"


@pytest.mark.parametrize("line", [0, -4])
def test_lines_below_one_are_unknown(line: int) -> None:
    assert where("a.js", "a.js", "a.js", line).line is None


@pytest.mark.parametrize(
    ("given", "tidy"),
    [
        ("./dist//a.tgz", "dist/a.tgz"),
        ("a/../b", "b"),
        ("/abs/x", "/abs/x"),
        ("", ""),
        ("a\\b", "a\\b"),
    ],
)
def test_tidy_path(given: str, tidy: str) -> None:
    assert tidy_path(given) == tidy
