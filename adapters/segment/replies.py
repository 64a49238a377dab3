"""Segment's replies to its SDKs: `{"success": true}`, and errors in its own shape."""

from __future__ import annotations


from gateway.adapter import InboundRequest, IngestError, Reply

from .message import _encode

_OK = Reply(200, b'{"success":true}')


def reply_ok(request: InboundRequest, accepted: int, duplicates: int) -> Reply:
    return _OK


def reply_error(request: InboundRequest, error: IngestError) -> Reply:
    """`code` equals the HTTP status: Rudder Python retries a 4xx without code and message."""
    body = {"success": False, "code": error.status, "error": error.code, "message": error.message}
    return Reply(error.status, _encode(body), headers=error.retry_after_header())
