"""ThriveStack's responses -> a verdict per event (it names no bad item: a 400 splits)."""

from __future__ import annotations

from gateway.adapter import OutboundRequest, Response, Verdict, http_verdict


def classify(request: OutboundRequest, response: Response) -> list[Verdict]:
    verdict = _verdict(response, len(request.events))
    return [verdict] * len(request.events)


def _verdict(response: Response, count: int) -> Verdict:
    status = response.status
    if 200 <= status < 300:
        return Verdict("delivered")
    code, detail = f"http_{status}", response.body[:300].decode("utf-8", "replace")
    if status in (401, 403):
        why = "ThriveStack refused the API key (x-api-key): fix settings.api_key, then restart"
        return Verdict("pause", code, detail=f"{why}. {detail}".strip())
    if status in (400, 413):  # no index in ThriveStack's 400: halve until the bad item is alone
        return Verdict("split" if count > 1 else "dead", code, detail=detail)
    base = http_verdict(status, response.headers)
    return Verdict(base.status, code, retry_after_s=base.retry_after_s, detail=detail)
