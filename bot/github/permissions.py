"""Name the App permission a refused request needed.

GitHub says it in the `x-accepted-github-permissions` header of the response ("checks=write";
alternatives separated by `;`, several needed together by `,`), see
https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api
("Insufficient permission errors"). When the header is missing (older GitHub Enterprise
Server), the table below, taken from
https://docs.github.com/en/rest/authentication/permissions-required-for-github-apps,
gives the permission for the endpoints the App calls.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

_READ: Final = frozenset({"GET", "HEAD"})

# (pattern on the path, permission for reads, permission for writes); first match wins.
_TABLE: Final = (
    (re.compile(r"/actions/runs/\d+/deployment_protection_rule$"), None, "deployments: write"),
    (re.compile(r"/actions/"), "actions: read", "actions: write"),
    (re.compile(r"/check-runs(/|$)"), "checks: read", "checks: write"),
    (re.compile(r"/contents/"), "contents: read", "contents: write"),
    (re.compile(r"/releases(/|$)"), "contents: read", "contents: write"),
    (re.compile(r"/git/"), "contents: read", "contents: write"),
    (re.compile(r"/pulls(/|$)"), "pull_requests: read", "pull_requests: write"),
    (re.compile(r"/collaborators/"), "metadata: read", "administration: write"),
    (re.compile(r"/issues$"), "issues: read", "issues: write"),
    (re.compile(r"/issues/"), "issues: read", "issues: write (or pull_requests: write)"),
)


def from_header(value: str) -> str | None:
    """Render `x-accepted-github-permissions` ("checks=write; contents=read") for people."""
    alternatives = []
    for group in value.split(";"):
        needed = [p.strip().replace("=", ": ") for p in group.split(",") if p.strip()]
        if needed:
            alternatives.append(" and ".join(needed))
    return " or ".join(alternatives) or None


def guess(method: str, path: str) -> str | None:
    """Return the permission a request on `path` most likely needs, from GitHub's table."""
    for pattern, read, write in _TABLE:
        if pattern.search(path):
            return read if method.upper() in _READ else write
    return None


def required_permission(method: str, path: str, headers: Mapping[str, str]) -> str | None:
    """Return the permission GitHub says (or the table suggests) the request needed."""
    header = headers.get("x-accepted-github-permissions")
    if header:
        named = from_header(header)
        if named:
            return named
    return guess(method, path)
