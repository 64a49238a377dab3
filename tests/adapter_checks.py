"""Checks every adapter's tests share: broken variants of a valid body (bad input is never a
crash), and batches of padded events to pack (every event once, no request over the limits)."""

from __future__ import annotations

import random
from collections.abc import Iterator

from gateway.adapter import Track, raw

_BYTES = b'{}[]",:0an \\\x00\xff'
_JUNK = (b"[", b"{", b'"', b"null", b"-1e999", b'"\\ud800"', b"7,", b"\xff", b"1.5", b"true")


def mutations(body: bytes, rng: random.Random, rounds: int = 1) -> Iterator[bytes]:
    for _ in range(rounds):
        yield body[: rng.randrange(len(body) + 1)]
        data = bytearray(body)
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.choice(_BYTES)
        yield bytes(data)
        cut = rng.randrange(len(body) + 1)
        yield body[:cut] + rng.choice(_JUNK) + body[cut:]


def padded_tracks(seed: int, most: int, pads: tuple[int, ...], **fields) -> list[Track]:
    """Up to `most` tracks m0, m1, ... whose properties are padded to sizes drawn from `pads`."""
    rng = random.Random(seed)
    return [
        Track(event=f"E{i}", user_id="u", message_id=f"m{i}", timestamp="2026-11-23T11:26:27.100Z",
              properties=raw({"pad": "x" * rng.choice(pads)}), **fields)
        for i in range(rng.randrange(0, most))
    ]


def check_packing(requests: list, n_events: int, max_events: int, max_bytes: int) -> None:
    """Every event in exactly one request, in order; no request over the limits unless it
    holds a single event (which the engine dead-letters before sending when too large)."""
    assert [i for request in requests for i in request.events] == list(range(n_events))
    for request in requests:
        assert len(request.events) <= max_events
        assert len(request.body) <= max_bytes or len(request.events) == 1
