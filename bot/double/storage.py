"""The storage host: blobs behind short-lived signed URLs, like GitHub's artifact storage.

GitHub answers a download with a 302 to a URL that "expires after 1 minute"
(https://docs.github.com/en/rest/actions/artifacts#download-an-artifact). That URL carries its
own signature, and storage services refuse a request that brings a second credential
(S3: 400 "Only one auth mechanism allowed"), which is what happens to a client that forwards
its `Authorization` header across the redirect.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


def _error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


@dataclass
class Storage:
    """Signs URLs to blobs and serves them; `lookup` finds a blob's bytes and media type."""

    clock: Callable[[], float]
    lookup: Callable[[str], tuple[bytes, str] | None]
    base_url: str = ""
    ttl: float = 60.0
    chunked: bool = False  # answer without Content-Length, as a streaming blob store may
    _key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def _signature(self, blob_id: str, expires: int) -> str:
        return hmac.new(self._key, f"{blob_id}:{expires}".encode(), hashlib.sha256).hexdigest()

    def signed_url(self, blob_id: str) -> str:
        """Return a URL to `blob_id` that works for `ttl` seconds, with no other credential."""
        expires = int(self.clock() + self.ttl)
        return (
            f"{self.base_url}/blobs/{blob_id}?se={expires}&sig={self._signature(blob_id, expires)}"
        )

    async def serve(self, request: web.Request) -> web.StreamResponse:
        if "Authorization" in request.headers:
            return _error(
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the signature query parameter or the "
                "Authorization header should be specified",
            )
        blob_id = request.match_info["blob_id"]
        try:
            expires = int(request.query["se"])
            signature = request.query["sig"]
        except (KeyError, ValueError):
            return _error(403, "AccessDenied", "Request is not signed")
        if not hmac.compare_digest(signature, self._signature(blob_id, expires)):
            return _error(403, "SignatureDoesNotMatch", "The request signature does not match")
        if expires < self.clock():
            return _error(403, "AccessDenied", "Request has expired")
        blob = self.lookup(blob_id)
        if blob is None:
            return _error(404, "NoSuchKey", "The specified key does not exist.")
        data, content_type = blob
        if not self.chunked:
            return web.Response(body=data, content_type=content_type)
        response = web.StreamResponse(headers={"Content-Type": content_type})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(data), 16 * 1024):
            await response.write(data[start : start + 16 * 1024])
        await response.write_eof()
        return response
