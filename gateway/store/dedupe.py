"""The dedupe memory: message ids seen within the window, oldest first, bounded in count.

Kept in memory for the hot path (a set probe an event); the store persists each commit's
new ids so a restart can load them back. The ids sit in one set, and in the order they came
as the `new_ids` lists the callers pass (one per group commit): expiry and eviction drop
whole lists with one C-level `difference_update` each. (A dict of id -> time, evicted key
by key, cost 3-4x more per id at two million ids: rehashing and Python-level deletes, all
under the GIL.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class SeenIds:
    def __init__(self, max_ids: int):
        self.max_ids = max_ids
        self._ids: set[str] = set()
        self._lists: deque[tuple[float, list[str]]] = deque()  # (seen at, ids), oldest first

    def __len__(self) -> int:
        return len(self._ids)

    def admit(self, ids: list[str], now: float, new_ids: list[str]) -> list[bool] | None:
        """Record the new ones among `ids` as seen at `now` (added to `new_ids`, the caller's
        list for one commit). None when all were new (the common case, answered by two C
        calls); else, for each id, whether it was new."""
        seen = self._ids
        if seen.isdisjoint(ids):
            before = len(seen)
            seen.update(ids)
            if len(seen) - before == len(ids):  # none repeated within the call either
                self._remember(now, ids, new_ids)
                return None
            seen.difference_update(ids)  # an id repeated within the call: id by id
        accepted, new = [], []
        for message_id in ids:
            if message_id in seen:
                accepted.append(False)
                continue
            seen.add(message_id)
            new.append(message_id)
            accepted.append(True)
        if new:
            self._remember(now, new, new_ids)
        return accepted

    def _remember(self, now: float, ids: list[str], new_ids: list[str]) -> None:
        if not new_ids:  # the caller's list (one per group commit) joins the order once
            self._lists.append((now, new_ids))
        new_ids += ids
        if len(self._ids) > self.max_ids:
            self._evict_oldest()

    def load(self, ids: Iterable[str], received_at: float) -> None:
        """Ids seen at `received_at`, loaded oldest first (a restart)."""
        ids = list(ids)
        self._ids.update(ids)
        self._lists.append((received_at, ids))
        if len(self._ids) > self.max_ids:
            self._evict_oldest()

    def forget(self, ids: Iterable[str]) -> None:
        """Undo the admits of a commit that failed: its lists are the newest ones."""
        gone = set(ids)
        self._ids.difference_update(gone)
        while self._lists and gone.issuperset(self._lists[-1][1]):
            self._lists.pop()

    def expire(self, cutoff: float) -> None:
        """Forget the ids seen before `cutoff` (oldest first, so this stops at the first live list)."""
        while self._lists and self._lists[0][0] < cutoff:
            self._ids.difference_update(self._lists.popleft()[1])

    def _evict_oldest(self) -> None:
        """Memory bound: past `max_ids`, the oldest lists are forgotten until a tenth is free
        (the window shrinks under a flood instead of the process growing without end)."""
        keep = self.max_ids - self.max_ids // 10
        while len(self._ids) > keep and len(self._lists) > 1:  # never the list being filled
            self._ids.difference_update(self._lists.popleft()[1])
