"""Split a finding's display path into the file on disk and the member inside it.

A finding's `path` is a display path (CONTRACT.md): the artifact's name, then each nested
archive's inner path, joined with ``!/`` — ``pkg-1.0.0.tgz!/package/cli.js.map``. Formats that
point a reader at a file (SARIF, GitHub annotations) need the file that exists on disk, spelled
the way the user gave it on the command line (``dist/pkg-1.0.0.tgz``), and the member path
inside it separately, since no tool can open ``a.tgz!/x.js`` as a file.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from bot.engine.model import ArtifactReport, Finding

ARCHIVE_SEPARATOR = "!/"
"""Joins an archive's path and a path inside it (CONTRACT.md)."""


@dataclass(frozen=True, slots=True)
class FindingLocation:
    """Where a finding is, for a reader who can only open files on disk.

    - `file`: the file (or directory) on disk, starting from the artifact's path as given on
      the command line: ``dist/pkg-1.0.0.tgz``, or ``dist/js/app.js.map`` for a member of a
      directory artifact ``dist``; ``/``-separated, with ``./`` and doubled slashes removed.
    - `member`: the path inside `file` when the finding is in an archive member:
      ``package/cli.js.map``, or ``package/inner.zip!/x.js`` at deeper nesting; None when the
      finding is about `file` itself.
    - `line`: the 1-based line, in `member` when there is one, else in `file`; None when unknown.
    """

    file: str
    member: str | None
    line: int | None

    @property
    def file_line(self) -> int | None:
        """The line to point at in `file` itself: only when the finding is not in a member."""
        return self.line if self.member is None else None

    @property
    def member_label(self) -> str | None:
        """``member`` or ``member:line``, for a message; None when there is no member."""
        if self.member is None:
            return None
        return self.member if self.line is None else f"{self.member}:{self.line}"


def locate(artifact: ArtifactReport, finding: Finding) -> FindingLocation:
    """Return where `finding` (one of `artifact`'s findings) is on disk and inside archives.

    The part of the display path before the first ``!/`` names something on disk: the artifact
    itself (its name), or a file under a directory artifact (``name/sub/file``); it is re-rooted
    on the artifact's path. A path that does not start with the artifact's name is taken as it
    is. A line number below 1 is treated as unknown.
    """
    outer, separator, inner = finding.path.partition(ARCHIVE_SEPARATOR)
    name = artifact.name
    base = artifact.path or name
    if not outer or outer == name:
        file = base
    elif name and outer.startswith(name + "/"):
        file = base.rstrip("/") + "/" + outer[len(name) + 1 :]
    else:
        file = outer
    line = finding.line if finding.line is not None and finding.line >= 1 else None
    return FindingLocation(
        file=tidy_path(file or outer or name), member=inner if separator else None, line=line
    )


def tidy_path(path: str) -> str:
    """Return `path` ``/``-separated, without ``./``, doubled slashes or ``dir/..`` detours.

    ``./dist/pkg.tgz`` and ``dist/pkg.tgz`` are one file to code scanning only when spelled
    alike. Backslashes are separators only where the platform says so (Windows); elsewhere
    they are ordinary characters of a name. An empty path stays empty.
    """
    if os.sep != "/":
        path = path.replace(os.sep, "/")
    return posixpath.normpath(path) if path else path
