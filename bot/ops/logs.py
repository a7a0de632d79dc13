"""Structured logging: JSON lines or text, delivery and job ids on every record, secrets masked.

The ids travel in context variables: the webhook handler sets `delivery_id` for its request and
the worker sets both for the job it runs, so every log call below them (handlers, the GitHub
client, the store) carries them without passing them around. asyncio copies the context into
each task it creates, so a task started for a job keeps its ids.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any, Final, TextIO

from aiohttp.http_exceptions import HttpProcessingError

delivery_id_var: ContextVar[str | None] = ContextVar("delivery_id", default=None)
job_id_var: ContextVar[int | None] = ContextVar("job_id", default=None)

MASK: Final = "[secret]"
_MIN_SECRET_CHARS: Final = 6  # masking shorter strings would garble ordinary words
_HANDLER_NAME: Final = "release-guard"
_REVEAL_ATTR: Final = "release_guard_reveal"

# Attributes every LogRecord has; anything else on a record came from `extra=`. The reveal
# attribute is never written out: it only tells SecretMaskFilter what to leave in the message.
_STANDARD_ATTRS: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "delivery_id", "job_id", "taskName", _REVEAL_ATTR}
)


@contextlib.contextmanager
def log_context(*, delivery_id: str | None = None, job_id: int | None = None) -> Iterator[None]:
    """Attach a delivery id and/or job id to every record logged inside the block."""
    delivery_token = None if delivery_id is None else delivery_id_var.set(delivery_id)
    job_token = None if job_id is None else job_id_var.set(job_id)
    try:
        yield
    finally:
        if job_token is not None:
            job_id_var.reset(job_token)
        if delivery_token is not None:
            delivery_id_var.reset(delivery_token)


class _SecretRegistry:
    """The secret strings known to this process; installation tokens are added as minted."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def add(self, value: str) -> None:
        candidates = {value, value.replace("\n", "\\n")}
        # A PEM key could slip out one base64 line at a time (a traceback, a repr of bytes);
        # its `-----BEGIN …-----` lines are not secret.
        candidates.update(
            line.strip() for line in value.splitlines() if not line.startswith("-----")
        )
        fresh = {c for c in candidates if len(c) >= _MIN_SECRET_CHARS}
        with self._lock:
            merged = set(self._values) | fresh
            # Longest first, so a secret that contains another is masked whole.
            self._values = tuple(sorted(merged, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._values = ()

    def mask(self, text: str, *, keep: str | None = None) -> str:
        values = self._values
        if keep and not any(keep in value and value != keep for value in values):
            # Mask around each occurrence of `keep`, so that no other secret garbles it. (A
            # longer secret that contains `keep` would be cut apart and leak: then nothing is
            # kept.)
            return keep.join(self.mask(part) for part in text.split(keep))
        for value in values:
            if value in text:
                text = text.replace(value, MASK)
        return text


_registry = _SecretRegistry()


def register_secret(value: str) -> None:
    """Mask `value` in every log record from now on (webhook secret, key, tokens)."""
    _registry.add(value)


def forget_secrets() -> None:
    """Forget every registered secret (tests)."""
    _registry.clear()


def mask_secrets(text: str) -> str:
    """Return `text` with every registered secret replaced by `[secret]`."""
    return _registry.mask(text)


def revealing(value: str) -> dict[str, str]:
    """The `extra=` of the one record meant to show the operator a registered secret.

    The setup page's token is such a secret: `serve` prints it once at start, in the address
    to open (as Jupyter and Grafana print theirs), and every other record masks it. Only the
    message of the record logged with this `extra=` keeps `value`; its other fields, the
    traceback and every other record are masked as usual, and the value is not written out
    as a field of its own.
    """
    return {_REVEAL_ATTR: value}


class ContextFilter(logging.Filter):
    """Copy the current delivery and job ids onto the record (unless `extra=` set them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "delivery_id", None) is None:
            record.delivery_id = delivery_id_var.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get()
        return True


class SecretMaskFilter(logging.Filter):
    """Replace registered secret values in the message, the traceback and string extras."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        keep = getattr(record, _REVEAL_ATTR, None)
        masked = _registry.mask(message, keep=keep if isinstance(keep, str) else None)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_secrets(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, mask_secrets(value))
        return True


class ClientErrorFilter(logging.Filter):
    """Log a client's mistake that aiohttp's server reports as an error at info, in one line.

    aiohttp logs a malformed request (a bad header line, headers too long, a broken chunked
    body) and a client gone mid-request with `logger.exception`: an ERROR and a traceback
    for what is not the server's fault. Anything else it logs is left as it is.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.levelno >= logging.ERROR and isinstance(
            exc, HttpProcessingError | ConnectionError
        ):
            summary = exc.message if isinstance(exc, HttpProcessingError) else str(exc)
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {summary}"
            record.args = None
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.exc_info, record.exc_text = None, None
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, extras, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("delivery_id", "job_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        entry.update(_extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [delivery=… job=…] message key=value…` for a person at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        ids = [
            f"{name}={value}"
            for name, value in (
                ("delivery", getattr(record, "delivery_id", None)),
                ("job", getattr(record, "job_id", None)),
            )
            if value is not None
        ]
        parts = [
            time.strftime("%H:%M:%S", time.localtime(record.created)),
            f"{record.levelname:<7}",
            record.name,
        ]
        if ids:
            parts.append("[" + " ".join(ids) + "]")
        parts.append(record.getMessage())
        parts.extend(f"{k}={v}" for k, v in _extras(record).items())
        line = " ".join(parts)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def _utc(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def configure_logging(
    *,
    level: str = "info",
    fmt: str | None = None,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send the root logger's records to `stream` (stderr), as JSON or text; idempotent.

    `fmt` None picks text on a terminal and JSON otherwise (CONTRACT's LOG_FORMAT default).
    """
    stream = stream if stream is not None else sys.stderr
    for value in secrets:
        register_secret(value)
    if fmt is None:
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.addFilter(SecretMaskFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log repeats what the delivery line says; keep it for debugging only.
    # procrastinate (the PostgreSQL queue) logs every task registration, fetch and end at
    # info; the job's own lines say the same with the delivery and job ids.
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientErrorFilter) for f in server.filters):
        server.addFilter(ClientErrorFilter())
    for noisy in ("aiohttp.access", "procrastinate"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    return handler
