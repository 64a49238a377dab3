"""One Segment message: its decoders, the Spec's checks, and its canonical form (in place)."""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from gateway.adapter import EVENT_TYPES as _TYPES
from gateway.adapter import NO_JSON, Alias, Event, Group, Identify, IngestError, Track, canonical_time, raw

MAX_MESSAGE_ID = 100
_OBJECTS = {  # type -> ((attribute, bytes of its `"key":`), ...) in the order they are checked
    cls: tuple((f, len(f) + 3) for f in ("context", "integrations", "properties", "traits") if hasattr(cls, f))
    for cls in _TYPES.values()
}
_NAMES = {cls: name for name, cls in _TYPES.items()}
_REQUIRED = {  # type -> (attribute, reject code, wire name)
    Track: ("event", "missing_event", "event"),
    Group: ("group_id", "missing_group_id", "groupId"),
    Alias: ("previous_id", "missing_previous_id", "previousId"),
}

_decode_any = msgspec.json.Decoder(Event).decode
_decode_as = {name: msgspec.json.Decoder(cls).decode for name, cls in _TYPES.items()}
_decode_dict = msgspec.json.Decoder(dict).decode
_encode = msgspec.json.Encoder().encode
_first_byte = struct.Struct("B").unpack_from  # the cheapest look at a Raw's first byte
_OBJECT = 0x7B  # "{"
_NULL = 0x6E  # "n"

_NO_BATCH = (None, None, None)  # a single message's batch-level (context, integrations, sentAt)


class _Invalid(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def _batch_sent_at(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, str):
            raise _Invalid("invalid_timestamp", "sentAt: must be an ISO 8601 string")
        return _time(value, "sentAt")
    except _Invalid as problem:
        raise IngestError(400, problem.code, problem.message) from None


def _normalise(event: Any, batch: tuple) -> int:
    """Validate one decoded message per the Spec and bring it to canonical form, in place.
    Returns a lower bound of the message's size in bytes: the JSON of the fields read here."""
    user_id, anonymous_id, message_id = event.user_id, event.anonymous_id, event.message_id
    size = 15  # {"type":"page"}, the shortest message
    if user_id:
        size += len(user_id) + 11  # "userId":"..."
        if anonymous_id:
            size += len(anonymous_id) + 16  # "anonymousId":"..."
        elif anonymous_id is not None:
            event.anonymous_id = None
    elif anonymous_id:
        size += len(anonymous_id) + 16
        if user_id is not None:
            event.user_id = None
    else:
        raise _Invalid("missing_identifier", "userId or anonymousId: required")
    if message_id is not None:
        if len(message_id) > MAX_MESSAGE_ID:
            raise _Invalid("invalid_message_id", f"messageId: over {MAX_MESSAGE_ID} chars")
        if message_id:
            size += len(message_id) + 14  # "messageId":"..."
        else:
            event.message_id = None
    cls = type(event)
    required = _REQUIRED.get(cls)
    if required is not None and not getattr(event, required[0]):
        raise _Invalid(required[1], f"{required[2]}: required on {_NAMES[cls]}")
    for name, key_size in _OBJECTS[cls]:
        value = getattr(event, name)
        if value:
            size += len(value) + key_size
            first = _first_byte(value)[0]
            if first != _OBJECT:
                if first != _NULL:
                    raise _Invalid("invalid_field", f"{name}: must be an object")
                setattr(event, name, NO_JSON)
    context, integrations, sent_at = batch
    if context:
        event.context = raw({**context, **_object(event.context)})
    if integrations:
        event.integrations = raw({**integrations, **_object(event.integrations)})
    if cls is Identify and not event.traits and event.context:
        traits = _object(event.context).get("traits")
        if isinstance(traits, dict):
            event.traits = raw(traits)
    when = event.timestamp
    if when:
        size += len(when) + 14  # "timestamp":"..."
        event.timestamp = None
        event.original_timestamp = _time(when, "timestamp")
    else:
        if when is not None:
            event.timestamp = None
        when = event.original_timestamp
        event.original_timestamp = _time(when, "originalTimestamp") if when else None
    when = event.sent_at
    event.sent_at = _time(when, "sentAt") if when else sent_at
    if event.received_at is not None or event.source is not None:
        event.received_at = event.source = None
    return size


def _object(value: msgspec.Raw) -> dict:
    """A Raw field already checked to hold an object (or nothing) as a dict."""
    return _decode_dict(value) if value else {}


def _time(text: str, field: str) -> str:
    """`text` as trackgate's one time form (no cache: an SDK's events rarely share one)."""
    try:
        return canonical_time(text)
    except (ValueError, OverflowError):
        raise _Invalid("invalid_timestamp", f"{field}: not an ISO 8601 time") from None
