"""Count what the App does, for `GET /metrics` (Prometheus text format).

One `Metrics` per process (per app instance in tests), each with its own
`prometheus_client.CollectorRegistry`, never the library's global one: two apps in one test
process do not share counts. Everything here is cheap and synchronous; the web handler, the
worker and the GitHub transport call it inline.

Labels are kept to bounded sets: events and outcomes only from deliveries whose signature
was checked, rules only from the stable rule ids, installations only from GitHub's answers.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from bot import __version__
from bot.engine.model import Rule
from bot.github.ratelimit import RateLimitState
from bot.store.base import JobState

log = logging.getLogger(__name__)

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The classic text format, which every Prometheus version scrapes (what `render` writes)."""
FINDINGS_KEY: Final = "findings_by_rule"
"""The audit-data key under which a job's report step passes `report.findings_by_rule()`."""

_RULES: Final = frozenset(rule.value for rule in Rule)
_TRUSTED_OUTCOMES: Final = frozenset({"queued", "duplicate", "ignored", "unavailable"})
_CONCLUSION = re.compile(r"(success|failure|neutral|cancelled|skipped|timed_out|action_required)\b")
_STAGE = re.compile(r"[a-z][a-z0-9_]{0,39}")
_DURATION_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


def conclusion_of(summary: str | None) -> str:
    """Return the check-run conclusion a job's summary starts with (`failure: …`), or `none`."""
    if summary:
        match = _CONCLUSION.match(summary)
        if match:
            return match.group(1)
    return "none"


def installation_label(installation_id: int | None, *, authenticated: bool = True) -> str:
    """`app` for the App's own JWT calls, `storage` for uncredentialed downloads, else the id."""
    if not authenticated:
        return "storage"
    return "app" if installation_id is None else str(installation_id)


