"""The App's webhook deliveries, as GitHub keeps them: list them, and ask for a redelivery.

Both calls are the App's own (its JWT), through the shared transport: the same retries, the
same rate-limit gate as every other request of the process.

- `GET /app/hook/deliveries` lists one entry per delivery *attempt*, newest first, with
  cursor pagination through the `Link` header (the `cursor` parameter; no page numbers).
  A redelivery is a new entry with `redelivery: true` and the original `guid`, so one GUID
  may have several entries. An attempt failed when its `status` is not `OK`.
  https://docs.github.com/en/rest/apps/webhooks#list-deliveries-for-an-app-webhook
  https://docs.github.com/en/webhooks/using-webhooks/handling-failed-webhook-deliveries
- `POST /app/hook/deliveries/{delivery_id}/attempts` (the entry's numeric `id`, not the
  GUID) redelivers that delivery, with its original GUID and payload; GitHub answers 202.
  https://docs.github.com/en/rest/apps/webhooks#redeliver-a-delivery-for-an-app-webhook
- GitHub keeps deliveries for 3 days; older ones cannot be listed or redelivered.
  https://docs.github.com/en/webhooks/testing-and-troubleshooting-webhooks/redelivering-webhooks
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from bot.github.client import GitHubClient

DELIVERIES_KEPT: Final = 3 * 86_400.0
"""How long GitHub keeps an App's deliveries (and so how far back a redelivery can go)."""
PER_PAGE: Final = 100
GUID_MAX: Final = 100  # GUIDs are 36 characters; anything much longer is not one


@dataclass(frozen=True, slots=True)
class HookDelivery:
    """One delivery attempt as `GET /app/hook/deliveries` lists it (the fields we rely on)."""

    id: int
    guid: str
    delivered_at: float
    status: str
    status_code: int
    redelivery: bool
    event: str
    action: str | None

    @property
    def ok(self) -> bool:
        """Whether GitHub counts this attempt delivered: `status` "OK", or a 2xx answer."""
        return self.status == "OK" or 200 <= self.status_code < 300


@dataclass(frozen=True, slots=True)
class Malformed:
    """A listed entry that is not a delivery as documented: skipped, and said why."""

    reason: str


def parse_delivery(item: Any) -> HookDelivery | Malformed:
    """Read one listed entry; fields GitHub added since are ignored, missing ones refused."""
    if not isinstance(item, dict):
        return Malformed(f"an entry is a {type(item).__name__}, not an object")
    ident, guid, at = item.get("id"), item.get("guid"), item.get("delivered_at")
    if not isinstance(ident, int) or isinstance(ident, bool) or ident <= 0:
        return Malformed("an entry has no numeric id")
    if not isinstance(guid, str) or not guid.strip() or len(guid) > GUID_MAX:
        return Malformed(f"entry {ident} has no guid")
    if not isinstance(at, str):
        return Malformed(f"entry {ident} has no delivered_at")
    try:
        delivered = datetime.fromisoformat(at)
    except ValueError:
        return Malformed(f"entry {ident} has an unreadable delivered_at")
    if delivered.tzinfo is None:
        return Malformed(f"entry {ident} has a delivered_at without a time zone")
    status, code = item.get("status"), item.get("status_code")
    if not isinstance(status, str) or not isinstance(code, int) or isinstance(code, bool):
        return Malformed(f"entry {ident} has no status or status_code")
    event, action = item.get("event"), item.get("action")
    return HookDelivery(
        id=ident,
        guid=guid,
        delivered_at=delivered.timestamp(),
        status=status,
        status_code=code,
        redelivery=item.get("redelivery") is True,
        event=event if isinstance(event, str) else "",
        action=action if isinstance(action, str) else None,
    )


async def list_deliveries(
    client: GitHubClient, *, per_page: int = PER_PAGE
) -> AsyncIterator[HookDelivery | Malformed]:
    """Yield the App's delivery attempts, newest first, one page fetched at a time.

    Stop iterating to stop fetching: the next page is asked for only when needed. `client`
    must be the App's own (`GitHubApp.as_app()`).
    """
    async for item in client.getiter(f"/app/hook/deliveries?per_page={per_page}"):
        yield parse_delivery(item)


async def redeliver(client: GitHubClient, delivery_id: int) -> None:
    """Ask GitHub to redeliver the attempt `delivery_id` (raises `GitHubError` if refused)."""
    await client.post(
        "/app/hook/deliveries/{delivery_id}/attempts", {"delivery_id": delivery_id}, data=b""
    )
