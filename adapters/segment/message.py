"""One Segment message: its decoders, the Spec's checks, and its canonical form (in place)."""

from __future__ import annotations

import struct
from typing import Any

import msgspec

from gateway.adapter import EVENT_TYPES as _TYPES
from gateway.adapter import NO_JSON, Alias, Event, Group, Identify, IngestError, Track, canonical_time, raw

MAX_MESSAGE_ID = 100
_BODY_FIELDS = {  # type -> its free-form object besides context and integrations, if any
    cls: next((f for f in ("properties", "traits") if hasattr(cls, f)), None) for cls in _TYPES.values()
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
    Returns a lower bound of the message's size in bytes: the JSON of the fields read here.
    (Unrolled, attribute by attribute: it runs once per event of every batch.)"""
    user_id, anonymous_id = event.user_id, event.anonymous_id
    if user_id:
        size = len(user_id) + 26  # {"type":"page"}, the shortest message, + "userId":"..."
        if anonymous_id:
            size += len(anonymous_id) + 16  # "anonymousId":"..."
        elif anonymous_id is not None:
            event.anonymous_id = None
    elif anonymous_id:
        size = len(anonymous_id) + 31
        if user_id is not None:
            event.user_id = None
    else:
        raise _Invalid("missing_identifier", "userId or anonymousId: required")
    message_id = event.message_id
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
    context = event.context  # the objects, in this order: context, integrations, then the body
    if context:
        size += len(context) + 10  # "context":
        if _first_byte(context)[0] != _OBJECT:
            context = event.context = _not_object(context, "context")
    integrations = event.integrations
    if integrations:
        size += len(integrations) + 15
        if _first_byte(integrations)[0] != _OBJECT:
            integrations = event.integrations = _not_object(integrations, "integrations")
    body_field = _BODY_FIELDS[cls]
    if body_field is not None:
        value = getattr(event, body_field)
        if value:
            size += len(value) + len(body_field) + 3
            if _first_byte(value)[0] != _OBJECT:
                setattr(event, body_field, _not_object(value, body_field))
    batch_context, batch_integrations, sent_at = batch
    if batch_context:
        context = event.context = raw({**batch_context, **_object(context)})
    if batch_integrations:
        event.integrations = raw({**batch_integrations, **_object(integrations)})
    if cls is Identify and context and not event.traits:
        traits = _object(context).get("traits")
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


def _not_object(value: msgspec.Raw, name: str) -> msgspec.Raw:
    """What a free-form field that is not an object becomes: absent if null, else refused."""
    if _first_byte(value)[0] != _NULL:
        raise _Invalid("invalid_field", f"{name}: must be an object")
    return NO_JSON


def _object(value: msgspec.Raw) -> dict:
    """A Raw field already checked to hold an object (or nothing) as a dict."""
    return _decode_dict(value) if value else {}


def _time(text: str, field: str) -> str:
    """`text` as trackgate's one time form (no cache: an SDK's events rarely share one)."""
    try:
        return canonical_time(text)
    except (ValueError, OverflowError):
        raise _Invalid("invalid_timestamp", f"{field}: not an ISO 8601 time") from None
