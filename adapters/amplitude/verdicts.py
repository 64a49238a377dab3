"""Amplitude's responses -> a verdict per event (vendor-apis.md section 3.3)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import msgspec

from gateway.adapter import OutboundRequest, Response, Verdict, http_verdict, parse_retry_after

from .fields import decode_json


class _Ids(msgspec.Struct):
    user_id: Any = None
    device_id: Any = None


class _SentEvents(msgspec.Struct):
    events: list[_Ids] = []


_decode_sent = msgspec.json.Decoder(_SentEvents).decode
_NAMED_400 = (  # Amplitude's lists of bad events -> our dead-letter code
    ("events_with_invalid_fields", "amplitude_invalid_fields"),
    ("events_with_missing_fields", "amplitude_missing_fields"),
    ("events_with_invalid_id_lengths", "amplitude_invalid_id_lengths"),
)
RESEND = Verdict("resend", "amplitude_not_at_fault")
THROTTLE_WAIT_S = 30.0  # HTTP V2 docs: pause a throttled user or device for 30 s


def classify(request: OutboundRequest, response: Response) -> list[Verdict]:
    """Verdicts for the events of one request, in order (vendor-apis.md section 3.3)."""
    n = len(request.events)
    path = urlsplit(request.url).path
    if path.endswith(("/groupidentify", "/usermap")):
        return [_form_verdict(response, n)] * n
    body = _json_object(response.body)
    code = body.get("code") if body is not None else None
    status = code if type(code) is int else response.status
    detail = _detail(body, response.body)
    if 200 <= response.status < 300 and body is not None and type(code) is not int:
        return [Verdict("retry", "amplitude_unexpected_response", detail=detail)] * n
    if 200 <= status < 300:
        return [Verdict("delivered")] * n
    if status == 413:
        return [_too_large(n, detail)] * n
    if status in (400, 429) and body is not None:
        return _partial(status, body, request, response, detail)
    verdict = http_verdict(status, response.headers)
    return [msgspec.structs.replace(verdict, detail=detail)] * n


def _too_large(n: int, detail: str) -> Verdict:
    """A 413: split the request, or give up on an event too large on its own."""
    return Verdict("split" if n > 1 else "dead", "amplitude_payload_too_large", detail=detail)


def _throttle_wait(response: Response) -> float:
    """Amplitude asks throttled users to wait 30 s; it sends no Retry-After, but one wins."""
    after = parse_retry_after(response.headers.get("retry-after"))
    return THROTTLE_WAIT_S if after is None else after


def _form_verdict(response: Response, n: int) -> Verdict:
    detail = response.body[:300].decode("utf-8", "replace")
    if response.status == 413:
        return _too_large(n, detail)
    verdict = http_verdict(response.status, response.headers)
    if response.status == 429 and verdict.retry_after_s is None:
        verdict = msgspec.structs.replace(verdict, retry_after_s=THROTTLE_WAIT_S)
    return msgspec.structs.replace(verdict, detail=detail) if verdict.status != "delivered" else verdict


def _json_object(body: bytes) -> dict | None:
    try:
        value = decode_json(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _detail(body: dict | None, raw_body: bytes) -> str:
    if body is not None and isinstance(body.get("error"), str):
        return body["error"][:300]
    return raw_body[:300].decode("utf-8", "replace")


def _indexes(value: Any, n: int) -> list[int]:
    if not isinstance(value, list):
        return []
    return [i for i in value if type(i) is int and 0 <= i < n]


def _partial(status: int, body: dict, request: OutboundRequest, response: Response, detail: str) -> list[Verdict]:
    """Amplitude's 400 and 429 name events: only those are dead or wait; the rest resend."""
    n = len(request.events)
    error = body.get("error") if isinstance(body.get("error"), str) else ""
    if status == 400 and (error.startswith("Invalid API key") or body.get("missing_field")):
        code = "amplitude_invalid_api_key" if error.startswith("Invalid API key") else "amplitude_missing_field"
        return [Verdict("dead", code, detail=detail)] * n
    verdicts: list[Verdict | None] = [None] * n
    for name, code in _NAMED_400:
        lists = body.get(name)
        for indexes in lists.values() if isinstance(lists, dict) else ():
            for i in _indexes(indexes, n):
                verdicts[i] = verdicts[i] or Verdict("dead", code, detail=detail)
    for i in _indexes(body.get("silenced_events"), n):
        verdicts[i] = verdicts[i] or Verdict("dead", "amplitude_silenced", detail=detail)
    throttled = _indexes(body.get("throttled_events"), n)
    if throttled:
        over_quota = _over_quota(body, request, throttled)
        wait = _throttle_wait(response)
        for i in throttled:
            if verdicts[i] is None:
                verdicts[i] = (Verdict("dead", "amplitude_daily_quota", detail=detail) if i in over_quota
                               else Verdict("retry", "amplitude_throttled", retry_after_s=wait, detail=detail,
                                            hold_destination=False))  # only these users wait
    if all(v is None for v in verdicts):  # nothing named: the request as a whole
        if status == 429:
            return [Verdict("retry", "http_429", retry_after_s=_throttle_wait(response), detail=detail)] * n
        return [Verdict("dead", "http_400", detail=detail)] * n
    return [v or RESEND for v in verdicts]


def _over_quota(body: dict, request: OutboundRequest, throttled: list[int]) -> set[int]:
    users, devices = body.get("exceeded_daily_quota_users"), body.get("exceeded_daily_quota_devices")
    users = users if isinstance(users, dict) else {}
    devices = devices if isinstance(devices, dict) else {}
    if not users and not devices:
        return set()
    sent = _decode_sent(request.body).events
    return {
        i for i in throttled
        if i < len(sent) and (_in(sent[i].user_id, users) or _in(sent[i].device_id, devices))
    }


def _in(value: Any, ids: dict) -> bool:
    return isinstance(value, str) and value in ids
