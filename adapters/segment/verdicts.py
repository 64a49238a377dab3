"""Segment's responses -> per-event verdicts, by Segment's own SDK retry rules."""

from __future__ import annotations

import re

from gateway.adapter import OutboundRequest, Response, Verdict, http_verdict, parse_retry_after

MAX_RETRY_AFTER_S = 300.0  # Segment's own SDKs cap Retry-After here
_RETRY = frozenset((408, 410, 429, 460))
_DEAD_5XX = frozenset((501, 505, 511))  # 511: retried by Segment only with OAuth
_TOO_LARGE = re.compile(rb"too (large|big)|size|exceed", re.IGNORECASE)


def classify(request: OutboundRequest, response: Response) -> list[Verdict]:
    verdict = _verdict(response, len(request.events))
    return [verdict] * len(request.events)


def _verdict(response: Response, count: int) -> Verdict:
    status, headers = response.status, response.headers
    if "retry-after" not in headers and "x-ratelimit-reset" in headers:
        headers = {"retry-after": headers["x-ratelimit-reset"]}
    base = http_verdict(status, headers)
    if base.status == "delivered":
        return base
    code, detail = base.code, response.body[:300].decode("utf-8", "replace")
    if status in _RETRY or (500 <= status < 600 and status not in _DEAD_5XX):
        after = parse_retry_after(headers.get("retry-after"))
        if after is not None:
            after = min(after, MAX_RETRY_AFTER_S)
        return Verdict("retry", code, retry_after_s=after, detail=detail)
    if status == 413 or (status == 400 and _TOO_LARGE.search(response.body)):
        return Verdict("split" if count > 1 else "dead", code, detail=detail)
    return Verdict("dead", code, detail=detail)
