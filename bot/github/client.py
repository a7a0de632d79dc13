"""A GitHub REST client for one identity: gidgethub's API over our transport, plus downloads.

`getitem`, `getiter`, `post`, `patch`, `put` and `delete` are gidgethub's own (URI templates,
pagination through the `Link` header); only the request underneath is replaced, so each one
gets the timeout, the retries, the token refresh and the typed errors of `bot.github`.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import gidgethub.aiohttp
from yarl import URL

from bot.github.conditional import InstallationCache
from bot.github.download import stream_to_file
from bot.github.errors import ArtifactGone, GitHubError
from bot.github.responses import error_for, message_of
from bot.github.transport import Authenticator, Reply, Transport, read_reply

OCTET_STREAM: Final = "application/octet-stream"
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_SEND_ONCE: ContextVar[bool] = ContextVar("release_guard_send_once", default=False)
"""Set by `post_once` for the request it makes (a context variable: per task, so concurrent
requests of the same client keep their retries)."""


@dataclass(frozen=True, slots=True)
class _Redirect:
    location: URL


@dataclass(frozen=True, slots=True)
class _Streamed:
    size: int


class GitHubClient(gidgethub.aiohttp.GitHubAPI):
    """Talks to GitHub as the App (JWT) or as one installation (its token only)."""

    def __init__(
        self,
        *,
        transport: Transport,
        auth: Authenticator,
        base_url: str,
        requester: str,
        cache: InstallationCache | None = None,
    ) -> None:
        """`cache`, when given, makes the GETs it keeps conditional (`bot.github.conditional`)."""
        super().__init__(transport.session, requester, base_url=base_url, cache=cache)
        self._transport = transport
        self._auth = auth

    @property
    def installation_id(self) -> int | None:
        """The installation this client speaks for (None: the App itself)."""
        return self._auth.installation_id

    async def _request(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes = b""
    ) -> tuple[int, Mapping[str, str], bytes]:
        reply = await self._transport.send(
            method,
            url,
            headers=headers,
            body=body,
            auth=self._auth,
            consume=read_reply,
            repeat=not _SEND_ONCE.get(),
        )
        if reply.status >= 300 and reply.status != 304:
            raise self._error(reply, method, url)
        return reply.status, reply.headers, reply.body

    async def post_once(self, url: str, *, data: Any) -> Any:
        """`post` that is never sent a second time after a 5xx, timeout or dropped connection.

        For requests that create something (an issue): such a failure may hide a success, so
        `GitHubUnavailable` is raised at once and the caller looks for what it created before
        it tries again.
        """
        token = _SEND_ONCE.set(True)
        try:
            return await self.post(url, data=data)
        finally:
            _SEND_ONCE.reset(token)

    def _error(self, reply: Reply, method: str, url: str | URL) -> GitHubError:
        return error_for(
            reply.status,
            reply.headers,
            reply.body,
            method=method,
            path=URL(url).path,
            as_app=self._auth.installation_id is None,
        )

    async def sleep(self, seconds: float) -> None:
        await self._transport.sleep(seconds)

    async def download(
        self, url: str, dest: Path, *, max_bytes: int, accept: str = OCTET_STREAM
    ) -> int:
        """Download an artifact's zip or a release asset into `dest`; return its size.

        GitHub answers with a 302 to a short-lived signed URL on a storage host
        (https://docs.github.com/en/rest/actions/artifacts#download-an-artifact,
        https://docs.github.com/en/rest/releases/assets#get-a-release-asset, which may also
        stream the bytes directly). The redirect is followed here, without the
        `Authorization` header: the URL carries its own signature, and storage hosts refuse
        a second credential. 404 and 410 raise `ArtifactGone`; more than `max_bytes` raises
        `DownloadTooLarge`, and neither leaves a file behind.
        """
        api_url = URL(gidgethub.sansio.format_url(url, {}, base_url=self.base_url))
        timeout = aiohttp.ClientTimeout(
            total=self._transport.policy.download_timeout,
            sock_connect=self._transport.policy.timeout,
            sock_read=self._transport.policy.timeout,
        )

        async def locate(response: aiohttp.ClientResponse) -> _Redirect | _Streamed | Reply:
            if response.status in _REDIRECTS and "location" in response.headers:
                return _Redirect(api_url.join(URL(response.headers["location"])))
            if response.status == 200 and response.content_type != "application/json":
                return _Streamed(
                    await stream_to_file(
                        response, dest, max_bytes=max_bytes, method="GET", path=api_url.path
                    )
                )
            return await read_reply(response)

        found = await self._transport.send(
            "GET",
            str(api_url),
            headers={"accept": accept, "user-agent": self.requester},
            auth=self._auth,
            consume=locate,
            timeout=timeout,
        )
        if isinstance(found, _Streamed):
            return found.size
        if isinstance(found, Reply):
            raise self._download_error(found, api_url, via="the API")

        async def fetch(response: aiohttp.ClientResponse) -> _Streamed | Reply:
            if response.status == 200:
                return _Streamed(
                    await stream_to_file(
                        response, dest, max_bytes=max_bytes, method="GET", path=api_url.path
                    )
                )
            return await read_reply(response)

        stored = await self._transport.send(
            "GET",
            str(found.location),
            headers={"user-agent": self.requester},
            auth=None,  # the signed URL is the credential; never forward the token
            consume=fetch,
            timeout=timeout,
        )
        if isinstance(stored, Reply):
            raise self._download_error(stored, api_url, via="the storage host")
        return stored.size

    def _download_error(self, reply: Reply, api_url: URL, *, via: str) -> GitHubError:
        if reply.status in (404, 410):
            said = message_of(reply.body) or "gone"
            return ArtifactGone(
                f"the download has expired or was deleted ({said}, from {via})",
                status_code=reply.status,
                method="GET",
                path=api_url.path,
            )
        if reply.status == 200:
            return GitHubError(
                "expected a redirect or the file's bytes, got JSON: for a release asset "
                f"ask for `accept={OCTET_STREAM!r}`",
                status_code=200,
                method="GET",
                path=api_url.path,
            )
        if via == "the API":
            return self._error(reply, "GET", api_url)
        return GitHubError(
            f"the storage host refused the download ({message_of(reply.body) or 'no detail'})",
            status_code=reply.status,
            method="GET",
            path=api_url.path,
        )
