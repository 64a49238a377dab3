"""A valid Segment request decoded in one msgspec pass, or None for the item-by-item path."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.adapter import Decoded, Event, InboundRequest, IngestError, SourceLimits

from .keys import _basic_user, _key
from .message import _NO_BATCH, _batch_sent_at, _decode_as, _Invalid, _normalise


class _WholeBatch(msgspec.Struct):
    batch: list[Event] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sentAt: Any = None
    writeKey: Any = None


_decode_whole = msgspec.json.Decoder(_WholeBatch).decode


def _whole_single(request: InboundRequest, kind: str, limits: SourceLimits) -> Decoded | None:
    """A valid single message whose key is in its Authorization header, decoded in one pass
    (its body's `writeKey` is not needed then), or None when anything is off."""
    key = _basic_user(request.headers.get("authorization", ""))
    if key is None or len(request.body) > limits.max_event_bytes:
        return None
    try:
        event = _decode_as[kind](request.body)
        _normalise(event, _NO_BATCH)
    except (_Invalid, msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError too
        return None
    return Decoded(key, [event])


def _whole_batch(request: InboundRequest, limits: SourceLimits) -> Decoded | None:
    """A valid batch decoded in one msgspec pass, envelope and items together, or None when
    anything is off: the item-by-item path then decides (and isolates rejects).

    No item may exceed `max_event_bytes`. Items are disjoint parts of the body, so with L_i a
    lower bound of item i's size (from `_normalise`), size_i <= len(body) - sum(L) + L_i."""
    body = request.body
    try:
        envelope = _decode_whole(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):  # ValidationError too
        return None
    events = envelope.batch
    if events is None or len(events) > limits.max_events:
        return None
    try:
        batch = (envelope.context, envelope.integrations, _batch_sent_at(envelope.sentAt))
        sizes = [_normalise(event, batch) for event in events]
    except (_Invalid, IngestError, msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    if sizes and len(body) - sum(sizes) + max(sizes) > limits.max_event_bytes:
        return None
    return Decoded(_key(request, envelope), events)
