"""Segment as a destination: its settings, its limits, and `POST /v1/batch` requests."""

from __future__ import annotations

import base64
from typing import Any

import msgspec

from gateway.adapter import BatchLimits, OutboundRequest, pack_json_batches

from .message import _encode

INTEGRATION_NAMES = ("Segment", "Segment.io")


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    write_key: str
    base_url: str = "https://api.segment.io"  # EU workspaces: their regional host

    def __post_init__(self) -> None:
        if not self.write_key.strip():
            raise ValueError("write_key: must not be empty")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError("base_url: must start with http:// or https://")


def batch_limits(settings: Settings) -> BatchLimits:
    """500 KB per request (475,000 B like Segment's SDKs), 32 KB per event; Segment takes 2,500
    events but smaller requests retry and split more cheaply."""
    return BatchLimits(max_events=500, max_bytes=475_000, max_event_bytes=32_768)


def build_requests(events: list, settings: Settings) -> list[OutboundRequest]:
    limits = batch_limits(settings)
    url = settings.base_url.rstrip("/") + "/v1/batch"
    token = base64.b64encode(f"{settings.write_key}:".encode()).decode("ascii")
    headers = (("Authorization", f"Basic {token}"), ("Content-Type", "application/json"))
    outgoing = [_outgoing(event) for event in events]
    if 0 < len(outgoing) <= limits.max_events:  # the usual batch fits one request: one encoder call
        body = b'{"batch":' + _encode(outgoing) + b"}"
        if len(body) <= limits.max_bytes:
            return [OutboundRequest(url, body, tuple(range(len(events))), headers=headers)]
    encoded = [_encode(event) for event in outgoing]
    return [
        OutboundRequest(url, b'{"batch":[' + b",".join(encoded[i] for i in part) + b"]}",
                        tuple(part), headers=headers)
        for part in pack_json_batches(encoded, limits)
    ]


def _outgoing(event: Any) -> Any:
    if event.source is None and event.sent_at is None and event.timestamp is not None:
        return event
    return msgspec.structs.replace(
        event, source=None, sent_at=None, timestamp=event.timestamp or event.original_timestamp
    )