class Metrics:
    """The App's counters, gauges and histograms, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.deliveries = Counter(
            "release_guard_deliveries",
            "Webhook deliveries answered, by event and outcome (queued, duplicate, ignored, "
            "unavailable, bad_signature, malformed, too_large, busy, timeout, disconnected). "
            "Unverified deliveries count under event 'unverified'.",
            ["event", "outcome"],
            registry=r,
        )
        self.jobs = Counter(
            "release_guard_jobs",
            "Job runs that ended, by kind, state (done, failed, retried, interrupted, "
            "lease_lost, store_error) and check-run conclusion.",
            ["kind", "state", "conclusion"],
            registry=r,
        )
        self.jobs_running = Gauge(
            "release_guard_jobs_running", "Jobs running in this process.", registry=r
        )
        self.jobs_pending = Gauge(
            "release_guard_jobs_pending",
            "Jobs queued and running in the whole App, by state (read from the database at "
            "each scrape: the same from every process; the figure to scale workers on).",
            ["state"],
            registry=r,
        )
        self._pending: Callable[[], Awaitable[Mapping[JobState, int]]] | None = None
        self.job_duration = Histogram(
            "release_guard_job_duration_seconds",
            "How long one run of a job took, by kind.",
            ["kind"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.stages = Counter(
            "release_guard_job_stages",
            "Audit-trail stages jobs entered, by kind and stage.",
            ["kind", "stage"],
            registry=r,
        )
        self.stage_duration = Histogram(
            "release_guard_job_stage_duration_seconds",
            "Time spent in a stage, from entering it to the next stage or the end of the run.",
            ["kind", "stage"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.findings = Counter(
            "release_guard_findings",
            "Findings reported on check runs, by rule.",
            ["rule"],
            registry=r,
        )
        self.github_requests = Counter(
            "release_guard_github_requests",
            "Requests sent to GitHub, by installation ('app': the App's JWT calls; 'storage': "
            "downloads), method and status ('error': no answer).",
            ["installation", "method", "status"],
            registry=r,
        )
        self.github_retries = Counter(
            "release_guard_github_retries",
            "Requests to GitHub tried again, by installation and reason.",
            ["installation", "reason"],
            registry=r,
        )
        self.rate_limit_remaining = Gauge(
            "release_guard_github_rate_limit_remaining",
            "The last x-ratelimit-remaining GitHub reported, by installation and resource.",
            ["installation", "resource"],
            registry=r,
        )
        self.rate_limit_limit = Gauge(
            "release_guard_github_rate_limit_limit",
            "The last x-ratelimit-limit GitHub reported, by installation and resource.",
            ["installation", "resource"],
            registry=r,
        )
        self.rate_limit_reset = Gauge(
            "release_guard_github_rate_limit_reset_timestamp_seconds",
            "When the rate-limit window resets (epoch seconds), by installation and resource.",
            ["installation", "resource"],
            registry=r,
        )
        self.retained_bytes = Gauge(
            "release_guard_retained_bytes",
            "Bytes of failing artifacts kept in the artifact store.",
            registry=r,
        )
        self.recovery_sweeps = Counter(
            "release_guard_recovery_sweeps",
            "Sweeps for failed webhook deliveries, by outcome (complete, partial, failed, "
            "skipped: another process was sweeping).",
            ["outcome"],
            registry=r,
        )
        self.recovery_seen = Counter(
            "release_guard_recovery_deliveries_seen",
            "Delivery attempts the sweeps read from GitHub's list (malformed ones included).",
            registry=r,
        )
        self.redeliveries = Counter(
            "release_guard_redeliveries",
            "Redeliveries asked of GitHub, by outcome (requested, failed).",
            ["outcome"],
            registry=r,
        )
        self.build_info = Gauge(
            "release_guard_build_info",
            "Always 1; the version label says which release-guard runs.",
            ["version"],
            registry=r,
        )
        self.build_info.labels(version=__version__).set(1)

    # -- exposition -------------------------------------------------------------------------

    def render(self) -> bytes:
        """Return every metric in the Prometheus text format."""
        return generate_latest(self.registry)

    def watch_queue(self, pending: Callable[[], Awaitable[Mapping[JobState, int]]]) -> None:
        """Read the queue's depth with `pending` (`Store.pending_jobs`) at each scrape."""
        self._pending = pending

    async def _read_queue(self) -> None:
        if self._pending is None:
            return
        try:
            counts = await self._pending()
        except Exception:  # a scrape answers even when the database does not
            log.warning("cannot read the queue's depth for /metrics", exc_info=True)
            return
        for state, count in counts.items():
            self.jobs_pending.labels(state=state.value).set(count)

    async def handle(self, request: web.Request) -> web.Response:
        """Answer `GET /metrics` (an aiohttp handler)."""
        await self._read_queue()
        response = web.Response(body=self.render())
        response.headers["Content-Type"] = CONTENT_TYPE
        return response

    # -- deliveries -------------------------------------------------------------------------

    def delivery(self, event: str, outcome: str) -> None:
        """Count one answered delivery; the event name counts only once the signature held."""
        shown = event if outcome in _TRUSTED_OUTCOMES and event else "unverified"
        self.deliveries.labels(event=shown, outcome=outcome).inc()

    # -- jobs -------------------------------------------------------------------------------

    def job_started(self) -> None:
        self.jobs_running.inc()

    def job_ended(self, kind: str, state: str, summary: str | None, seconds: float) -> None:
        """Count one finished run of a job (`summary` gives its conclusion)."""
        self.jobs_running.dec()
        self.jobs.labels(kind=kind, state=state, conclusion=conclusion_of(summary)).inc()
        self.job_duration.labels(kind=kind).observe(max(seconds, 0.0))

    def stage_entered(self, kind: str, stage: str, data: Mapping[str, Any]) -> None:
        """Count an audit stage; a `findings_by_rule` entry in its data counts findings."""
        self.stages.labels(kind=kind, stage=_stage(stage)).inc()
        found = data.get(FINDINGS_KEY)
        if isinstance(found, Mapping):
            for rule, count in found.items():
                if rule in _RULES and isinstance(count, int) and count > 0:
                    self.findings.labels(rule=rule).inc(count)

    def stage_ended(self, kind: str, stage: str, seconds: float) -> None:
        self.stage_duration.labels(kind=kind, stage=_stage(stage)).observe(max(seconds, 0.0))

    # -- GitHub -----------------------------------------------------------------------------

    def answered(
        self, *, installation_id: int | None, authenticated: bool, method: str, status: int | None
    ) -> None:
        """Count one request sent to GitHub (a `bot.github.transport.TransportObserver`)."""
        self.github_requests.labels(
            installation=installation_label(installation_id, authenticated=authenticated),
            method=method.upper(),
            status="error" if status is None else str(status),
        ).inc()

    def retrying(self, *, installation_id: int | None, authenticated: bool, reason: str) -> None:
        """Count one retry (a `bot.github.transport.TransportObserver`)."""
        self.github_retries.labels(
            installation=installation_label(installation_id, authenticated=authenticated),
            reason=reason,
        ).inc()

    def rate_limit(self, installation_id: int | None, state: RateLimitState) -> None:
        """Record the rate limit GitHub reported (a `RateLimitTracker(on_update=...)` hook)."""
        labels = {
            "installation": installation_label(installation_id),
            "resource": state.resource or "core",
        }
        self.rate_limit_remaining.labels(**labels).set(state.remaining)
        self.rate_limit_limit.labels(**labels).set(state.limit)
        self.rate_limit_reset.labels(**labels).set(state.reset)

    # -- retention --------------------------------------------------------------------------

    def recovery_sweep(self, outcome: str, seen: int) -> None:
        """Count one recovery sweep and the delivery attempts it read."""
        self.recovery_sweeps.labels(outcome).inc()
        self.recovery_seen.inc(seen)

    def redelivery(self, outcome: str) -> None:
        """Count one redelivery request: `requested` (GitHub accepted it) or `failed`."""
        self.redeliveries.labels(outcome).inc()

    def set_retained_bytes(self, total: int) -> None:
        """Set the bytes the artifact store keeps (the retention store calls this)."""
        self.retained_bytes.set(max(total, 0))


def _stage(stage: str) -> str:
    """A stage name as a label: the audit trail's lowercase words, anything else `other`."""
    return stage if _STAGE.fullmatch(stage) else "other"
