"""The contract every adapter imports: events, the source and destination halves, verdicts.

An adapter (`adapters/<vendor>.py`, or a package `adapters/<vendor>/`) is a pure translator:
no I/O, logging, clock or randomness. Its source half turns an `InboundRequest` into
canonical events and shapes the vendor's replies; its destination half turns events into
`OutboundRequest`s and a vendor response into per-event `Verdict`s. The engine (gateway/)
does everything else.

A module provides either half or both:

Source half (a vendor dialect trackgate accepts):
    ROUTES: tuple[str, ...]                     POST paths this dialect is served on
    decode(request, limits) -> Decoded          raises IngestError for whole-request problems
    reply_ok(request, accepted, duplicates) -> Reply
    reply_error(request, error) -> Reply         the vendor's own error shape
    DEFAULT_LIMITS: SourceLimits                 optional: the vendor's own request limits,
                                                 for sources that set no `limits:`
    EMPTY_REQUEST_OK: bool                       optional: a request without events is a
                                                 success (reply_ok(request, 0, 0)), not a 400

Destination half (somewhere trackgate delivers):
    Settings: type[msgspec.Struct]               `settings:` of the YAML; forbid unknown keys
    INTEGRATION_NAMES: tuple[str, ...]           names an event's `integrations` uses for it
    batch_limits(settings) -> BatchLimits        the vendor's hard limits per request
    build_requests(events, settings) -> list[OutboundRequest]
    classify(request, response) -> list[Verdict] one per event of the request, in order
    skip_reason(event, settings) -> str | None   optional: events it cannot take (counted)
    DEDUPES: bool                                optional, default True: False when the vendor
                                                 has no idempotency key, so the engine counts
                                                 every retry that may duplicate
    DEFAULT_RETRY: dict                          optional: `retry:` defaults for this type
                                                 (e.g. a small budget where retries duplicate)

An event may appear in more than one request of a batch (Amplitude sends a group both as an
`$identify` and to `/groupidentify`); the engine keeps its worst verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

import msgspec

from gateway.event import (
    EVENT_TYPES,
    NO_JSON,
    Alias,
    BaseEvent,
    Event,
    Group,
    Identify,
    Page,
    Screen,
    Track,
    canonical_time,
    decode_event,
    encode_event,
    epoch_ms,
    format_ms,
    format_time,
    is_empty,
    obj,
    parse_time,
    raw,
    type_of,
)
from gateway.retry import Verdict, http_verdict, parse_retry_after

__all__ = [
    "EVENT_TYPES",
    "NO_JSON",
    "Alias",
    "BaseEvent",
    "BatchLimits",
    "Decoded",
    "Event",
    "Group",
    "Identify",
    "InboundRequest",
    "IngestError",
    "OutboundRequest",
    "Page",
    "Reject",
    "Reply",
    "Response",
    "Screen",
    "SourceLimits",
    "Track",
    "Verdict",
    "canonical_time",
    "decode_event",
    "encode_event",
    "epoch_ms",
    "format_ms",
    "format_time",
    "http_verdict",
    "is_empty",
    "obj",
    "pack_json_batches",
    "parse_retry_after",
    "parse_time",
    "raw",
    "type_of",
]


# ---- source half -------------------------------------------------------------------


class InboundRequest(msgspec.Struct, frozen=True):
    """One HTTP request to an ingest route, as the engine hands it to a source adapter."""

    method: str
    path: str  # e.g. "/v1/batch"
    headers: Mapping[str, str]  # names in lower case
    body: bytes  # decompressed, within the source's limits
    received_at: str  # trackgate's clock, ISO 8601 UTC (format_time)
    client_ip: str | None = None


class SourceLimits(msgspec.Struct, frozen=True):
    """Per-source limits the adapter applies while splitting a request into events."""

    max_event_bytes: int = 32 * 1024
    max_request_bytes: int = 500 * 1024
    max_events: int = 2500


class Reject(msgspec.Struct, frozen=True):
    """One item of a request that could not be accepted, and why."""

    index: int  # position in the request (0 for a single-event call)
    code: str  # stable snake_case: missing_identifier, missing_event, event_too_large, ...
    message: str  # for humans: names the field
    payload: bytes = b""  # the item's raw JSON, as far as it is known
    field: str = ""  # the offending field, where one is to blame (vendors' 400s name it)


class Decoded(msgspec.Struct):
    """What a source adapter makes of one request."""

    key: str | None  # the write key / api key the request carries, if any
    events: list[BaseEvent]  # valid events, canonical, in request order
    rejects: list[Reject] = msgspec.field(default_factory=list)
    # True where the vendor refuses a whole request when any item is invalid (Amplitude,
    # ThriveStack, Dittofeed): the engine then records the rejects, stores nothing and
    # answers reply_error with an IngestError(400) whose `rejects` are these.
    atomic: bool = False


class IngestError(Exception):
    """A whole request refused: the engine answers with the adapter's `reply_error`."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        retry_after_s: int | None = None,
        rejects: Sequence[Reject] = (),
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s
        self.rejects = tuple(rejects)  # the items to blame, for replies that name them

    def retry_after_header(self) -> tuple[tuple[str, str], ...]:
        """The reply's `Retry-After` header, when the client is asked to wait (else none)."""
        if self.retry_after_s is None:
            return ()
        return (("Retry-After", str(max(0, math.ceil(self.retry_after_s)))),)


class Reply(msgspec.Struct, frozen=True):
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


# ---- destination half --------------------------------------------------------------


class BatchLimits(msgspec.Struct, frozen=True):
    """A vendor's hard limits per request; the engine never builds a batch above them."""

    max_events: int
    max_bytes: int
    max_event_bytes: int | None = None  # larger single events are dead-lettered unsent


class OutboundRequest(msgspec.Struct, frozen=True):
    """One request to a destination. `events` are indexes into the batch it was built from.

    `url` is http(s):// for vendors and webhooks, file:// for the file destination (the
    engine appends `body` to that file and fsyncs it).
    """

    url: str
    body: bytes
    events: tuple[int, ...]
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()


class Response(msgspec.Struct, frozen=True):
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes


Status = Literal["delivered", "retry", "resend", "dead", "split", "pause"]


_BATCH_ENVELOPE = len(b'{"batch":[]}')


def pack_json_batches(encoded: Sequence[bytes], limits: BatchLimits, envelope: int = _BATCH_ENVELOPE) -> list[range]:
    """Consecutive runs of encoded events whose JSON array (inside an envelope of `envelope`
    bytes, `{"batch":[...]}` by default) stays within `limits`. An event too large on its
    own still gets a run of its own: the engine dead-letters oversize events before this."""
    parts: list[range] = []
    start, size = 0, envelope
    for index, item in enumerate(encoded):
        grown = size + len(item) + (index > start)
        if index > start and (index - start >= limits.max_events or grown > limits.max_bytes):
            parts.append(range(start, index))
            start, grown = index, envelope + len(item)
        size = grown
    if encoded:
        parts.append(range(start, len(encoded)))
    return parts
