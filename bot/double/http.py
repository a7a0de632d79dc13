"""Answers in GitHub's shape: JSON bodies, error bodies, pagination `Link` headers."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlencode

from aiohttp import web
from yarl import URL

DOCS: Final = "https://docs.github.com/rest"
MAX_PER_PAGE: Final = 100
DEFAULT_PER_PAGE: Final = 30


def json_response(
    data: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def error(
    status: int,
    message: str,
    *,
    docs: str = DOCS,
    headers: Mapping[str, str] | None = None,
    errors: Sequence[Any] | None = None,
) -> web.Response:
    """GitHub's error body: `{"message", "documentation_url", "status"}`."""
    body: dict[str, Any] = {"message": message, "documentation_url": docs, "status": str(status)}
    if errors is not None:
        body["errors"] = list(errors)
    return json_response(body, status=status, headers=headers)


def not_found() -> web.Response:
    return error(404, "Not Found")


def paginate(
    request: web.Request, api_url: str, items: Sequence[Any]
) -> tuple[list[Any], dict[str, str]]:
    """Return one page of `items` and the `Link` header for the others, as GitHub does.

    https://docs.github.com/en/rest/using-the-rest-api/using-pagination-in-the-rest-api:
    `per_page` (at most 100, default 30) and `page` (from 1); the `Link` header lists
    `prev`/`next`/`last`/`first` with the other query parameters kept.
    """
    try:
        per_page = min(max(int(request.query.get("per_page", DEFAULT_PER_PAGE)), 1), MAX_PER_PAGE)
    except ValueError:
        per_page = DEFAULT_PER_PAGE
    try:
        page = max(int(request.query.get("page", 1)), 1)
    except ValueError:
        page = 1
    last = max((len(items) + per_page - 1) // per_page, 1)
    chunk = list(items[(page - 1) * per_page : page * per_page])

    def link(number: int) -> str:
        query = dict(request.query)
        query.update(per_page=str(per_page), page=str(number))
        return str(URL(api_url + request.path).with_query(None)) + "?" + urlencode(query)

    parts = []
    if page > 1:
        parts.append(f'<{link(min(page - 1, last))}>; rel="prev"')
    if page < last:
        parts.append(f'<{link(page + 1)}>; rel="next"')
        parts.append(f'<{link(last)}>; rel="last"')
    if page > 1:
        parts.append(f'<{link(1)}>; rel="first"')
    return chunk, ({"Link": ", ".join(parts)} if parts else {})
