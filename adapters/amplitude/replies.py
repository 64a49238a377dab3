"""Amplitude's replies: its 200 bodies, and its error bodies, which name the bad events."""

from __future__ import annotations

from typing import Any

from gateway.adapter import InboundRequest, IngestError, Reply, epoch_ms

from .fields import encode_json
from .inbound import FORM_PATHS

_OK_FORM = Reply(200, b"success", "text/plain; charset=utf-8")
# IngestError code -> (status, Amplitude's `error`, extra fields); the HTTP V2 docs' wording.
_ERRORS: dict[str, tuple[int, str, dict]] = {
    "missing_body": (400, "Missing request body", {}),
    "invalid_json": (400, "Invalid JSON request body", {}),
    "invalid_form": (400, "Invalid JSON request body", {}),
    "invalid_events": (400, "Invalid event JSON", {}),
    "invalid_options": (400, "Invalid JSON request body", {}),
    "missing_api_key": (400, "Request missing required field", {"missing_field": "api_key"}),
    "missing_events": (400, "Request missing required field", {"missing_field": "events"}),
    "no_events": (400, "Request missing required field", {"missing_field": "events"}),
    "missing_identification": (400, "Request missing required field", {"missing_field": "identification"}),
    "not_found": (404, "Invalid request path", {}),
}
# Reject code -> the 400's map naming the events (anything else: events_with_invalid_fields).
_REJECT_MAPS = {
    "missing_field": "events_with_missing_fields",
    "invalid_id_length": "events_with_invalid_id_lengths",
}
_REJECT_ERRORS = {
    "missing_field": "Request missing required field",
    "invalid_event": "Invalid event JSON",
}
INVALID_KEY = "Invalid API key: "  # the SDKs match this prefix and drop the batch


def reply_ok(request: InboundRequest, accepted: int, duplicates: int) -> Reply:
    if request.path.rstrip("/") in FORM_PATHS:
        return _OK_FORM
    body = {
        "code": 200,
        "events_ingested": accepted + duplicates,
        "payload_size_bytes": len(request.body),
        "server_upload_time": epoch_ms(request.received_at),
    }
    return Reply(200, encode_json(body))


def reply_error(request: InboundRequest, error: IngestError) -> Reply:
    """Amplitude's error bodies: `code` always equals the HTTP status."""
    if error.rejects:
        return Reply(400, encode_json(_rejects_body(error.rejects)))
    if error.status == 401:  # an api_key no source has: Amplitude's answer to a bad key
        return Reply(400, encode_json({"code": 400, "error": INVALID_KEY + error.message}))
    status, text, extra = _ERRORS.get(error.code, (error.status, error.message, {}))
    if status == 413:
        text = "Payload too large"
    body = {"code": status, "error": text, **extra}
    return Reply(status, encode_json(body), headers=error.retry_after_header())


def _rejects_body(rejects) -> dict:
    """Every bad event by field (Amplitude's docs show the first index per field; naming all
    lets an SDK drop them all in one round)."""
    body: dict[str, Any] = {"code": 400, "error": _REJECT_ERRORS.get(rejects[0].code, "Invalid field values on some events")}
    for reject in rejects:
        name = _REJECT_MAPS.get(reject.code, "events_with_invalid_fields")
        body.setdefault(name, {}).setdefault(reject.field or "event", []).append(reject.index)
    return body
