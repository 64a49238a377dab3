"""Segment-dialect requests in: the routes, the envelope, and each message checked on its own."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.adapter import EVENT_TYPES as _TYPES
from gateway.adapter import Decoded, Event, InboundRequest, IngestError, Reject, SourceLimits

from .keys import _key
from .message import (
    _NO_BATCH,
    _batch_sent_at,
    _decode_any,
    _decode_as,
    _decode_dict,
    _encode,
    _Invalid,
    _normalise,
)
from .onepass import _whole_batch, _whole_single

_SHORT = {"identify": "i", "track": "t", "page": "p", "screen": "s", "group": "g", "alias": "a"}
_PATHS: dict[str, str | None] = {f"/v1/{name}": name for name in _SHORT}
_PATHS.update({f"/v1/{short}": name for name, short in _SHORT.items()})
_PATHS.update({"/v1/batch": None, "/v1/b": None, "/v1/import": None})
ROUTES = tuple(_PATHS)

_TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")


class _Single(msgspec.Struct):
    writeKey: Any = None


class _Batch(msgspec.Struct):
    batch: list[msgspec.Raw] | None = None
    context: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    sentAt: Any = None
    writeKey: Any = None


_decode_single = msgspec.json.Decoder(_Single).decode
_decode_batch = msgspec.json.Decoder(_Batch).decode


def decode(request: InboundRequest, limits: SourceLimits) -> Decoded:
    """A Segment-dialect request -> canonical events (valid ones) and rejects (the others)."""
    kind = _PATHS.get(request.path.rstrip("/"), "")
    if kind == "":
        raise IngestError(404, "not_found", f"no Segment endpoint at {request.path}")
    utf8 = _is_utf8(request.body)  # msgspec does not check what it keeps as Raw
    if utf8:  # the fast paths, for valid requests; None leaves the decision to the path below
        fast = _whole_batch(request, limits) if kind is None else _whole_single(request, kind, limits)
        if fast is not None:
            return fast
    envelope = _envelope(request.body, kind)
    key = _key(request, envelope)
    if kind is None:
        items = envelope.batch
        if items is None:
            raise IngestError(400, "invalid_batch", "batch: required, a list of messages")
        if len(items) > limits.max_events:
            raise IngestError(
                400, "too_many_events", f"{len(items)} messages; at most {limits.max_events}"
            )
        batch = (envelope.context, envelope.integrations, _batch_sent_at(envelope.sentAt))
    else:
        items = [request.body]
        batch = _NO_BATCH
    events: list = []
    rejects: list[Reject] = []
    limit = limits.max_event_bytes
    check_utf8 = not utf8
    for index, item in enumerate(items):
        try:
            if len(item) > limit:
                raise _Invalid("event_too_large", f"message is {len(item)} bytes; at most {limit}")
            if check_utf8 and not _is_utf8(item):
                raise _Invalid("invalid_encoding", "message: not valid UTF-8")
            events.append(_event(item, kind, batch))
        except _Invalid as problem:
            rejects.append(Reject(index, problem.code, problem.message, bytes(item)))
    return Decoded(key, events, rejects)


def _envelope(body: bytes, kind: str | None) -> Any:
    try:
        return _decode_batch(body) if kind is None else _decode_single(body)
    except msgspec.ValidationError as error:
        field = _field(error)
        if field is None:
            raise IngestError(400, "invalid_json", "body: must be a JSON object") from None
        raise IngestError(400, "invalid_batch", f"{field}: {_reason(error)}") from None
    except msgspec.DecodeError as error:
        raise IngestError(400, "invalid_json", f"body is not valid JSON: {error}") from None
    except UnicodeDecodeError:
        raise IngestError(400, "invalid_json", "body is not valid UTF-8") from None
    except RecursionError:
        raise IngestError(400, "too_deeply_nested", "body: nested too deeply") from None


def _is_utf8(data: Any) -> bool:
    if isinstance(data, bytes) and data.isascii():
        return True
    try:
        str(data, "utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _event(item: Any, kind: str | None, batch: tuple) -> Event:
    try:
        try:
            event = _decode_any(item) if kind is None else _decode_as[kind](item)
        except msgspec.ValidationError as error:
            if kind is None or _field(error) != "type":
                raise
            fixed = _decode_dict(item)  # the path decides the type
            fixed["type"] = kind
            event = _decode_as[kind](_encode(fixed))
        _normalise(event, batch)
    except msgspec.ValidationError as error:
        raise _invalid(error) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as error:  # e.g. a lone surrogate escape
        raise _Invalid("invalid_event", f"message: not valid JSON: {error}") from None
    except RecursionError:
        raise _Invalid("too_deeply_nested", "message: nested too deeply") from None
    return event


def _invalid(error: msgspec.ValidationError) -> _Invalid:
    field = _field(error)
    if field is None:
        if "`type`" in str(error):
            return _Invalid("invalid_type", "type: required")
        return _Invalid("invalid_event", "message: must be a JSON object")
    if field == "type":
        return _Invalid("invalid_type", f"type: {_reason(error)}; one of {', '.join(_TYPES)}")
    if field in _TIME_FIELDS:
        return _Invalid("invalid_timestamp", f"{field}: must be an ISO 8601 string")
    return _Invalid("invalid_field", f"{field}: {_reason(error)}")


def _field(error: msgspec.ValidationError) -> str | None:
    """The top-level field a msgspec error names (`... - at `$.userId``), if any."""
    _, sep, where = str(error).rpartition(" - at `$.")
    return where.rstrip("`").split("[")[0].split(".")[0] if sep else None


def _reason(error: msgspec.ValidationError) -> str:
    return str(error).rpartition(" - at `")[0] or str(error)
