"""One sample call (`trackgate send --format tranthor`) as the Dittofeed SDKs' docs show it."""

from __future__ import annotations

from typing import Any

import msgspec

from .api import PREFIX

_SAMPLE_FIELDS = {
    "identify": {"traits": {"email": "test@example.com", "firstName": "Test"}},
    "track": {"event": "trackgate send", "properties": {"source": "trackgate send"}},
    "page": {"name": "Home", "properties": {"url": "https://example.com/"}},
    "screen": {"name": "Home"},
    "group": {"groupId": "trackgate-test-group", "traits": {"name": "Test Group"}},
    "alias": {"previousId": "trackgate-test-anonymous"},  # answered 400, as Dittofeed does
}


def sample_request(key: str, fields: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """One call as the Dittofeed SDKs' docs show it (`trackgate send`): (path, headers, body).
    `fields` holds `type`, and userId, event and messageId (which Dittofeed requires)."""
    kind = fields.get("type", "track")
    body = {**_SAMPLE_FIELDS[kind], **{k: v for k, v in fields.items() if k != "type"}}
    if kind != "track":
        body.pop("event", None)
    headers = {"authorization": f"Basic {key}", "content-type": "application/json"}
    return PREFIX + kind, headers, msgspec.json.encode(body)
