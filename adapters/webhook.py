"""The generic webhook destination: canonical events POSTed as JSON to a URL, optionally signed.

Each request is `POST {url}` with the body `{"batch":[<canonical event>, ...]}` (the canonical
JSON trackgate stores: camelCase Segment Spec plus `source`, the configured source's name),
`Content-Type: application/json` and the configured `headers`.

Signature: when `secret` is set, every request carries
`X-Trackgate-Signature: sha256=<hex of HMAC-SHA256(key=secret as UTF-8, msg=raw body bytes)>`.
A receiver verifies it over the raw body bytes before parsing them, for example:

    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    ok = hmac.compare_digest(expected, request.headers["X-Trackgate-Signature"])

Retries follow trackgate's default policy (`http_verdict`): 2xx delivered; 408, 429 and 5xx
but 501 retried (Retry-After honoured); 413 splits the batch; other statuses are dead.
A retried event keeps its `messageId`: receivers deduplicate on it.

Lossy conversions: none; the events are sent as stored. Configured headers named like the
ones trackgate sets (Content-Type, X-Trackgate-Signature) are replaced by trackgate's.
"""

from __future__ import annotations

import hashlib
import hmac

import msgspec

from gateway.adapter import (
    BatchLimits,
    OutboundRequest,
    Response,
    Verdict,
    encode_event,
    http_verdict,
    pack_json_batches,
)

INTEGRATION_NAMES = ("Webhook", "Webhooks")
SIGNATURE_HEADER = "X-Trackgate-Signature"
_OWN = frozenset(("content-type", SIGNATURE_HEADER.lower()))


class Settings(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    url: str
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    secret: str = ""  # non-empty: sign every request (see the module docstring)

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("url: must start with http:// or https://")


def batch_limits(settings: Settings) -> BatchLimits:
    return BatchLimits(max_events=1000, max_bytes=5_000_000)


def build_requests(events: list, settings: Settings) -> list[OutboundRequest]:
    limits = batch_limits(settings)
    headers = [("Content-Type", "application/json")]
    headers += [(k, v) for k, v in settings.headers.items() if k.lower() not in _OWN]
    secret = settings.secret.encode()
    encoded = [encode_event(event) for event in events]
    requests = []
    for part in pack_json_batches(encoded, limits):
        body = b'{"batch":[' + b",".join(encoded[i] for i in part) + b"]}"
        signed = headers
        if secret:
            digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
            signed = [*headers, (SIGNATURE_HEADER, f"sha256={digest}")]
        requests.append(OutboundRequest(settings.url, body, tuple(part), headers=tuple(signed)))
    return requests


def classify(request: OutboundRequest, response: Response) -> list[Verdict]:
    verdict = http_verdict(response.status, response.headers)
    return [verdict] * len(request.events)
