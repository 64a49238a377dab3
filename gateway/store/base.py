"""The Store protocol: a durable queue of canonical events, per-destination delivery state,
dead letters, dedupe, rejected input and counters. Every backend passes tests/test_store.py.

Model. `append` writes each accepted event once with the destinations it is routed to.
Events are stored in chunks (a JSON array of canonical events, one chunk per request and
destination set), so a 100-event request is one row, not 100. Delivery state is one entry per
(destination, chunk): its attempt count and when it is next due. Settling a chunk may split
it: delivered events are dropped, the events to retry become a new chunk for that destination
only, dead ones go to the dead-letter queue with their own copy of the event. A chunk no
destination still needs is deleted (compaction). Leases live in the process: a destination
has one worker, and after a crash everything unsettled is delivered again (at-least-once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import msgspec

# Counter names kept per destination (and `rejected` per source).
DELIVERED = "delivered"
RETRIED = "retried"  # events scheduled for another attempt
DEAD = "dead"  # events moved to the dead-letter queue
# Retries of events whose last request may have reached a vendor that cannot dedupe.
POSSIBLE_DUPLICATES = "possible_duplicates"
# Skips are counted as "skipped_<reason>": skipped_disabled, skipped_integrations,
# skipped_filter, skipped_unsupported (the adapter's skip_reason), ...


class Events(msgspec.Struct, frozen=True, gc=False):
    """Events of one call bound for the same destinations (maybe none: their ids are still
    deduped): their messageIds, and their canonical JSON as one array in the same order. The
    array is a chunk's payload as is, made by one encoder call, so no object per event
    outlives the call's encoding while its commit runs. Untracked by the GC: no cycles."""

    message_ids: list[str]
    body: bytes  # a JSON array: b"[{...},{...}]"
    destinations: tuple[str, ...]


class Chunk(msgspec.Struct, frozen=True):
    """A leased unit of delivery work: `payload` is a JSON array of canonical events."""

    seq: int
    destination: str
    attempts: int  # attempts made so far for these events (0 = never tried)
    received_at: float  # epoch seconds the events were received (for max_age_s)
    n_events: int
    payload: bytes


class DeadLetter(msgspec.Struct, frozen=True):
    """An event given up on, with why and the last exchange with the destination."""

    message_id: str
    payload: bytes  # the canonical event (JSON object)
    reason: str  # stable code: http_400, event_too_large, retries_exhausted, ...
    detail: str = ""
    attempts: int = 0
    last_request: str = ""  # method, URL and (truncated) body of the last attempt
    last_response: str = ""  # status and (truncated) body, or the network error


class Settlement(msgspec.Struct, frozen=True):
    """The outcome of delivering one leased chunk. Events neither retried nor dead were
    delivered. `retry` holds the canonical JSON objects of the events to try again."""

    seq: int
    delivered: int
    retry: tuple[bytes, ...] = ()
    retry_at: float = 0.0  # epoch seconds
    error: str = ""  # code of the last failure, kept with the retry
    dead: tuple[DeadLetter, ...] = ()
    possible_duplicates: int = 0  # retried events the destination may already have taken


class DeadLetterRow(msgspec.Struct, frozen=True):
    id: int
    destination: str
    message_id: str
    reason: str
    detail: str
    attempts: int
    failed_at: float
    payload: bytes
    last_request: str
    last_response: str


class DeadLetterFilter(msgspec.Struct, frozen=True):
    """Which dead letters `dead_letters`, `replay` and `purge` act on (all if empty)."""

    ids: tuple[int, ...] = ()
    message_ids: tuple[str, ...] = ()
    reason: str | None = None
    since: float | None = None  # failed_at >= since
    until: float | None = None  # failed_at < until
    limit: int | None = None


class RejectRow(msgspec.Struct, frozen=True):
    id: int
    source: str
    code: str
    message: str
    received_at: float
    payload: bytes


class DestinationStats(msgspec.Struct):
    pending: int = 0  # events waiting (never tried or due for retry)
    retrying: int = 0  # of those, events that failed at least once
    dead_letters: int = 0
    oldest_pending_age_s: float = 0.0
    counters: dict[str, int] = msgspec.field(default_factory=dict)


class StoreStats(msgspec.Struct):
    destinations: dict[str, DestinationStats]
    backlog_bytes: int
    max_backlog_bytes: int
    rejected: dict[str, int]  # per source
    dedupe_ids: int


class BackpressureError(Exception):
    """The backlog is at its cap: refuse new events (503) rather than fill the disk."""

    def __init__(self, retry_after_s: int):
        super().__init__(f"backlog over its cap; retry after {retry_after_s}s")
        self.retry_after_s = retry_after_s


class StoreError(Exception):
    """The store could not make a write durable: nothing of that call was accepted."""


class Store(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def append(
        self, batches: Sequence[Events], counts: Mapping[tuple[str, str], int] | None = None
    ) -> list[bool]:
        """Store the events durably (fsync) before returning. One result per event, in the
        order of `batches` and their ids: True accepted, False a duplicate messageId within
        the dedupe window (not stored again; a duplicate inside the same call counts too).
        `counts` adds to (destination, counter) totals in the same transaction. Raises
        BackpressureError when over the backlog cap, StoreError when the commit failed."""
        ...

    async def lease(self, destination: str, max_events: int) -> list[Chunk]:
        """Due chunks (next attempt time reached) not already leased in this process, in
        order, stopping once `max_events` events are gathered (always at least one chunk
        when any is due). They stay leased until settled or released."""
        ...

    async def settle(self, destination: str, settlements: Sequence[Settlement]) -> None:
        """Apply outcomes of leased chunks in one durable transaction and release them."""
        ...

    def release(self, destination: str, seqs: Sequence[int]) -> None:
        """Forget leases without an outcome (shutdown): the chunks stay pending."""
        ...

    async def next_due(self, destination: str) -> float | None:
        """Epoch seconds when the earliest unleased chunk is due, or None if there is none."""
        ...

    async def wait_for_work(self, destination: str, timeout_s: float) -> None:
        """Return when this process appended or replayed work for `destination`, or after
        `timeout_s` (other processes, such as the CLI's replay, are seen on the next poll)."""
        ...

    async def dead_letters(
        self, destination: str | None, filt: DeadLetterFilter = DeadLetterFilter()
    ) -> list[DeadLetterRow]: ...

    async def replay(self, destination: str, filt: DeadLetterFilter = DeadLetterFilter()) -> int:
        """Move matching dead letters of `destination` back to pending for that destination
        only, attempts reset, payload (and so messageId) unchanged. Returns how many."""
        ...

    async def purge(self, destination: str, filt: DeadLetterFilter = DeadLetterFilter()) -> int: ...

    async def record_rejects(self, source: str, rejects: Sequence[tuple[str, str, bytes]]) -> None:
        """Keep rejected input items (code, message, payload) for inspection; bounded."""
        ...

    async def rejects(self, source: str | None = None, limit: int = 100) -> list[RejectRow]: ...

    async def stats(self) -> StoreStats: ...

    async def compact(self) -> None:
        """Housekeeping: expire dedupe ids past the window, checkpoint the log."""
        ...

    async def ping(self) -> None:
        """Raise if the store cannot take a write right now (readiness)."""
        ...

    @property
    def over_backlog(self) -> bool:
        """True while appends are being refused for the backlog cap."""
        ...
