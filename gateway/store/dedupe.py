"""The dedupe memory: message ids seen within the window, oldest first, bounded in count.

Kept in memory for the hot path (one dict lookup an event); the store persists each commit's
new ids so a restart can load them back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import islice, repeat, takewhile

from gateway.store.base import Entry


class SeenIds:
    def __init__(self, max_ids: int):
        self.max_ids = max_ids
        self._ids: dict[str, float] = {}  # message_id -> received_at, oldest first

    def __len__(self) -> int:
        return len(self._ids)

    def admit(self, entries: Sequence[Entry], now: float, new_ids: list[str]) -> tuple[Sequence[Entry], list[bool]]:
        """The entries whose id is new (recorded as seen at `now` and added to `new_ids`),
        and for each entry whether it was new."""
        seen = self._ids
        ids = [entry.message_id for entry in entries]
        if len(ids) > 1 and seen.keys().isdisjoint(ids) and len(set(ids)) == len(ids):
            # A batch of new ids (the common case), checked and recorded in C loops.
            seen.update(dict.fromkeys(ids, now))
            new_ids += ids
            fresh, accepted = entries, [True] * len(ids)
        else:
            fresh, accepted = [], []
            for entry in entries:
                if entry.message_id in seen:
                    accepted.append(False)
                    continue
                seen[entry.message_id] = now
                new_ids.append(entry.message_id)
                accepted.append(True)
                fresh.append(entry)
        if len(seen) > self.max_ids:
            self._evict_oldest()
        return fresh, accepted

    def load(self, ids: Iterable[str], received_at: float) -> None:
        self._ids.update(zip(ids, repeat(received_at)))
        if len(self._ids) > self.max_ids:
            self._evict_oldest()

    def forget(self, ids: Iterable[str]) -> None:
        """Undo admit() for a commit that failed."""
        for message_id in ids:
            self._ids.pop(message_id, None)

    def expire(self, cutoff: float) -> None:
        """Forget the ids seen before `cutoff` (oldest first, so this stops at the first live one)."""
        expired = [mid for mid, _ in takewhile(lambda item: item[1] < cutoff, self._ids.items())]
        for message_id in expired:
            del self._ids[message_id]

    def _evict_oldest(self) -> None:
        """Memory bound: past `max_ids` the oldest tenth is forgotten in one pass (the window
        shrinks under a flood instead of the process growing without end)."""
        excess = len(self._ids) - self.max_ids + self.max_ids // 10
        for message_id in list(islice(self._ids, max(excess, 0))):
            del self._ids[message_id]
