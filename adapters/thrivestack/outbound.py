"""Canonical events -> ThriveStack's requests: one JSON array per endpoint, in its call order."""

from __future__ import annotations

from typing import Any

from gateway.adapter import OutboundRequest, pack_json_batches, type_of

from .encoder import outgoing
from .fields import encode_json
from .settings import Settings, batch_limits

_ENDPOINTS = ("identify", "group", "track")  # ThriveStack's documented call order
_ENVELOPE = len(b"[]")


def skip_reason(event: Any, settings: Settings) -> str | None:
    """What ThriveStack cannot take: alias (no equivalent) and anything without a userId
    (required on every call)."""
    if type_of(event) == "alias":
        return "alias_unsupported"
    if not event.user_id:
        return "missing_user_id"
    return None


def build_requests(events: list, settings: Settings) -> list[OutboundRequest]:
    """One array per endpoint (split by the limits): identify, then group, then track."""
    rows: dict[str, list[tuple[int, bytes]]] = {endpoint: [] for endpoint in _ENDPOINTS}
    for index, event in enumerate(events):
        if skip_reason(event, settings) is None:
            endpoint, item = outgoing(event, settings)
            rows[endpoint].append((index, encode_json(item)))
    limits = batch_limits(settings)
    headers = (("x-api-key", settings.api_key), ("Content-Type", "application/json"), ("Accept", "*/*"))
    base = settings.base_url.rstrip("/")
    requests = []
    for endpoint in _ENDPOINTS:
        encoded = [item for _, item in rows[endpoint]]
        for part in pack_json_batches(encoded, limits, envelope=_ENVELOPE):
            body = b"[" + b",".join(encoded[i] for i in part) + b"]"
            indexes = tuple(rows[endpoint][i][0] for i in part)
            requests.append(OutboundRequest(f"{base}/{endpoint}", body, indexes, headers=headers))
    return requests
