"""The App's periodic retention chores: retry pending retentions, and run gc.

`serve` and `worker` run them beside the job worker: pending retentions are looked at every
`tick` seconds (each has its own backoff), gc runs every `gc_interval` seconds. A failure is
logged and the next round tries again; stopping cancels the chores between two steps of
the store (a write in flight is atomic, so nothing is left half done).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Final

from bot.retention.gc import GcReport, collect_garbage
from bot.retention.retainer import Retainer

log = logging.getLogger(__name__)

TICK: Final = 60.0
GC_INTERVAL: Final = 3600.0


async def collect_and_report(
    retainer: Retainer, *, on_gc: Callable[[GcReport], None] | None = None
) -> GcReport | None:
    """Run one gc and log what it did; None when it failed (logged: the next one retries)."""
    try:
        report = await collect_garbage(retainer)
    except Exception:
        log.exception("retention gc failed; it runs again at the next period")
        return None
    if on_gc is not None:
        on_gc(report)
    if report.deleted or report.warnings:
        log.info(
            "retention gc deleted %d item(s), %d bytes freed; %d record(s) remain",
            len(report.deleted),
            report.freed_bytes,
            report.remaining_records,
            extra={"warnings": report.warnings},
        )
    return report


async def run_chores(
    retainer: Retainer,
    *,
    tick: float = TICK,
    gc_interval: float | None = GC_INTERVAL,
    on_gc: Callable[[GcReport], None] | None = None,
) -> None:
    """Retry pending retentions every `tick` seconds and run gc every `gc_interval`, forever.

    The first gc runs at the first tick, so `on_gc` (the retained-bytes gauge) learns the
    store's size soon after start rather than an interval later. With `gc_interval` None no
    gc runs here (on PostgreSQL it is a periodic task that one worker of all runs).
    """
    since_gc = gc_interval or 0.0
    while True:
        await asyncio.sleep(tick)
        since_gc += tick
        retried = await retainer.retry_pending()
        if retried:
            kept = sum(1 for ref in retried if ref.kept)
            log.info("retried %d pending retention(s): %d kept", len(retried), kept)
        if gc_interval is None or since_gc < gc_interval:
            continue
        since_gc = 0.0
        await collect_and_report(retainer, on_gc=on_gc)


@contextlib.asynccontextmanager
async def retention_chores(
    retainer: Retainer | None,
    *,
    tick: float = TICK,
    gc_interval: float | None = GC_INTERVAL,
    on_gc: Callable[[GcReport], None] | None = None,
) -> AsyncIterator[None]:
    """Run `run_chores` in the background for the duration of the block (None: nothing)."""
    if retainer is None:
        yield
        return
    task = asyncio.create_task(
        run_chores(retainer, tick=tick, gc_interval=gc_interval, on_gc=on_gc)
    )
    try:
        yield
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:  # pragma: no cover - run_chores catches what it can
            log.exception("the retention chores stopped")
