"""One sample call (`trackgate send --format amplitude`) as the Amplitude Python SDK posts it."""

from __future__ import annotations

from typing import Any

from .fields import GROUP_IDENTIFY, IDENTIFY, encode_json
from .settings import DEFAULT_GROUP_TYPE, DEFAULT_PAGE_EVENT_NAME, DEFAULT_SCREEN_EVENT_NAME

# amplitude-analytics 1.3.0 (captures/amplitude-python.json): its `library`, its Content-Type.
_LIBRARY = "amplitude-python/1.3.0"
_HEADERS = {"Content-Type": "application/json; charset=UTF-8"}
_TRAITS = {"$set": {"email": "test@example.com", "name": "Test"}}
_ANONYMOUS_ID = "trackgate-test-anonymous"


def sample_request(key: str, fields: dict[str, Any]) -> tuple[str, dict[str, str], bytes]:
    """(path, headers, body) of one SDK call; `fields` holds `type` and optionally `userId`,
    `event` (track only) and `messageId` (-> `insert_id`). Amplitude has no page, screen or
    alias: page and screen are events named as the destination names them, and alias is an
    `$identify` carrying both the anonymous device id and the user id, which is how Amplitude
    merges a device's history into a user."""
    kind = fields.get("type", "track")
    event = {"user_id": fields.get("userId", "trackgate-test-user"), "library": _LIBRARY, **_body(kind, fields)}
    if fields.get("messageId"):
        event["insert_id"] = fields["messageId"]
    # No `time`: an adapter reads no clock, and the gateway stamps the receive time instead.
    # options.min_id_length 1, as an SDK configured with it sends: Amplitude's default 5
    # would strip a short test user id.
    body = {"api_key": key, "events": [dict(sorted(event.items()))], "options": {"min_id_length": 1}}
    return "/2/httpapi", dict(_HEADERS), encode_json(body)


def _body(kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of the SDK call that `kind` is closest to."""
    if kind == "identify":
        return {"event_type": IDENTIFY, "user_properties": _TRAITS}
    if kind == "alias":
        return {"event_type": IDENTIFY, "device_id": _ANONYMOUS_ID, "user_properties": _TRAITS}
    if kind == "group":  # client.group_identify(...) with EventOptions(user_id=...)
        return {"event_type": GROUP_IDENTIFY, "groups": {DEFAULT_GROUP_TYPE: "trackgate-test-group"},
                "group_properties": {"$set": {"name": "Test Group"}}}
    if kind == "page":
        return {"event_type": DEFAULT_PAGE_EVENT_NAME.replace("{name}", "Home"),
                "event_properties": {"name": "Home", "url": "https://example.com/"}}
    if kind == "screen":
        return {"event_type": DEFAULT_SCREEN_EVENT_NAME.replace("{name}", "Home"), "event_properties": {"name": "Home"}}
    return {"event_type": fields.get("event") or "Trackgate Test Event", "event_properties": {"source": "trackgate send"}}
