"""One sample call (`trackgate send --format thrivestack`) as ThriveStack's API documents it."""

from __future__ import annotations

from typing import Any

from .fields import PAGE_VISIT, encode_json


def sample_request(key: str, fields: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """One ThriveStack call (`trackgate send`): page -> track `page_visit`; screen and alias,
    which ThriveStack lacks, -> track."""
    kind = fields.get("type", "track")
    item: dict[str, Any] = {"user_id": fields.get("userId", "trackgate-test-user")}
    if kind == "identify":
        path, item["traits"] = "/api/identify", {"user_email": "test@example.com", "first_name": "Test"}
    elif kind == "group":
        path, item["group_id"] = "/api/group", "trackgate-test-group"
        item["traits"] = {"account_name": "Test Group", "group_type": "Account"}
    elif kind == "page":
        path, item["event_name"] = "/api/track", PAGE_VISIT
        item["properties"] = {"page_url": "https://example.com/", "page_path": "/"}
    else:
        path, item["event_name"] = "/api/track", fields.get("event") or "feature_used"
        item["properties"] = {"feature_name": "trackgate send"}
    if fields.get("messageId"):
        item["messageId"] = fields["messageId"]
    headers = {"x-api-key": key, "content-type": "application/json", "accept": "*/*"}
    return path, headers, encode_json([item])
