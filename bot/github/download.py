"""Stream a response body to a file, never past a byte limit, never leaving a partial file."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import aiohttp

from bot.github.errors import DownloadTooLarge

CHUNK_SIZE: Final = 64 * 1024


def partial_path(dest: Path) -> Path:
    """Return where a download into `dest` is written until it is complete."""
    return dest.with_name(f".{dest.name}.part")


async def stream_to_file(
    response: aiohttp.ClientResponse, dest: Path, *, max_bytes: int, method: str, path: str
) -> int:
    """Write the body of `response` to `dest` and return its size.

    The body goes to a hidden `.part` file beside `dest`, renamed into place once complete;
    on any failure (the limit, a dropped connection, cancellation) the part file is removed.
    """
    declared = response.content_length
    if declared is not None and declared > max_bytes:
        raise DownloadTooLarge(
            f"the download is {declared} bytes, more than the {max_bytes}-byte limit",
            max_bytes=max_bytes,
            method=method,
            path=path,
        )
    part = partial_path(dest)
    written = 0
    try:
        with part.open("wb") as out:
            async for chunk in response.content.iter_chunked(CHUNK_SIZE):
                written += len(chunk)
                if written > max_bytes:
                    raise DownloadTooLarge(
                        f"the download went past the {max_bytes}-byte limit; stopped",
                        max_bytes=max_bytes,
                        method=method,
                        path=path,
                    )
                out.write(chunk)
        part.replace(dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return written
