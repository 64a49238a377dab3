"""The file destination: canonical events appended to a local file as JSON lines.

Each batch becomes one request to `file://<path>` (the configured path verbatim, absolute or
relative; the engine resolves it, appends the body and fsyncs, and answers 200 when the data
is durable). The body is one canonical event per line (the JSON trackgate stores, with
`source`), each line ending in a newline, so a crash can leave at most a torn last line and
`jq`/`grep`/`wc -l` work on the file directly.

Lossy conversions: none; the events are written as stored. A batch that is retried after a
partial write may append some events twice: readers deduplicate on `messageId`.
"""

from __future__ import annotations

import msgspec

from gateway.adapter import (
    BatchLimits,
    OutboundRequest,
    Response,
    Verdict,
    encode_event,
    http_verdict,
)

INTEGRATION_NAMES = ("File",)


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    path: str

    def __post_init__(self) -> None:
        if not self.path.strip():
            raise ValueError("path: must not be empty")


def batch_limits(settings: Settings) -> BatchLimits:
    return BatchLimits(max_events=10_000, max_bytes=16_000_000)


def build_requests(events: list, settings: Settings) -> list[OutboundRequest]:
    if not events:
        return []
    body = b"".join([encode_event(event) + b"\n" for event in events])
    return [OutboundRequest("file://" + settings.path, body, tuple(range(len(events))))]


def classify(request: OutboundRequest, response: Response) -> list[Verdict]:
    verdict = http_verdict(response.status, response.headers)
    return [verdict] * len(request.events)
