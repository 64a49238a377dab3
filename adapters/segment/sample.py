"""A sample Segment call for `trackgate send`."""

from __future__ import annotations

import base64
from typing import Any

import msgspec

_SAMPLE_FIELDS = {
    "identify": {"traits": {"email": "test@example.com", "firstName": "Test"}},
    "track": {"properties": {"source": "trackgate send"}},
    "page": {"name": "Home", "properties": {"url": "https://example.com/"}},
    "screen": {"name": "Home"},
    "group": {"groupId": "trackgate-test-group", "traits": {"name": "Test Group"}},
    "alias": {"previousId": "trackgate-test-anonymous"},
}


def sample_request(key: str, fields: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """A single Segment call as an SDK would send it: (path, headers, body). `fields` holds
    `type` and any Spec fields to set (userId, event, messageId, ...)."""
    kind = fields.get("type", "track")
    body = {**_SAMPLE_FIELDS[kind], **{k: v for k, v in fields.items() if k != "type"}}
    if kind != "track":
        body.pop("event", None)
    headers = {
        "Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode(),
        "Content-Type": "application/json",
    }
    return f"/v1/{kind}", headers, msgspec.json.encode(body)
