"""Read a webhook body that nobody has authenticated yet, without letting it eat the memory.

Until the `X-Hub-Signature-256` HMAC is checked, a body is just bytes from anyone on the
network. Three things bound what such bytes cost:

- every body's bytes are counted, as they arrive, against one `ByteBudget` shared by all
  requests: past it, the request is refused (`Busy`, a 503 with `Retry-After`) instead of
  being held, so many large bodies at once cannot push the process past the budget;
- the HMAC is computed chunk by chunk while reading (no second pass, nothing off the loop),
  and a missing or malformed signature header is refused before a byte of the body is read;
- the whole body must arrive within a deadline (`TimedOut`): a sender that dribbles bytes
  does not hold a connection and a share of the budget for ever.

GitHub signs the raw body with HMAC-SHA256 and sends `sha256=<64 hex digits>`
(https://docs.github.com/webhooks/using-webhooks/validating-webhook-deliveries).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Final

from aiohttp import StreamReader
from aiohttp.http_exceptions import HttpProcessingError

SIGNATURE_HEADER: Final = "X-Hub-Signature-256"
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")


class ByteBudget:
    """The bytes of unfinished request bodies held at once, across every request.

    Single-threaded by design: only the event loop takes and gives back.
    """

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("a byte budget must be positive")
        self.limit = limit
        self.held = 0
        self.given_back = 0  # in total, since the start

    def take(self, size: int) -> bool:
        """Reserve `size` bytes; False (nothing reserved) when that would pass the limit."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give_back(self, size: int) -> None:
        self.held -= size
        self.given_back += size
        if self.held < 0:  # a caller gave back more than it took: a bug, not a client's doing
            raise AssertionError("byte budget underflow")


class BodyRefused(Exception):
    """The body was not (fully) read; the subclass says why."""


class TooLarge(BodyRefused):
    """The body passed the size limit (413)."""


class Busy(BodyRefused):
    """The shared byte budget is spent by other bodies in flight (503 with Retry-After)."""


class TimedOut(BodyRefused):
    """The body did not arrive within the deadline (408)."""


class ClientGone(BodyRefused):
    """The client closed the connection before the end of the body (nobody to answer)."""


class Unreadable(BodyRefused):
    """The body's framing is broken (a bad chunked encoding, a short body): 400."""


@dataclass(slots=True)
class Body:
    """A body read in full, with its bytes still counted in the budget until `release`."""

    data: bytearray
    signed: bool  # the HMAC matched (always False when no secret was given)
    _budget: ByteBudget
    _held: int

    def release(self) -> None:
        """Give the body's bytes back to the budget (idempotent) and drop them."""
        if self._held:
            self._budget.give_back(self._held)
            self._held = 0
        self.data = bytearray()


def signature_well_formed(header: str | None) -> bool:
    """Whether `header` can be a GitHub signature at all (`sha256=` and 64 hex digits)."""
    return header is not None and _SIGNATURE.fullmatch(header) is not None


async def read_body(
    content: StreamReader,
    *,
    secret: bytes | None,
    signature: str | None,
    budget: ByteBudget,
    max_size: int,
    deadline: float,
) -> Body:
    """Read the whole body, checking its HMAC on the way; raise a `BodyRefused` if it cannot.

    `deadline` is in seconds for the whole body. Every byte read stays counted in `budget`
    until the returned body is released; on a refusal, what was taken is given back here.
    """
    mac = hmac.new(secret, digestmod=hashlib.sha256) if secret is not None else None
    data = bytearray()
    body = Body(data, False, budget, 0)
    # A small body usually arrives with the headers: when all of it is buffered already, no
    # read below can wait, and the deadline (a timer per request) is not armed.
    guard = contextlib.nullcontext() if content.is_eof() else asyncio.timeout(deadline)
    complete = False
    try:
        async with guard:
            while chunk := await content.readany():
                size = len(chunk)
                if len(data) + size > max_size:
                    raise TooLarge
                if not budget.take(size):
                    raise Busy
                body._held += size
                data += chunk
                if mac is not None:
                    mac.update(chunk)
        complete = True
    except TimeoutError:
        raise TimedOut from None
    except ConnectionError:
        # aiohttp sets ConnectionResetError("Connection lost") on the payload when the peer
        # goes away mid-body (its ClientConnectionResetError is one too).
        raise ClientGone from None
    except HttpProcessingError as exc:  # a broken chunked encoding, a short body
        raise Unreadable(exc.message) from None
    finally:
        if not complete:  # refused, or cancelled (the server shuts down, handler cancelled)
            body.release()
    if mac is not None and signature is not None:
        expected = "sha256=" + mac.hexdigest()
        body.signed = hmac.compare_digest(expected.encode(), signature.encode())
    return body
