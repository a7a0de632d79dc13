"""Recover webhook deliveries that failed while the App was down (issue 14).

GitHub does not redeliver a failed delivery by itself; it keeps the App's deliveries, with
the outcome of each attempt, for 3 days, and redelivers one on request
(https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries).
A sweep, at start and every `RECOVERY_INTERVAL` seconds, does what that page describes:

1. Page through `GET /app/hook/deliveries`, newest first, back to the last complete sweep's
   high-water mark (less a margin) or the 3-day window, whichever is later; at most
   `max_seen` attempts per sweep.
2. Group the attempts by GUID (a redelivery is an attempt of its own, with the original
   GUID). A GUID is a candidate when none of its attempts is OK and the store has not
   recorded it: a delivery GitHub saw fail but that was recorded anyway (the answer was lost)
   needs nothing.
3. Leave out a GUID asked for within `cooldown` (its redelivery may be on its way, or another
   process asked) or already asked for `max_requests` times (it keeps failing: the audit
   trail and the log say so, and an operator decides).
4. Ask for the redelivery of the rest, oldest first, at most `max_redeliveries` per sweep,
   each GUID once, through the shared rate-limit gate; each request is counted in the store
   before it is sent, and written to the audit trail with its outcome.
5. Move the high-water mark to the newest attempt seen, only when nothing was left for the
   next sweep (the per-sweep bound, a failed request, a page that could not be read).

The mark is GitHub's `delivered_at` (GitHub's clock); the window is measured from the earlier
of our clock and the newest attempt GitHub lists, so a clock far ahead of GitHub's does not
hide the deliveries, and one far behind only widens the window (bounded by `max_seen`).

One sweeper at a time: the store's `sweep_lock` (an advisory lock on PostgreSQL, released if
the process dies; a lease row on SQLite). A sweep that finds it taken does nothing.
A failed sweep is logged, audited and counted; it never touches `/readyz`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import aiohttp

from bot import __version__
from bot.app.job_run import worker_identity
from bot.github import (
    AuthenticationFailed,
    GitHubApp,
    GitHubError,
    RateLimited,
    RateLimitGate,
    RateLimitTracker,
)
from bot.github.deliveries import (
    DELIVERIES_KEPT,
    HookDelivery,
    Malformed,
    list_deliveries,
    redeliver,
)
from bot.ops.logs import mask_secrets
from bot.ops.metrics import Metrics
from bot.retention.policy import merged_environment
from bot.settings import Settings, SettingsError
from bot.store.base import DeliveryLedger, StoreError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL: Final = 300.0
MIN_INTERVAL: Final = 30.0
MAX_INTERVAL: Final = 86_400.0
MARGIN: Final = 300.0  # seconds before the mark still read: attempts listed out of order
CLOCK_SKEW_WARNING: Final = 300.0
MALFORMED_LOGGED: Final = 5  # unreadable entries logged one by one per sweep, at most


@dataclass(frozen=True, slots=True)
class RecoveryOptions:
    """How the sweep works; `interval` None turns the periodic sweep off."""

    interval: float | None = DEFAULT_INTERVAL
    window: float = DELIVERIES_KEPT
    max_redeliveries: int = 100
    max_seen: int = 5000
    max_requests: int = 3
    cooldown: float = 900.0
    lease: float = 600.0

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, *, cwd: Path | None = None
    ) -> RecoveryOptions:
        """Read RECOVERY_INTERVAL (seconds, or `off`) from the environment over `.env`."""
        value = merged_environment(environ, cwd=cwd).get("RECOVERY_INTERVAL")
        return cls(interval=parse_interval(value))


def parse_interval(value: str | None) -> float | None:
    """RECOVERY_INTERVAL: unset is the default, `off` or `0` turn the sweep off."""
    if value is None:
        return DEFAULT_INTERVAL
    text = value.strip().lower()
    if text in ("off", "0", "false", "no"):
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise SettingsError(
            f"RECOVERY_INTERVAL must be seconds from {MIN_INTERVAL:.0f} to {MAX_INTERVAL:.0f}, "
            f"or off; got {value!r}"
        )
    return seconds


@dataclass(frozen=True, slots=True)
class Candidate:
    """A GUID with no OK attempt that the store never recorded: what a redelivery would fix."""

    guid: str
    attempt_id: int  # the newest failed attempt: what `POST …/attempts` names
    event: str
    action: str | None
    first_at: float
    attempts: int
    last_status: str
    requested_before: int = 0

    def to_json(self) -> dict[str, object]:
        return {
            "guid": self.guid,
            "attempt_id": self.attempt_id,
            "event": self.event,
            "action": self.action,
            "first_attempt_at": self.first_at,
            "attempts": self.attempts,
            "last_status": self.last_status,
            "requested_before": self.requested_before,
        }


@dataclass
class SweepReport:
    """What one sweep saw and did."""

    seen: int = 0
    malformed: int = 0
    candidates: list[Candidate] = field(default_factory=list)
    requested: list[Candidate] = field(default_factory=list)
    failed: list[tuple[Candidate, str]] = field(default_factory=list)
    waiting: int = 0  # asked for within the cooldown
    given_up: list[Candidate] = field(default_factory=list)
    deferred: int = 0  # over the per-sweep bound: next sweep
    complete: bool = True
    error: str | None = None
    skipped: bool = False  # another process holds the sweep
    newest: float | None = None

    @property
    def outcome(self) -> str:
        if self.skipped:
            return "skipped"
        if self.error is not None:
            return "failed"
        return "complete" if self.complete else "partial"


@dataclass
class _Listing:
    attempts: dict[str, list[HookDelivery]] = field(default_factory=dict)
    seen: int = 0
    malformed: int = 0
    newest: float | None = None
    complete: bool = True


class Recovery:
    """Sweeps the App's failed deliveries (see the module docstring)."""

    def __init__(
        self,
        app: GitHubApp,
        ledger: DeliveryLedger,
        options: RecoveryOptions | None = None,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        owner: str | None = None,
    ) -> None:
        self.app = app
        self.ledger = ledger
        self.options = options or RecoveryOptions()
        self.metrics = metrics
        self._clock = clock
        self.owner = owner or worker_identity()

    async def sweep(self, *, since: float | None = None, dry_run: bool = False) -> SweepReport:
        """Run one sweep; never raises for GitHub's or the store's failures (see `error`).

        `since` (seconds back from now) replaces the mark and the default window: what
        `release-guard recover --since` asks for; the mark is then left as it is. With
        `dry_run`, nothing is requested, counted or recorded: the candidates are only listed.
        """
        report = SweepReport()
        try:
            if dry_run:
                await self._sweep(report, since=since, dry_run=True)
            else:
                async with self.ledger.sweep_lock(self.owner, self.options.lease) as held:
                    if not held:
                        report.skipped = True
                        log.info("recovery sweep: another process is sweeping; skipped")
                    else:
                        await self._sweep(report, since=since, dry_run=False)
        except (GitHubError, StoreError) as exc:
            report.error = mask_secrets(str(exc))
            report.complete = False
            log.error("recovery sweep failed: %s", report.error)
            if not dry_run:
                with contextlib.suppress(StoreError):
                    await self.ledger.audit(
                        None, "recovery_failed", f"the recovery sweep failed: {report.error}"
                    )
        if not dry_run and self.metrics is not None:
            self.metrics.recovery_sweep(report.outcome, report.seen)
        return report

    async def _sweep(self, report: SweepReport, *, since: float | None, dry_run: bool) -> None:
        mark = None if since is not None else await self.ledger.recovery_mark()
        listing = await self._list(mark, since)
        report.seen, report.malformed, report.newest = (
            listing.seen,
            listing.malformed,
            listing.newest,
        )
        report.complete = listing.complete
        candidates, recent = await self._candidates(listing)
        now = self._clock()
        ready: list[Candidate] = []
        for candidate in candidates:
            if candidate.requested_before >= self.options.max_requests:
                report.given_up.append(candidate)
            elif candidate.guid in recent:
                report.waiting += 1
            else:
                ready.append(candidate)
        report.candidates = ready
        for candidate in report.given_up:
            log.warning(
                "delivery %s (%s) still failing after %d redeliveries: not asked again",
                candidate.guid,
                candidate.event,
                candidate.requested_before,
                extra={"delivery_id": candidate.guid},
            )
        bound = self.options.max_redeliveries
        if len(ready) > bound:
            report.deferred = len(ready) - bound
            report.complete = False
            log.warning(
                "recovery sweep: %d deliveries to redeliver, %d now and the rest next time",
                len(ready),
                bound,
            )
        if dry_run:
            return
        chosen = ready[:bound]
        # Counted before any is sent, in one transaction: a process that dies mid-sweep has
        # still used up its requests, never asks twice for nothing.
        if chosen:
            await self.ledger.note_redeliveries([c.guid for c in chosen])
        for candidate in chosen:
            stop = await self._request(candidate, report)
            if stop:
                report.complete = False
                break
        if report.failed:
            report.complete = False
        if report.complete and since is None and listing.newest is not None:
            await self.ledger.set_recovery_mark(min(listing.newest, now))
        await self._audit_sweep(report)
        log.info(
            "recovery sweep: %d attempts read, %d redelivery request(s), %d failed%s",
            report.seen,
            len(report.requested),
            len(report.failed),
            "" if report.complete else "; the rest next time",
            extra={"outcome": report.outcome},
        )

    async def _audit_sweep(self, report: SweepReport) -> None:
        """One audit line for a sweep that did or skipped something (quiet sweeps write none):
        what it read, asked for, left for later, and what it could not use."""
        notable = (
            (report.requested or report.failed or report.given_up or report.malformed)
            or report.deferred
            or not report.complete
        )
        if not notable:
            return
        parts = [f"read {report.seen} delivery attempt(s)"]
        parts.append(f"asked for {len(report.requested)} redelivery(ies)")
        if report.failed:
            parts.append(f"{len(report.failed)} refused")
        if report.deferred:
            parts.append(f"{report.deferred} left for the next sweep (bound)")
        if report.malformed:
            parts.append(f"{report.malformed} unreadable entr(ies) skipped")
        if report.given_up:
            parts.append(
                f"{len(report.given_up)} still failing after {self.options.max_requests} "
                "redeliveries, not asked again"
            )
        if not report.complete and not report.deferred:
            parts.append("the rest next time")
        await self.ledger.audit(
            None,
            "recovery_sweep",
            "; ".join(parts),
            {
                "outcome": report.outcome,
                "seen": report.seen,
                "requested": len(report.requested),
                "failed": len(report.failed),
                "deferred": report.deferred,
                "malformed": report.malformed,
                "waiting": report.waiting,
                "given_up": [c.guid for c in report.given_up][:50],
            },
        )

    async def _list(self, mark: float | None, since: float | None) -> _Listing:
        """Read the attempts back to the mark (or `since`), newest first, bounded."""
        listing = _Listing()
        now = self._clock()
        floor: float | None = None
        async for entry in list_deliveries(self.app.as_app()):
            listing.seen += 1
            if isinstance(entry, Malformed):
                listing.malformed += 1
                if listing.malformed <= MALFORMED_LOGGED:  # the sweep's audit line counts all
                    log.warning("recovery sweep: skipped a listed delivery: %s", entry.reason)
            else:
                if floor is None:
                    listing.newest = entry.delivered_at
                    if entry.delivered_at > now + CLOCK_SKEW_WARNING:
                        log.warning(
                            "GitHub lists a delivery %.0f s in this machine's future: "
                            "check the clock (the sweep uses GitHub's times)",
                            entry.delivered_at - now,
                        )
                    reference = min(now, entry.delivered_at)
                    floor = reference - (self.options.window if since is None else since)
                    if mark is not None:
                        floor = max(floor, mark - MARGIN)
                if entry.delivered_at < floor:
                    break
                listing.attempts.setdefault(entry.guid, []).append(entry)
            if listing.seen >= self.options.max_seen:
                listing.complete = False
                log.warning(
                    "recovery sweep: read %d delivery attempts, its bound; the rest next time",
                    listing.seen,
                )
                break
        return listing

    async def _candidates(self, listing: _Listing) -> tuple[list[Candidate], set[str]]:
        """The failed, never recorded GUIDs, oldest first; and those asked for too recently."""
        failed = {
            guid: attempts
            for guid, attempts in listing.attempts.items()
            if not any(attempt.ok for attempt in attempts)
        }
        recorded = await self.ledger.recorded_deliveries(failed) if failed else set()
        pending = {guid: a for guid, a in failed.items() if guid not in recorded}
        asked = await self.ledger.redeliveries(pending) if pending else {}
        now = self._clock()
        recent = {
            guid
            for guid, record in asked.items()
            if now - record.last_requested_at < self.options.cooldown
        }
        candidates = []
        for guid, attempts in pending.items():
            newest = max(attempts, key=lambda a: (a.delivered_at, a.id))
            record = asked.get(guid)
            candidates.append(
                Candidate(
                    guid=guid,
                    attempt_id=newest.id,
                    event=newest.event,
                    action=newest.action,
                    first_at=min(a.delivered_at for a in attempts),
                    attempts=len(attempts),
                    last_status=f"{newest.status} ({newest.status_code})",
                    requested_before=record.requests if record is not None else 0,
                )
            )
        candidates.sort(key=lambda c: (c.first_at, c.guid))  # oldest first
        return candidates, recent

    async def _request(self, candidate: Candidate, report: SweepReport) -> bool:
        """Ask for one redelivery; return True when the sweep must stop (GitHub refuses all)."""
        data = {"attempt_id": candidate.attempt_id, "event": candidate.event}
        try:
            await redeliver(self.app.as_app(), candidate.attempt_id)
        except GitHubError as exc:
            reason = mask_secrets(str(exc))
            report.failed.append((candidate, reason))
            if self.metrics is not None:
                self.metrics.redelivery("failed")
            log.error(
                "redelivery of %s refused: %s",
                candidate.guid,
                reason,
                extra={"delivery_id": candidate.guid},
            )
            await self.ledger.audit(
                None,
                "redelivery_failed",
                f"asked GitHub to redeliver it; refused: {reason}",
                {**data, "status_code": exc.status_code},
                delivery_id=candidate.guid,
            )
            return isinstance(exc, RateLimited | AuthenticationFailed)
        report.requested.append(candidate)
        if self.metrics is not None:
            self.metrics.redelivery("requested")
        log.info(
            "asked GitHub to redeliver %s (%s, last attempt %s)",
            candidate.guid,
            candidate.event,
            candidate.last_status,
            extra={"delivery_id": candidate.guid},
        )
        await self.ledger.audit(
            None,
            "redelivery_requested",
            f"it failed ({candidate.last_status}) and was never recorded: asked GitHub to "
            "redeliver it",
            data,
            delivery_id=candidate.guid,
        )
        return False

    async def run(self, stop: asyncio.Event) -> None:
        """Sweep at once, then every `interval` seconds until `stop` (nothing if off)."""
        interval = self.options.interval
        if interval is None:
            log.info("the recovery sweep of failed deliveries is off (RECOVERY_INTERVAL=off)")
            return
        while not stop.is_set():
            try:
                await self.sweep()
            except Exception:  # never let a bug here take the server down
                log.exception("recovery sweep crashed; trying again in %.0f s", interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


@contextlib.asynccontextmanager
async def recovery_chores(recovery: Recovery | None) -> AsyncIterator[None]:
    """Run `recovery`'s periodic sweep beside the server or the worker, while in the block."""
    if recovery is None or recovery.options.interval is None:
        if recovery is not None:
            log.info("the recovery sweep of failed deliveries is off (RECOVERY_INTERVAL=off)")
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(recovery.run(stop), name="recovery sweep")
    try:
        yield
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def build_recovery(
    settings: Settings,
    session: aiohttp.ClientSession,
    store: object,
    options: RecoveryOptions | None,
    *,
    metrics: Metrics | None = None,
    rate_limit_gate: RateLimitGate | None = None,
) -> Recovery | None:
    """The process's recovery sweep, or None (turned off, no App credentials, or a store
    that cannot keep its mark)."""
    if options is None or settings.app_id is None or settings.private_key is None:
        return None
    if not isinstance(store, DeliveryLedger):
        log.warning("this database cannot keep the recovery sweep's state: sweep off")
        return None
    app = GitHubApp(
        app_id=settings.app_id,
        private_key=settings.private_key,
        session=session,
        api_url=settings.github_api_url,
        requester=f"release-guard/{__version__}",
        rate_limits=RateLimitTracker(on_update=metrics.rate_limit) if metrics else None,
        observer=metrics,
        rate_limit_gate=rate_limit_gate,
    )
    return Recovery(app, store, options, metrics=metrics)
