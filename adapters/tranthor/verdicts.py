"""Tranthor's responses -> a verdict per event; a 400 that names an item kills only it."""

from __future__ import annotations

import re

import msgspec

from gateway.adapter import OutboundRequest, Response, Verdict, http_verdict

from .api import decode_json

_NAMED_ITEM = re.compile(r"^body/batch/(\d+)(?:[/ ]|$)")


def classify(request: OutboundRequest, response: Response) -> list[Verdict]:
    count = len(request.events)
    status = response.status
    if 200 <= status < 300:
        return [Verdict("delivered")] * count
    detail = response.body[:300].decode("utf-8", "replace")
    code = f"http_{status}"
    if status == 401:
        return [Verdict("pause", code, detail=detail)] * count
    if status == 400:
        return _bad_request(response.body, count, detail)
    if status == 413:
        return [Verdict("split" if count > 1 else "dead", code, detail=detail)] * count
    verdict = http_verdict(status, response.headers)
    return [Verdict(verdict.status, verdict.code, verdict.retry_after_s, detail)] * count


def _bad_request(body: bytes, count: int, detail: str) -> list[Verdict]:
    """Fastify names the first invalid item (`body/batch/3/...`): only it is dead, the
    others go again. Without a name every event of the request is dead."""
    dead = Verdict("dead", "http_400", detail=detail)
    try:
        message = decode_json(body).get("message", "")
    except (msgspec.DecodeError, AttributeError):
        message = ""
    named = _NAMED_ITEM.match(message) if isinstance(message, str) else None
    index = int(named.group(1)) if named else -1
    if count < 2 or not 0 <= index < count:
        return [dead] * count
    others = Verdict("resend", "http_400", detail=f"not at fault: {detail}")
    return [dead if n == index else others for n in range(count)]
