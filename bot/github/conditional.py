"""Conditional requests: remember the `ETag` of a few GET answers and ask again with it.

GitHub, "Best practices for using the REST API", "Use conditional requests if appropriate"
(https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api):
"Most endpoints return an etag header [...]. If the data has not changed, you will receive a
304 Not Modified response. Making a conditional request does not count against your primary
rate limit if a 304 response is returned and the request was made while correctly authorized
with an Authorization header."

gidgethub does the protocol (`GitHubAPI(cache=...)`: it sends `If-None-Match` for a URL it
holds and answers a 304 from what it holds); this module is the mapping it uses:

- only the GETs that several jobs of one commit repeat are kept (`CACHED_PATHS`): the
  repository's config and the files that explain a finding (contents, the root tree), and the
  lists of a commit's workflow runs and of a run's artifacts;
- one cache per process, viewed per installation: an answer fetched with one installation's
  token is never given to another;
- answers are kept as JSON text and parsed anew for each caller, so nobody can change what
  the next one gets; the number of entries and the size of each are bounded.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Iterator, MutableMapping
from typing import Any, Final

from yarl import URL

CACHED_PATHS: Final = re.compile(
    r"/repos/[^/]+/[^/]+/(?:contents/.+|git/trees/[^/]+|actions/runs|actions/runs/\d+/artifacts)"
)
"""The API paths (after the base URL's own path) whose answers are kept for revalidation."""
MAX_ENTRIES: Final = 2048
MAX_ENTRY_CHARS: Final = 2 * 1024 * 1024
"""Larger answers are not kept (a config file is far smaller; the contents API stops at 1 MB)."""

Entry = tuple[str | None, str | None, Any, str | None]
"""gidgethub's cache value: (etag, last-modified, the decoded body, the next page's URL)."""


class ConditionalCache:
    """The process's ETag cache; `view(installation_id)` is what one client is given."""

    def __init__(
        self, *, api_url: str, max_entries: int = MAX_ENTRIES, max_chars: int = MAX_ENTRY_CHARS
    ) -> None:
        self._prefix = URL(api_url).path.rstrip("/")
        self._entries: OrderedDict[tuple[int, str], tuple[str | None, str | None, str, str | None]]
        self._entries = OrderedDict()
        self._max_entries = max_entries
        self._max_chars = max_chars

    def cacheable(self, url: str) -> bool:
        """Whether answers from `url` (absolute, as gidgethub fills it) are kept."""
        path = URL(url).path
        if not path.startswith(self._prefix):
            return False
        return CACHED_PATHS.fullmatch(path[len(self._prefix) :]) is not None

    def view(self, installation_id: int) -> InstallationCache:
        return InstallationCache(self, installation_id)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, installation_id: int, url: str) -> Entry:
        etag, modified, text, more = self._entries[(installation_id, url)]
        self._entries.move_to_end((installation_id, url))
        return etag, modified, json.loads(text), more

    def put(self, installation_id: int, url: str, entry: Entry) -> None:
        etag, modified, data, more = entry
        if not self.cacheable(url) or (etag is None and modified is None):
            return
        try:
            text = json.dumps(data)
        except (TypeError, ValueError):
            return
        key = (installation_id, url)
        if len(text) > self._max_chars:
            self._entries.pop(key, None)
            return
        self._entries[key] = (etag, modified, text, more)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def drop(self, installation_id: int, url: str) -> None:
        self._entries.pop((installation_id, url), None)

    def keys_of(self, installation_id: int) -> list[str]:
        return [url for (owner, url) in self._entries if owner == installation_id]


class InstallationCache(MutableMapping[str, Entry]):
    """One installation's entries of a `ConditionalCache`, as gidgethub's `cache` mapping."""

    def __init__(self, cache: ConditionalCache, installation_id: int) -> None:
        self._cache = cache
        self._installation_id = installation_id

    def __getitem__(self, url: str) -> Entry:
        if not self._cache.cacheable(url):
            raise KeyError(url)
        return self._cache.get(self._installation_id, url)

    def __setitem__(self, url: str, entry: Entry) -> None:
        self._cache.put(self._installation_id, url, entry)

    def __delitem__(self, url: str) -> None:
        self._cache.drop(self._installation_id, url)

    def __iter__(self) -> Iterator[str]:
        return iter(self._cache.keys_of(self._installation_id))

    def __len__(self) -> int:
        return len(self._cache.keys_of(self._installation_id))
