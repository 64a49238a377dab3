"""ThriveStack's replies: its 200 with an eventId, and error bodies in the same shape."""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.adapter import InboundRequest, IngestError, Reply

from .fields import encode_json


def reply_ok(request: InboundRequest, accepted: int, duplicates: int) -> Reply:
    """ThriveStack's 200, with an eventId derived from the request (one per request: which
    id ThriveStack returns for several items is undocumented)."""
    digest = hashlib.sha256(request.path.encode() + b"\0" + request.body).hexdigest()[:24]
    return Reply(200, b'{"success":true,"eventId":"evt_' + digest.encode() + b'"}')


def reply_error(request: InboundRequest, error: IngestError) -> Reply:
    """ThriveStack documents the statuses (400, 401, 429, 500), not the error body: this one
    follows its success shape. Back-pressure is its 429, as for a rate limit."""
    status, code, message = error.status, error.code, error.message
    if status == 401:
        code, message = "invalid_api_key", "Unauthorized: invalid or missing API key (x-api-key)"
    elif code == "backpressure":
        status = 429
    body: dict[str, Any] = {"success": False, "error": code, "message": message}
    if error.rejects:
        body["errors"] = [
            {"index": r.index, "field": r.field, "code": r.code, "message": r.message} for r in error.rejects
        ]
    return Reply(status, encode_json(body), headers=error.retry_after_header())
