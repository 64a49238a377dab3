"""Dittofeed's replies: 204 on success, its controller's or Fastify's error bodies."""

from __future__ import annotations


from gateway.adapter import InboundRequest, IngestError, Reply

from .api import encode_json

_NO_CONTENT = Reply(204, b"", content_type="")
_REASONS = {
    400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
    413: "Payload Too Large", 415: "Unsupported Media Type", 429: "Too Many Requests",
    500: "Internal Server Error", 503: "Service Unavailable",
}
_VALIDATION = frozenset((  # codes of what Dittofeed's schema validation refuses
    "invalid_batch", "invalid_event", "invalid_type", "invalid_field", "invalid_timestamp",
    "missing_message_id", "missing_identifier", "missing_event", "missing_group_id", "event_too_large",
))
_FASTIFY_CODES = {  # trackgate code -> the code Fastify's own error has
    "request_too_large": "FST_ERR_CTP_BODY_TOO_LARGE",
    "unsupported_media_type": "FST_ERR_CTP_INVALID_MEDIA_TYPE",
    "empty_body": "FST_ERR_CTP_EMPTY_JSON_BODY",
}


def reply_ok(request: InboundRequest, accepted: int, duplicates: int) -> Reply:
    return _NO_CONTENT


def reply_error(request: InboundRequest, error: IngestError) -> Reply:
    """Dittofeed's shapes: its controller's `{"message"}` for a bad key and for alias,
    Fastify's default error body for everything else."""
    if error.code == "alias_not_implemented":
        body: dict = {"message": "Not yet implemented."}
    elif error.status == 401:
        body = {"message": "InvalidWriteKey"}
    else:
        validation = error.rejects or error.code in _VALIDATION
        code = "FST_ERR_VALIDATION" if validation else _FASTIFY_CODES.get(error.code, error.code)
        body = {
            "statusCode": error.status,
            "code": code,
            "error": _REASONS.get(error.status, "Error"),
            "message": error.message,
        }
    return Reply(error.status, encode_json(body), headers=error.retry_after_header())
