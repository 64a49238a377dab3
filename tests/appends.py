"""Store appends for tests written event by event: (messageId, payload, destinations) triples
grouped into the store's Events batches the way ingest groups them."""

from __future__ import annotations

from collections.abc import Iterable

from gateway.store.base import Events
from gateway.store.sqlite_schema import chunk_body


def events_of(entries: Iterable[tuple[str, bytes, tuple[str, ...]]]) -> list[Events]:
    """One Events per destination set, in order of first appearance (the store answers in
    this order too)."""
    groups: dict[tuple[str, ...], tuple[list[str], list[bytes]]] = {}
    for message_id, payload, destinations in entries:
        ids, payloads = groups.setdefault(destinations, ([], []))
        ids.append(message_id)
        payloads.append(payload)
    return [Events(ids, chunk_body(payloads), where) for where, (ids, payloads) in groups.items()]


def append(store, entries, counts=None):
    """store.append of `entries` (triples); the awaitable it returns."""
    return store.append(events_of(entries), counts)
