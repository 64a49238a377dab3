"""Tranthor requests in: the route, content type, key and batch envelope, then each item."""

from __future__ import annotations

import msgspec

from gateway.adapter import NO_JSON, Decoded, InboundRequest, IngestError, Reject, SourceLimits, obj

from .api import PREFIX
from .items import BATCH_TYPES, Invalid, item_event, object_field

_SINGLE = BATCH_TYPES  # one path per type a batch item may have
ROUTES = tuple(PREFIX + name for name in (*_SINGLE, "alias", "batch"))
# Dittofeed's own limits (apiBodyLimit, 5 MiB; none per event) for sources without `limits:`:
# its Node SDK does not retry, so a batch refused for size is a batch lost.
DEFAULT_LIMITS = SourceLimits(max_event_bytes=5 * 1024 * 1024, max_request_bytes=5 * 1024 * 1024, max_events=10_000)
EMPTY_REQUEST_OK = True  # `{"batch":[]}` is a 204 in Dittofeed
_JSON_TYPES = ("application/json", "text/plain")  # Fastify's default parsers


class _Envelope(msgspec.Struct):
    batch: list[msgspec.Raw] | None = None
    context: msgspec.Raw = NO_JSON


_decode_envelope = msgspec.json.Decoder(_Envelope).decode


def decode(request: InboundRequest, limits: SourceLimits) -> Decoded:
    """A Tranthor/Dittofeed request -> canonical events; any invalid item refuses it all."""
    kind = _kind(request.path)
    if kind == "alias":
        raise IngestError(400, "alias_not_implemented", "Not yet implemented.")
    _check_content_type(request.headers.get("content-type", ""))
    key = _key(request.headers)
    _check_utf8(request.body)
    if kind == "batch":
        items, batch_context = _batch(request.body, limits)
    else:
        items, batch_context = [(kind, request.body)], None
    events, rejects = [], []
    for index, (item_kind, item) in enumerate(items):
        where = f"body/batch/{index}" if kind == "batch" else "body"
        try:
            if len(item) > limits.max_event_bytes:
                limit = limits.max_event_bytes
                raise Invalid("event_too_large", "", f"{where} is {len(item)} bytes; at most {limit}")
            events.append(item_event(item, item_kind, where, batch_context))
        except Invalid as problem:
            rejects.append(Reject(index, problem.code, problem.message, bytes(item), problem.field))
    return Decoded(key, events, rejects, atomic=True)


def _kind(path: str) -> str:
    name = path.rstrip("/").removeprefix(PREFIX)
    if name not in (*_SINGLE, "alias", "batch") or not path.startswith(PREFIX):
        raise IngestError(404, "not_found", f"Route POST:{path} not found")
    return name


def _check_content_type(header: str) -> None:
    media = header.split(";")[0].strip().lower()
    if media and media not in _JSON_TYPES:
        raise IngestError(415, "unsupported_media_type", f"Unsupported Media Type: {media}")


def _key(headers) -> str | None:
    """The token after `authorization`'s scheme word, else `PublicWriteKey`'s token."""
    _, _, token = headers.get("authorization", "").strip().partition(" ")
    if token.strip():
        return token.strip()
    scheme, _, token = headers.get("publicwritekey", "").strip().partition(" ")
    return token.strip() or scheme or None  # this header may hold the bare token


def _check_utf8(body: bytes) -> None:
    if not body.strip():
        message = "Body cannot be empty when content-type is set to 'application/json'"  # Fastify's
        raise IngestError(400, "empty_body", message)
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise IngestError(400, "invalid_json", "body is not valid UTF-8") from None


def _batch(body: bytes, limits: SourceLimits) -> tuple[list[tuple[None, msgspec.Raw]], dict | None]:
    try:
        envelope = _decode_envelope(body)
    except msgspec.ValidationError as error:
        problem = "body/batch must be array" if "$.batch" in str(error) else "body must be object"
        raise IngestError(400, "invalid_batch", problem) from None
    except msgspec.DecodeError as error:
        raise IngestError(400, "invalid_json", f"body is not valid JSON: {error}") from None
    except RecursionError:
        raise IngestError(400, "too_deeply_nested", "body: nested too deeply") from None
    if envelope.batch is None:
        raise IngestError(400, "invalid_batch", "body must have required property 'batch'")
    count = len(envelope.batch)
    if count > limits.max_events:
        message = f"body/batch has {count} items; at most {limits.max_events}"
        raise IngestError(400, "too_many_events", message)
    try:  # an object or null, as on an item; a whole-request problem here, not an item's
        context = object_field(envelope.context, "body", "context")
    except Invalid as problem:
        raise IngestError(400, "invalid_batch", problem.message) from None
    return [(None, item) for item in envelope.batch], (obj(context) or None)
